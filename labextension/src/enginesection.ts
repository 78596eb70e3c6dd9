/** The sidebar's engine section: which engine, reachable or not, and its GPU support. */
import { el, message } from './dom';
import type { IEngineStatus } from './request';
import { Result, Section } from './section';

export class EngineSection extends Section {
  constructor() {
    super('engine', 'Engine');
  }

  render(engine: Result<IEngineStatus>): void {
    const box = this.body.node;
    box.textContent = '';
    if ('error' in engine) {
      box.appendChild(message('div', 'jp-mlcontainer-error', engine.error));
      return;
    }
    const status = engine.value;
    if (!status.reachable) {
      box.appendChild(
        message(
          'div',
          'jp-mlcontainer-error',
          `Engine unreachable: ${status.error ?? ''}`
        )
      );
      return;
    }
    const where = status.remote ? ` at ${status.address}` : '';
    const line = el('div', 'jp-mlcontainer-ok jp-mlcontainer-engine-name');
    line.textContent = `${status.engine ?? `Docker ${status.version}`}${where}`;
    line.title = `${line.textContent} (API ${status.api_version})`;
    box.appendChild(line);
    box.appendChild(
      message(
        'div',
        status.gpus?.available ? '' : 'jp-mlcontainer-muted',
        `GPUs: ${status.gpus?.description ?? '–'}`
      )
    );
  }
}

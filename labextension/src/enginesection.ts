/** The sidebar's engine section: which engine, reachable or not, and its GPU support. */
import { el, message } from './dom';
import { gpuLine } from './format';
import type { IEngineStatus, IGpuTable } from './request';
import { Result, Section } from './section';

export class EngineSection extends Section {
  constructor() {
    super('engine', 'Engine');
  }

  render(engine: Result<IEngineStatus>, gpus?: Result<IGpuTable>): void {
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
    if (gpus && 'value' in gpus && gpus.value.gpus.length) {
      box.appendChild(gpuList(gpus.value));
    }
  }
}

/** Each GPU of the host with who holds it: "GPU 0 · H200 · 141 GiB — alice ×2". */
function gpuList(table: IGpuTable): HTMLElement {
  const list = el('ul', 'jp-mlcontainer-gpus');
  list.setAttribute('aria-label', 'GPUs and who holds them');
  for (const gpu of table.gpus) {
    const item = el(
      'li',
      gpu.free ? 'jp-mlcontainer-gpu-free' : 'jp-mlcontainer-gpu-busy'
    );
    item.textContent = gpuLine(gpu);
    item.title =
      `${gpu.uuid}` +
      (table.sharing > 1 ? ` (up to ${table.sharing} kernels each)` : '');
    list.appendChild(item);
  }
  return list;
}

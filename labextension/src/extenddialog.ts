/**
 * "Add packages…": a dialog taking requirement lines and apt packages; on submit the extend
 * starts on the server and its build's lines stream in from the event bus (as pulls do), then
 * the new version, or the error naming the package.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Event } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { el, errorText, message } from './dom';
import {
  EXTEND_SCHEMA,
  extendBody,
  extendResult,
  IExtendState
} from './environments';
import { startExtend } from './request';

/** The form: requirement lines, one per line, and optional apt packages. */
export class ExtendForm extends Widget {
  constructor(kernelName: string) {
    super();
    this.addClass('jp-mlcontainer-extend-form');
    this.node.appendChild(
      el(
        'p',
        '',
        `A new version of ${kernelName}'s environment: its image with these packages ` +
          'added, pinned with hashes. Kernels started after it run the new version.'
      )
    );
    const pipLabel = el('label', '', 'Python packages, one per line');
    this.pip.className = 'jp-mod-styled jp-mlcontainer-extend-pip';
    this.pip.rows = 5;
    this.pip.placeholder = 'tqdm==4.66.5\nrich>=13';
    pipLabel.appendChild(this.pip);
    const aptLabel = el('label', '', 'Debian packages (optional)');
    this.apt.className = 'jp-mod-styled jp-mlcontainer-extend-apt';
    this.apt.placeholder = 'graphviz';
    aptLabel.appendChild(this.apt);
    this.node.appendChild(pipLabel);
    this.node.appendChild(aptLabel);
  }

  getValue(): { pip: string[]; apt: string[] } {
    return extendBody(this.pip.value, this.apt.value);
  }

  readonly pip = el('textarea');
  readonly apt = el('input');
}

/** The build's lines as they come, then the result. */
export class ExtendProgress extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlcontainer-extend-progress');
    this.node.appendChild(this.status);
    this.node.appendChild(this.log);
  }

  /** An event of the extend shown here (others are ignored). */
  onEvent(event: IExtendState): void {
    if (event.kernel_name !== this.kernelName) {
      return;
    }
    if (this.extendId === null) {
      this.early.push(event); // before the POST's answer: ours, or an older one's
      return;
    }
    if (event.id !== this.extendId) {
      return;
    }
    if (event.line) {
      this.log.textContent += `${event.line}\n`;
      this.log.scrollTop = this.log.scrollHeight;
    }
    if (event.status !== 'running') {
      this.ended(event);
    }
  }

  /** The extend started: its id and what the events said of it meanwhile. */
  started(state: IExtendState): void {
    this.extendId = state.id;
    const early = this.early;
    this.early = [];
    early.forEach(event => this.onEvent(event));
  }

  failedToStart(text: string): void {
    this.status.replaceWith(this.setStatus(text, true));
  }

  kernelName = '';
  readonly done = new Promise<IExtendState>(resolve => {
    this.resolve = resolve;
  });

  private ended(state: IExtendState): void {
    this.status.replaceWith(
      this.setStatus(extendResult(state), state.status === 'error')
    );
    this.resolve(state);
  }

  private setStatus(text: string, error: boolean): HTMLElement {
    const node = message(
      'p',
      error
        ? 'jp-mlcontainer-extend-status jp-mlcontainer-error'
        : 'jp-mlcontainer-extend-status',
      text
    );
    this.status = node;
    return node;
  }

  private extendId: string | null = null;
  private early: IExtendState[] = [];
  private resolve: (state: IExtendState) => void = () => undefined;
  private status: HTMLElement = el(
    'p',
    'jp-mlcontainer-extend-status',
    'Resolving…'
  );
  private readonly log = el(
    'pre',
    'jp-mlcontainer-log jp-mlcontainer-extend-log'
  );
}

/** Ask for packages, add them, show the build: the new version, or null. */
export async function addPackages(
  kernelName: string,
  events: Event.IManager
): Promise<IExtendState | null> {
  const asked = await showDialog({
    title: `Add packages to ${kernelName}`,
    body: new ExtendForm(kernelName),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Add' })],
    focusNodeSelector: 'textarea'
  });
  if (!asked.button.accept || !asked.value) {
    return null;
  }
  const progress = new ExtendProgress();
  progress.kernelName = kernelName;
  const listen = (_: Event.IManager, event: Event.Emission): void => {
    if (event.schema_id === EXTEND_SCHEMA) {
      progress.onEvent(event as unknown as IExtendState);
    }
  };
  events.stream.connect(listen);
  const dialog = new Dialog({
    title: `Adding packages to ${kernelName}`,
    body: progress,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
  const closed = dialog.launch();
  let result: IExtendState | null = null;
  try {
    progress.started(await startExtend(kernelName, asked.value));
    result = await Promise.race([progress.done, closed.then(() => null)]);
  } catch (error) {
    progress.failedToStart(errorText(error));
  }
  await closed;
  events.stream.disconnect(listen);
  return result?.status === 'done' ? result : null;
}

/**
 * The sidebar's running kernels: one card per container kernel, named by the notebooks that
 * use it (as JupyterLab's Running panel names kernels), with its image and state, its log,
 * and a stop that asks first.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { listIcon, stopIcon } from '@jupyterlab/ui-components';

import { containerIcon, el, errorText, iconButton, message } from './dom';
import { environmentButtons } from './envbuttons';
import {
  ISessionRef,
  kernelDetail,
  kernelImageName,
  kernelLabel
} from './format';
import { showError } from './message';
import { getKernel, IKernelContainer } from './request';
import { Result, Section } from './section';

export class KernelSection extends Section {
  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly onChange: () => void
  ) {
    super('kernels', 'Running Kernels');
  }

  /** The sessions (notebooks, consoles) the server has now, for naming the kernels. */
  sessions(): ISessionRef[] {
    return Array.from(this.app.serviceManager.sessions.running(), s => ({
      path: s.path,
      name: s.name,
      type: s.type,
      kernelId: s.kernel?.id ?? null
    }));
  }

  /** Re-read the logs that are open (before `render`, so that they show at once). */
  async loadOpenLogs(kernels: Result<IKernelContainer[]>): Promise<void> {
    const open =
      'value' in kernels
        ? kernels.value.filter(k => this.logs.has(k.kernel_id))
        : [];
    await Promise.all(open.map(k => this.loadLog(k.kernel_id)));
  }

  render(kernels: Result<IKernelContainer[]>): void {
    const sessions = this.sessions();
    this.fill(kernels, 'kernels', 'No container kernel is running', kernel =>
      this.renderKernel(kernel, sessions)
    );
  }

  private async loadLog(kernelId: string): Promise<void> {
    try {
      const detail = await getKernel(kernelId);
      this.logs.set(kernelId, {
        text:
          detail.log_tail ||
          'The container has written nothing to its log yet.',
        error: false
      });
    } catch (error) {
      this.logs.set(kernelId, { text: errorText(error), error: true });
    }
  }

  private renderKernel(
    kernel: IKernelContainer,
    sessions: ISessionRef[]
  ): HTMLElement {
    const id = kernel.kernel_id;
    const { label, title } = kernelLabel(kernel, sessions);
    const card = el('div', 'jp-mlcontainer-kernel');
    card.dataset.kernel = id;
    const row = el('div', 'jp-mlcontainer-item');
    row.appendChild(
      containerIcon.element({
        tag: 'span',
        className: 'jp-mlcontainer-item-icon'
      })
    );
    const text = el('div', 'jp-mlcontainer-item-text');
    const name = el(
      'div',
      'jp-mlcontainer-item-label jp-mlcontainer-kernel-label',
      label
    );
    name.title = title;
    const notebook = sessions.find(
      s => s.kernelId === id && s.type === 'notebook'
    );
    if (notebook) {
      name.classList.add('jp-mod-link');
      name.addEventListener('click', () => {
        void this.app.commands.execute('docmanager:open', {
          path: notebook.path
        });
      });
    }
    text.appendChild(name);
    const detail = el(
      'div',
      'jp-mlcontainer-item-detail jp-mlcontainer-kernel-usage',
      kernelDetail(kernel)
    );
    detail.title = `${kernel.source ?? kernel.image}\n${kernel.container_name ?? ''}`;
    text.appendChild(detail);
    if (kernel.last_exit) {
      text.appendChild(
        message(
          'div',
          'jp-mlcontainer-error',
          `Last death: ${kernel.last_exit.reason}`
        )
      );
    }
    row.appendChild(text);

    const log = this.logs.get(id);
    const pre = el(
      'pre',
      log?.error
        ? 'jp-mlcontainer-log jp-mlcontainer-error'
        : 'jp-mlcontainer-log',
      log?.text ?? ''
    );
    pre.hidden = !log;
    const logButton = iconButton(
      listIcon,
      'Show log',
      'jp-mlcontainer-log-button',
      () => this.toggleLog(id, pre, logButton)
    );
    logButton.classList.toggle('jp-mod-toggled', !!log);
    logButton.setAttribute('aria-pressed', String(!!log));
    const stopButton = iconButton(
      stopIcon,
      'Shut down kernel',
      'jp-mlcontainer-stop'
    );
    stopButton.addEventListener(
      'click',
      () => void this.stop(kernel, label, stopButton)
    );
    row.appendChild(logButton);
    const kernelName = kernel.kernel_name;
    if (kernelName) {
      row.append(
        ...environmentButtons(kernelName, this.app.serviceManager.events, () =>
          this.onChange()
        )
      );
    }
    row.appendChild(stopButton);
    card.appendChild(row);
    card.appendChild(pre);
    return card;
  }

  private toggleLog(id: string, pre: HTMLElement, toggle: HTMLElement): void {
    const open = !this.logs.has(id);
    toggle.classList.toggle('jp-mod-toggled', open);
    toggle.setAttribute('aria-pressed', String(open));
    if (!open) {
      this.logs.delete(id);
      pre.hidden = true;
      return;
    }
    this.logs.set(id, { text: 'Loading…', error: false });
    pre.textContent = 'Loading…';
    pre.hidden = false;
    void this.loadLog(id).then(() => {
      const loaded = this.logs.get(id);
      if (loaded) {
        pre.textContent = loaded.text;
        pre.classList.toggle('jp-mlcontainer-error', loaded.error);
      }
    });
  }

  /** Ask, as the Running panel does, then shut the kernel down (its container goes too). */
  private async stop(
    kernel: IKernelContainer,
    label: string,
    stopButton: HTMLButtonElement
  ): Promise<void> {
    const answer = await showDialog({
      title: 'Shut Down Kernel?',
      body:
        `Shut down the kernel of “${label}” (${kernelImageName(kernel)})? ` +
        'Its container is removed, and what it holds in memory is lost.',
      buttons: [
        Dialog.cancelButton(),
        Dialog.warnButton({ label: 'Shut Down' })
      ]
    });
    if (!answer.button.accept) {
      return;
    }
    stopButton.disabled = true;
    try {
      await this.app.serviceManager.kernels.shutdown(kernel.kernel_id);
    } catch (error) {
      await showError('Could not shut down the kernel', errorText(error));
    } finally {
      stopButton.disabled = false;
    }
    this.logs.delete(kernel.kernel_id);
    this.onChange();
  }

  /** The kernels whose log is open, with the last text read. */
  private logs = new Map<string, { text: string; error: boolean }>();
}

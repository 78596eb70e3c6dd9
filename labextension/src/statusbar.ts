/** The status-bar item: the active notebook's container kernel at a glance. */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Notification } from '@jupyterlab/apputils';
import { Event, Kernel, KernelSpec } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { showKernelDetails } from './details';
import { el, errorText, message } from './dom';
import {
  gpuSummary,
  kernelImageName,
  nodeSummary,
  reclaimWarning
} from './format';
import { ApiError, getKernel, IKernelContainer } from './request';

const POLL_MS = 5000;
const PROVISIONER = 'mlcontainer';

/** Whether kernels of this kernelspec run in containers (its provisioner is ours). */
export function isContainerKernelSpec(
  specs: KernelSpec.ISpecModels | null,
  name: string | undefined
): boolean {
  const metadata = name ? specs?.kernelspecs[name]?.metadata : undefined;
  const provisioner = metadata?.kernel_provisioner as
    { provisioner_name?: string } | undefined;
  return provisioner?.provisioner_name === PROVISIONER;
}

export class ContainerStatus extends Widget {
  constructor(
    private readonly tracker: INotebookTracker,
    private readonly specs: KernelSpec.IManager,
    private readonly events?: Event.IManager
  ) {
    super();
    this.addClass('jp-mlcontainer-status');
    this.node.title = 'Container kernel: click for details';
    this.node.addEventListener('click', () => void this.showDetails());
    tracker.currentChanged.connect(this.watch, this);
    specs.specsChanged.connect(this.onChange, this);
    this.watch();
    this.timer = window.setInterval(() => void this.refresh(), POLL_MS);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearInterval(this.timer);
    this.watched = null;
    Signal.clearData(this); // every connection made with this as the receiver
    super.dispose();
  }

  /** Follow the current notebook's session (and only that one). */
  private watch(): void {
    const context = this.tracker.currentWidget?.sessionContext ?? null;
    if (context !== this.watched) {
      if (this.watched) {
        this.watched.kernelChanged.disconnect(this.onChange, this);
        this.watched.statusChanged.disconnect(this.onChange, this);
      }
      this.watched = context;
      context?.kernelChanged.connect(this.onChange, this);
      context?.statusChanged.connect(this.onChange, this);
    }
    void this.refresh();
  }

  private onChange(): void {
    void this.refresh();
  }

  /** Ask the server about the current kernel, when it is a container kernel. */
  async refresh(): Promise<void> {
    const kernel = this.current();
    if (!kernel) {
      this.info = null;
      this.error = '';
      this.render();
      return;
    }
    try {
      this.info = await getKernel(kernel.id, 0);
      this.error = '';
    } catch (error) {
      this.info = null;
      // The kernel was shut down (from the sidebar, another tab, the API): the notebook
      // has no kernel now, which JupyterLab's own kernel item says; nothing to show here.
      this.error =
        error instanceof ApiError && error.status === 404
          ? ''
          : errorText(error);
      if (!this.error) {
        this.gone = kernel.id;
      }
    }
    if (!this.isDisposed) {
      this.render();
    }
  }

  /** The notebook's kernel when it is a live container kernel, else null. */
  private current(): Kernel.IKernelConnection | null {
    const kernel = this.watched?.session?.kernel;
    if (
      !kernel ||
      kernel.isDisposed ||
      kernel.status === 'dead' ||
      kernel.id === this.gone ||
      !isContainerKernelSpec(this.specs.specs, kernel.name)
    ) {
      return null;
    }
    return kernel;
  }

  private render(): void {
    this.node.textContent = '';
    if (!this.current()) {
      this.hide();
      return;
    }
    this.show();
    if (this.error) {
      this.node.appendChild(
        el('span', 'jp-mlcontainer-status-image', '⬢ container kernel')
      );
      this.node.appendChild(
        message('span', 'jp-mlcontainer-status-error', `⚠ ${this.error}`)
      );
      this.node.title = `Container kernel: ${this.error}`;
      return;
    }
    this.node.title = 'Container kernel: click for details';
    if (!this.info) {
      this.node.appendChild(
        el('span', 'jp-mlcontainer-status-image', '⬢ container kernel')
      );
      return;
    }
    this.node.appendChild(
      el(
        'span',
        'jp-mlcontainer-status-image',
        `⬢ ${kernelImageName(this.info)}`
      )
    );
    this.node.appendChild(
      el('span', 'jp-mlcontainer-badge', gpuSummary(this.info))
    );
    const where = nodeSummary(this.info);
    if (where) {
      this.node.appendChild(el('span', 'jp-mlcontainer-status-node', where));
    }
    const state = this.info.state ?? this.watched?.kernelDisplayStatus ?? '';
    this.node.appendChild(el('span', 'jp-mlcontainer-status-state', state));
    this.warnOfReclaim(this.info);
  }

  /** A kernel about to be shut down for holding GPUs idle: say so, once as a notification. */
  private warnOfReclaim(info: IKernelContainer): void {
    if (info.reclaim_in === null || info.reclaim_in === undefined) {
      this.warned.delete(info.kernel_id);
      return;
    }
    const text = reclaimWarning(info.reclaim_in);
    this.node.appendChild(
      message('span', 'jp-mlcontainer-status-error', `⚠ ${text}`)
    );
    this.node.title = `Container kernel: ${text}`;
    if (!this.warned.has(info.kernel_id)) {
      this.warned.add(info.kernel_id);
      Notification.warning(`This notebook's kernel: ${text}.`, {
        autoClose: false
      });
    }
  }

  private async showDetails(): Promise<void> {
    await this.refresh();
    if (this.info && !this.error) {
      await showKernelDetails(this.info, this.events);
    }
  }

  private timer: number;
  private watched: ISessionContext | null = null;
  private info: IKernelContainer | null = null;
  private error = '';
  /** Kernels whose idle-GPU warning was shown as a notification. */
  private warned = new Set<string>();
  /** The id of a kernel the server no longer has (404): shown as no kernel. */
  private gone = '';
}

import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showDialog, showErrorMessage, Dialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { KernelAPI } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import {
  formatBytes,
  IEngineStatus,
  IImages,
  IKernelContainer,
  IPullState,
  PULL_SCHEMA,
  requestAPI,
  shortImage
} from './request';

const containerIcon = new LabIcon({
  name: 'jupyter-mlcontainer:container',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 7l9-4 9 4v10l-9 4-9-4V7zm2 1.3v7.4l7 3.1 7-3.1V8.3l-7 3.1-7-3.1zM12 5.2L6.2 7.7 12 10.3l5.8-2.6L12 5.2z"/></g></svg>'
});

/** Small DOM helper: element with class and text (never innerHTML: image names are data). */
function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

function gpuBadge(info: IKernelContainer): string {
  if (info.gpus_granted && info.gpus_granted !== 'no GPU') {
    return `GPU: ${info.gpus_granted}`;
  }
  const requested = String(info.gpus_requested ?? 'auto');
  return requested === 'none' ? 'CPU' : 'CPU · no GPU on the engine';
}

/** The status-bar item: the active notebook's container kernel at a glance. */
class ContainerStatus extends Widget {
  constructor(private tracker: INotebookTracker) {
    super();
    this.addClass('jp-mlcontainer-status');
    this.node.title = 'Container kernel: click for details';
    this.node.addEventListener('click', () => void this.showDetails());
    tracker.currentChanged.connect(() => this.watch());
    this.watch();
    window.setInterval(() => void this.refresh(), 5000);
  }

  private watch(): void {
    const panel = this.tracker.currentWidget;
    if (panel) {
      panel.sessionContext.kernelChanged.connect(() => void this.refresh());
      panel.sessionContext.statusChanged.connect(() => void this.refresh());
    }
    void this.refresh();
  }

  private kernelId(): string | undefined {
    return this.tracker.currentWidget?.sessionContext.session?.kernel?.id;
  }

  async refresh(): Promise<void> {
    const id = this.kernelId();
    if (!id) {
      this.info = null;
      this.render();
      return;
    }
    try {
      this.info = await requestAPI<IKernelContainer>(`kernels/${id}`);
    } catch {
      this.info = null; // not a container kernel
    }
    this.render();
  }

  private render(): void {
    this.node.textContent = '';
    if (!this.info) {
      this.hide();
      return;
    }
    this.show();
    const status = this.tracker.currentWidget?.sessionContext.kernelDisplayStatus ?? '';
    const name = shortImage(this.info.source ?? this.info.image);
    this.node.appendChild(el('span', 'jp-mlcontainer-status-image', `⬢ ${name}`));
    const badge = gpuBadge(this.info);
    this.node.appendChild(
      el('span', `jp-mlcontainer-badge ${badge === 'GPU' ? 'jp-mlcontainer-gpu' : ''}`, badge)
    );
    this.node.appendChild(el('span', 'jp-mlcontainer-status-state', this.info.state ?? status));
  }

  private async showDetails(): Promise<void> {
    await this.refresh();
    if (!this.info) {
      return;
    }
    await showDialog({
      title: 'Container kernel',
      body: detailsWidget(this.info),
      buttons: [Dialog.okButton({ label: 'Close' })]
    });
  }

  private info: IKernelContainer | null = null;
}

function probeSummary(probe: Record<string, string> | null): string {
  if (!probe) {
    return 'not probed (kernelspec not made by `jupyter mlcontainer add`)';
  }
  const parts = [`Python ${probe.python_version}`];
  for (const [key, label] of [
    ['torch', 'PyTorch'],
    ['tensorflow', 'TensorFlow'],
    ['jax', 'JAX'],
    ['cuda', 'CUDA'],
    ['cudnn', 'cuDNN'],
    ['ipykernel', 'ipykernel']
  ]) {
    if (probe[key]) {
      parts.push(`${label} ${probe[key]}`);
    }
  }
  if (probe.os) {
    parts.push(probe.os);
  }
  return parts.join(' · ');
}

function detailsWidget(info: IKernelContainer): Widget {
  const widget = new Widget();
  const table = el('table', 'jp-mlcontainer-details');
  const details = info.image_details;
  const rows: [string, string][] = [
    ['Image', info.source && info.source !== info.image ? `${info.source} → ${info.image}` : info.image],
    ['Digest', details ? details.digest ?? 'none (built or loaded on this engine)' : '–'],
    ['Image ID', details?.image_id ?? '–'],
    ['Inside', probeSummary(info.probe)],
    ['Container', `${info.container_name ?? '–'} (${info.state ?? '–'})`],
    ['GPUs', `${info.gpus_granted ?? '–'} (requested: ${String(info.gpus_requested)})`],
    [
      'Memory',
      `${formatBytes(info.resources?.memory_bytes)} of ${formatBytes(info.resources?.memory_limit_bytes)}`
    ],
    ['CPU', info.resources?.cpu_percent == null ? '–' : `${info.resources.cpu_percent}%`]
  ];
  if (info.last_exit) {
    rows.push(['Last death', info.last_exit.reason]);
  }
  for (const [key, value] of rows) {
    const tr = el('tr');
    tr.appendChild(el('th', '', key));
    tr.appendChild(el('td', '', value));
    table.appendChild(tr);
  }
  widget.node.appendChild(table);
  return widget;
}

/** The sidebar: engine, GPUs, images with pulls, running kernel containers. */
class ContainersPanel extends Widget {
  constructor(private app: JupyterFrontEnd) {
    super();
    this.id = 'jp-mlcontainer-panel';
    this.title.icon = containerIcon;
    this.title.caption = 'Container kernels';
    this.addClass('jp-mlcontainer-panel');
    app.serviceManager.events.stream.connect((_, event) => {
      if (event.schema_id === PULL_SCHEMA) {
        const state = event as unknown as IPullState;
        this.pulls.set(state.image, state);
        this.renderPulls();
        if (state.status !== 'pulling') {
          void this.refresh();
        }
      }
    });
    window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, 5000);
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    const [engine, images, kernels] = await Promise.all([
      requestAPI<IEngineStatus>('engine').catch(e => ({ reachable: false, address: '', error: String(e) })),
      requestAPI<IImages>('images').catch(() => null),
      requestAPI<{ kernels: IKernelContainer[] }>('kernels').catch(() => ({ kernels: [] }))
    ]);
    const details = await Promise.all(
      kernels.kernels.map(k => requestAPI<IKernelContainer>(`kernels/${k.kernel_id}`).catch(() => k))
    );
    this.render(engine as IEngineStatus, images, details);
  }

  private render(engine: IEngineStatus, images: IImages | null, kernels: IKernelContainer[]): void {
    const node = this.node;
    node.textContent = '';
    node.appendChild(el('h2', '', 'Container kernels'));

    const engineBox = el('div', 'jp-mlcontainer-section jp-mlcontainer-engine');
    if (engine.reachable) {
      engineBox.appendChild(el('div', 'jp-mlcontainer-ok', `Docker ${engine.version} (API ${engine.api_version})`));
      engineBox.appendChild(el('div', '', `GPUs: ${engine.gpus?.description ?? '–'}`));
    } else {
      engineBox.appendChild(el('div', 'jp-mlcontainer-error', `Engine unreachable: ${engine.error ?? ''}`));
    }
    node.appendChild(engineBox);

    const newButton = el('button', 'jp-mlcontainer-button', 'New container kernel…');
    newButton.addEventListener('click', () => void this.app.commands.execute(COMMAND_NEW));
    node.appendChild(newButton);

    node.appendChild(el('h3', '', 'Running kernel containers'));
    const list = el('div', 'jp-mlcontainer-section jp-mlcontainer-kernels');
    if (!kernels.length) {
      list.appendChild(el('div', 'jp-mlcontainer-muted', 'none'));
    }
    for (const kernel of kernels) {
      const row = el('div', 'jp-mlcontainer-kernel');
      row.appendChild(el('div', 'jp-mlcontainer-kernel-image', shortImage(kernel.source ?? kernel.image)));
      const memory = `${formatBytes(kernel.resources?.memory_bytes)} / ${formatBytes(kernel.resources?.memory_limit_bytes)}`;
      const cpu = kernel.resources?.cpu_percent == null ? '–' : `${kernel.resources.cpu_percent}%`;
      row.appendChild(el('div', 'jp-mlcontainer-kernel-usage', `${kernel.state ?? ''} · mem ${memory} · cpu ${cpu} · ${gpuBadge(kernel)}`));
      if (kernel.last_exit) {
        row.appendChild(el('div', 'jp-mlcontainer-error', `last death: ${kernel.last_exit.reason}`));
      }
      const logs = el('pre', 'jp-mlcontainer-log', kernel.log_tail ?? '');
      logs.hidden = !this.openLogs.has(kernel.kernel_id);
      const logButton = el('button', 'jp-mlcontainer-button', 'Log');
      logButton.addEventListener('click', () => {
        logs.hidden = !logs.hidden;
        logs.hidden ? this.openLogs.delete(kernel.kernel_id) : this.openLogs.add(kernel.kernel_id);
      });
      const stopButton = el('button', 'jp-mlcontainer-button jp-mlcontainer-stop', 'Stop');
      stopButton.addEventListener('click', async () => {
        await KernelAPI.shutdownKernel(kernel.kernel_id);
        void this.refresh();
      });
      row.appendChild(logButton);
      row.appendChild(stopButton);
      row.appendChild(logs);
      list.appendChild(row);
    }
    node.appendChild(list);

    node.appendChild(el('h3', '', 'Kernel images'));
    const imageBox = el('div', 'jp-mlcontainer-section jp-mlcontainer-images');
    for (const entry of images?.kernelspecs ?? []) {
      const row = el('div', 'jp-mlcontainer-image');
      row.dataset.image = entry.image;
      row.appendChild(el('div', 'jp-mlcontainer-image-name', entry.display_name));
      row.appendChild(
        el('div', entry.present ? 'jp-mlcontainer-ok' : 'jp-mlcontainer-muted',
          `${shortImage(entry.source ?? entry.image)} · ${entry.present ? formatBytes(entry.size) : 'not on the engine'}`)
      );
      const pull = el('button', 'jp-mlcontainer-button jp-mlcontainer-pull', entry.present ? 'Pull again' : 'Pull');
      pull.disabled = entry.image.startsWith('sha256:');
      pull.addEventListener('click', () => void this.pull(entry.image));
      row.appendChild(pull);
      row.appendChild(el('div', 'jp-mlcontainer-progress'));
      imageBox.appendChild(row);
    }
    node.appendChild(imageBox);
    this.renderPulls();
  }

  private async pull(image: string): Promise<void> {
    try {
      const state = await requestAPI<IPullState>('images/pull', {
        method: 'POST',
        body: JSON.stringify({ image })
      });
      this.pulls.set(image, state);
      this.renderPulls();
    } catch (error) {
      await showErrorMessage('Pull failed', String(error));
    }
  }

  private renderPulls(): void {
    this.node.querySelectorAll<HTMLElement>('.jp-mlcontainer-image').forEach(row => {
      const state = this.pulls.get(row.dataset.image ?? '');
      const box = row.querySelector('.jp-mlcontainer-progress') as HTMLElement;
      if (!state || !box) {
        return;
      }
      box.textContent = '';
      const bar = el('progress', 'jp-mlcontainer-bar');
      bar.max = 1;
      bar.value = state.status === 'done' ? 1 : state.fraction ?? 0;
      box.appendChild(bar);
      box.appendChild(
        el('div', state.status === 'error' ? 'jp-mlcontainer-error' : 'jp-mlcontainer-pull-status',
          state.status === 'done' ? 'Pull complete' : state.message)
      );
      box.dataset.status = state.status;
    });
  }

  private pulls = new Map<string, IPullState>();
  private openLogs = new Set<string>();
}

const COMMAND_NEW = 'mlcontainer:new-kernelspec';

/** The "New container kernel" form. */
class NewKernelForm extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlcontainer-form');
    for (const [name, label, placeholder] of [
      ['image', 'Image', 'pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime'],
      ['name', 'Kernel name (optional)', 'derived from the image'],
      ['display_name', 'Display name (optional)', 'derived from the image'],
      ['gpus', 'GPUs', 'auto, all, none, 2, 0,1'],
      ['mem_limit', 'Memory limit (optional)', '16g'],
      ['shm_size', 'Shared memory (optional)', '2g']
    ]) {
      const row = el('label', 'jp-mlcontainer-form-row', label);
      const input = el('input');
      input.name = name;
      input.placeholder = placeholder;
      row.appendChild(input);
      this.node.appendChild(row);
    }
  }

  getValue(): Record<string, string> {
    const out: Record<string, string> = {};
    this.node.querySelectorAll('input').forEach(input => {
      if (input.value.trim()) {
        out[input.name] = input.value.trim();
      }
    });
    return out;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-mlcontainer:plugin',
  description: 'See and drive container kernels: image, GPUs, resources, pulls.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ILabShell, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    labShell: ILabShell | null,
    palette: ICommandPalette | null
  ) => {
    if (statusBar) {
      const status = new ContainerStatus(tracker);
      statusBar.registerStatusItem('jupyter-mlcontainer:status', {
        item: status,
        align: 'left',
        rank: 4,
        isActive: () => true
      });
    }
    const panel = new ContainersPanel(app);
    if (labShell) {
      labShell.add(panel, 'left', { rank: 300 });
    }
    app.commands.addCommand(COMMAND_NEW, {
      label: 'New Container Kernel…',
      caption: 'Create a pinned container kernelspec from an image',
      execute: async () => {
        const form = new NewKernelForm();
        const result = await showDialog({
          title: 'New container kernel',
          body: form,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
        });
        if (!result.button.accept) {
          return;
        }
        try {
          const created = await requestAPI<{ name: string; display_name: string; image: string }>(
            'kernelspecs',
            { method: 'POST', body: JSON.stringify(form.getValue()) }
          );
          await app.serviceManager.kernelspecs.refreshSpecs();
          await showDialog({
            title: 'Container kernel created',
            body: `“${created.display_name}” (${created.name}) runs ${created.image}.`,
            buttons: [Dialog.okButton()]
          });
          void panel.refresh();
        } catch (error) {
          await showErrorMessage('Could not create the container kernel', String(error));
        }
      }
    });
    palette?.addItem({ command: COMMAND_NEW, category: 'Kernel' });
  }
};

export default plugin;

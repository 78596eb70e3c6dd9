/** The sidebar: the engine and its GPUs, running kernel containers, kernel images and pulls. */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { Event } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { button, containerIcon, el, errorText } from './dom';
import { formatBytes, imageName, kernelImageName, kernelLine } from './format';
import { COMMAND_NEW } from './newkernel';
import { afterStart } from './pulls';
import {
  getEngine,
  getImages,
  getKernel,
  getPool,
  IEngineStatus,
  IImages,
  IKernelContainer,
  IKernelImage,
  IPool,
  IPullState,
  IVolume,
  listKernels,
  listVolumes,
  PULL_SCHEMA,
  startPull
} from './request';

const POLL_MS = 5000;

type Result<T> = { value: T } | { error: string };

async function settle<T>(promise: Promise<T>): Promise<Result<T>> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error: errorText(error) };
  }
}

/** A list section's contents: the error, a note when empty, else one row per item. */
function fillList<T>(
  box: HTMLElement,
  result: Result<T[]>,
  what: string,
  empty: string,
  row: (item: T) => HTMLElement
): void {
  if ('error' in result) {
    box.appendChild(
      el('div', 'jp-mlcontainer-error', `Cannot list ${what}: ${result.error}`)
    );
  } else if (!result.value.length) {
    box.appendChild(el('div', 'jp-mlcontainer-muted', empty));
  } else {
    for (const item of result.value) {
      box.appendChild(row(item));
    }
  }
}

export class ContainersPanel extends Widget {
  constructor(private readonly app: JupyterFrontEnd) {
    super();
    this.id = 'jp-mlcontainer-panel';
    this.title.icon = containerIcon;
    this.title.caption = 'Container kernels';
    this.addClass('jp-mlcontainer-panel');
    app.serviceManager.events.stream.connect(this.onEvent, this);
    this.timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.refresh();
      }
    }, POLL_MS);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearInterval(this.timer);
    Signal.clearData(this);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.refreshVolumes();
    void this.refresh();
  }

  /**
   * Volumes (HOME caches, runtimes) with sizes: on show, and on the next refreshes only while
   * the last attempt failed (the sizes cost the engine a `df`).
   */
  private async refreshVolumes(): Promise<void> {
    this.loadingVolumes = true;
    this.volumes = await settle(listVolumes());
    this.loadingVolumes = false;
    if (!this.isDisposed && 'value' in this.volumes) {
      void this.refresh(); // an error shows, and is retried, with the next poll
    }
  }

  /** Four calls, whatever the number of kernels; logs only of kernels whose log is open. */
  async refresh(): Promise<void> {
    if (
      this.volumes !== null &&
      'error' in this.volumes &&
      !this.loadingVolumes
    ) {
      void this.refreshVolumes();
    }
    const [engine, images, kernels, pool] = await Promise.all([
      settle(getEngine()),
      settle(getImages()),
      settle(listKernels()),
      settle(getPool())
    ]);
    const open =
      'value' in kernels
        ? kernels.value.filter(k => this.logs.has(k.kernel_id))
        : [];
    await Promise.all(open.map(k => this.loadLog(k.kernel_id)));
    if (!this.isDisposed) {
      this.render(engine, images, kernels, pool);
    }
  }

  private onEvent(_: Event.IManager, event: Event.Emission): void {
    if (event.schema_id !== PULL_SCHEMA) {
      return;
    }
    const state = event as unknown as IPullState;
    this.pulls.set(state.image, state);
    this.renderPulls();
    if (state.status !== 'pulling') {
      void this.refresh();
    }
  }

  private async loadLog(kernelId: string): Promise<void> {
    try {
      const detail = await getKernel(kernelId);
      this.logs.set(kernelId, { text: detail.log_tail ?? '', error: false });
    } catch (error) {
      this.logs.set(kernelId, { text: errorText(error), error: true });
    }
  }

  private render(
    engine: Result<IEngineStatus>,
    images: Result<IImages>,
    kernels: Result<IKernelContainer[]>,
    pool: Result<IPool>
  ): void {
    const node = this.node;
    node.textContent = '';
    node.appendChild(el('h2', '', 'Container kernels'));
    node.appendChild(this.renderEngine(engine));
    node.appendChild(
      button('New container kernel…', 'jp-mod-accept', () => {
        void this.app.commands.execute(COMMAND_NEW);
      })
    );

    node.appendChild(el('h3', '', 'Running kernel containers'));
    const list = el('div', 'jp-mlcontainer-section jp-mlcontainer-kernels');
    fillList(list, kernels, 'kernels', 'none', kernel =>
      this.renderKernel(kernel)
    );
    node.appendChild(list);

    node.appendChild(el('h3', '', 'Ready kernels (warm pool)'));
    node.appendChild(this.renderPool(pool));

    node.appendChild(el('h3', '', 'Kernel images'));
    const imageBox = el('div', 'jp-mlcontainer-section jp-mlcontainer-images');
    if ('error' in images) {
      imageBox.appendChild(
        el('div', 'jp-mlcontainer-error', `Cannot list images: ${images.error}`)
      );
    } else {
      for (const entry of images.value.kernelspecs) {
        imageBox.appendChild(this.renderImage(entry));
      }
    }
    node.appendChild(imageBox);
    node.appendChild(el('h3', '', 'Caches and runtimes'));
    node.appendChild(this.renderVolumes());
    this.renderPulls();
  }

  private renderPool(pool: Result<IPool>): HTMLElement {
    const box = el('div', 'jp-mlcontainer-section jp-mlcontainer-pool');
    if ('value' in pool && !pool.value.size) {
      box.appendChild(
        el('div', 'jp-mlcontainer-muted', 'off (MLContainerPool.size = 0)')
      );
      return box;
    }
    const ready = 'error' in pool ? pool : { value: pool.value.kernels };
    fillList(
      box,
      ready,
      'the pool',
      'none yet: a container kernelspec gets ready kernels once it has been started',
      kernel => {
        const row = el('div', 'jp-mlcontainer-pooled');
        row.dataset.container = kernel.container_id;
        row.appendChild(
          el('div', '', `${kernel.kernelspec} · ${kernelImageName(kernel)}`)
        );
        row.appendChild(
          el('div', 'jp-mlcontainer-muted', kernel.container_name)
        );
        return row;
      }
    );
    return box;
  }

  private renderVolumes(): HTMLElement {
    const box = el('div', 'jp-mlcontainer-section jp-mlcontainer-volumes');
    if (this.volumes === null) {
      box.appendChild(el('div', 'jp-mlcontainer-muted', 'loading…'));
      return box;
    }
    fillList(box, this.volumes, 'volumes', 'none', volume => {
      const what =
        volume.kind === 'home'
          ? `HOME of uid ${volume.uid} for ${imageName(volume.image)}`
          : 'ipykernel runtime';
      const row = el('div', 'jp-mlcontainer-volume');
      row.dataset.volume = volume.name;
      row.appendChild(el('div', 'jp-mlcontainer-volume-name', volume.name));
      row.appendChild(
        el(
          'div',
          volume.needed ? 'jp-mlcontainer-muted' : 'jp-mlcontainer-warning',
          `${what} · ${formatBytes(volume.size)}` +
            (volume.needed
              ? ''
              : ' · unused: `jupyter mlcontainer prune` removes it')
        )
      );
      return row;
    });
    return box;
  }

  private renderEngine(engine: Result<IEngineStatus>): HTMLElement {
    const box = el('div', 'jp-mlcontainer-section jp-mlcontainer-engine');
    if ('error' in engine) {
      box.appendChild(el('div', 'jp-mlcontainer-error', engine.error));
    } else if (engine.value.reachable) {
      const {
        engine: kind,
        remote,
        address,
        version,
        api_version,
        gpus
      } = engine.value;
      const where = remote ? ` at ${address}` : '';
      box.appendChild(
        el(
          'div',
          'jp-mlcontainer-ok',
          `${kind ?? `Docker ${version}`}${where} (API ${api_version})`
        )
      );
      box.appendChild(el('div', '', `GPUs: ${gpus?.description ?? '–'}`));
    } else {
      box.appendChild(
        el(
          'div',
          'jp-mlcontainer-error',
          `Engine unreachable: ${engine.value.error ?? ''}`
        )
      );
    }
    return box;
  }

  private renderKernel(kernel: IKernelContainer): HTMLElement {
    const id = kernel.kernel_id;
    const row = el('div', 'jp-mlcontainer-kernel');
    row.dataset.kernel = id;
    row.appendChild(
      el('div', 'jp-mlcontainer-kernel-image', kernelImageName(kernel))
    );
    row.appendChild(
      el('div', 'jp-mlcontainer-kernel-usage', kernelLine(kernel))
    );
    if (kernel.last_exit) {
      row.appendChild(
        el(
          'div',
          'jp-mlcontainer-error',
          `last death: ${kernel.last_exit.reason}`
        )
      );
    }
    const log = this.logs.get(id);
    const pre = el(
      'pre',
      log?.error
        ? 'jp-mlcontainer-log jp-mlcontainer-error'
        : 'jp-mlcontainer-log',
      log?.text ?? ''
    );
    pre.hidden = !log;
    const logButton = button('Log', 'jp-mlcontainer-log-button', () => {
      if (this.logs.has(id)) {
        this.logs.delete(id);
        pre.hidden = true;
        return;
      }
      this.logs.set(id, { text: 'loading…', error: false });
      pre.textContent = 'loading…';
      pre.hidden = false;
      void this.loadLog(id).then(() => {
        const loaded = this.logs.get(id);
        if (loaded) {
          pre.textContent = loaded.text;
          pre.classList.toggle('jp-mlcontainer-error', loaded.error);
        }
      });
    });
    const stopButton = button('Stop', 'jp-mlcontainer-stop');
    stopButton.addEventListener('click', () => void this.stop(id, stopButton));
    row.appendChild(logButton);
    row.appendChild(stopButton);
    row.appendChild(pre);
    return row;
  }

  private async stop(
    kernelId: string,
    stopButton: HTMLButtonElement
  ): Promise<void> {
    stopButton.disabled = true;
    try {
      await this.app.serviceManager.kernels.shutdown(kernelId);
    } catch (error) {
      await showErrorMessage('Could not stop the kernel', errorText(error));
    } finally {
      stopButton.disabled = false;
    }
    this.logs.delete(kernelId);
    void this.refresh();
  }

  private renderImage(entry: IKernelImage): HTMLElement {
    const row = el('div', 'jp-mlcontainer-image');
    row.dataset.image = entry.image;
    row.appendChild(el('div', 'jp-mlcontainer-image-name', entry.display_name));
    const size = entry.present ? formatBytes(entry.size) : 'not on the engine';
    row.appendChild(
      el(
        'div',
        entry.present ? 'jp-mlcontainer-ok' : 'jp-mlcontainer-muted',
        `${imageName(entry.source ?? entry.image)} · ${size}`
      )
    );
    if (entry.pullable) {
      row.appendChild(
        button(
          entry.present ? 'Pull again' : 'Pull',
          'jp-mlcontainer-pull',
          () => {
            void this.pull(entry.image);
          }
        )
      );
    } else {
      row.appendChild(
        el(
          'div',
          'jp-mlcontainer-muted jp-mlcontainer-local',
          entry.present
            ? 'built locally: rebuild or load it on the engine to update it'
            : 'an image id: only the engine that built it has it'
        )
      );
    }
    row.appendChild(el('div', 'jp-mlcontainer-progress'));
    return row;
  }

  private async pull(image: string): Promise<void> {
    this.pulls.delete(image); // events from now on are about this pull
    try {
      const answer = await startPull(image);
      this.pulls.set(image, afterStart(this.pulls.get(image), answer));
      this.renderPulls();
    } catch (error) {
      await showErrorMessage('Pull failed', errorText(error));
    }
  }

  private renderPulls(): void {
    this.node
      .querySelectorAll<HTMLElement>('.jp-mlcontainer-image')
      .forEach(row => {
        const state = this.pulls.get(row.dataset.image ?? '');
        const box = row.querySelector<HTMLElement>('.jp-mlcontainer-progress');
        if (!state || !box) {
          return;
        }
        box.textContent = '';
        const bar = el('progress', 'jp-mlcontainer-bar');
        bar.max = 1;
        bar.value = state.status === 'done' ? 1 : (state.fraction ?? 0);
        box.appendChild(bar);
        box.appendChild(
          el(
            'div',
            state.status === 'error'
              ? 'jp-mlcontainer-error'
              : 'jp-mlcontainer-pull-status',
            state.status === 'done' ? 'Pull complete' : state.message
          )
        );
        box.dataset.status = state.status;
      });
  }

  private timer: number;
  private pulls = new Map<string, IPullState>();
  private volumes: Result<IVolume[]> | null = null;
  private loadingVolumes = false;
  /** The kernels whose log is open, with the last text read. */
  private logs = new Map<string, { text: string; error: boolean }>();
}

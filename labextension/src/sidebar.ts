/**
 * The sidebar: a side panel like JupyterLab's Running panel, with a toolbar (new kernel,
 * refresh) and collapsible sections for the engine, running kernels, the warm pool, kernel
 * images with their pulls, and the user's volumes.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Event } from '@jupyterlab/services';
import {
  addIcon,
  refreshIcon,
  SidePanel,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { AccordionPanel, Widget } from '@lumino/widgets';

import { containerIcon, el } from './dom';
import { EngineSection } from './enginesection';
import { ImageSection } from './imagesection';
import { KernelSection } from './kernelsection';
import { COMMAND_NEW } from './newkernel';
import { PoolSection } from './poolsection';
import {
  getEngine,
  getGpus,
  getImages,
  getPool,
  IKernelContainer,
  IPullState,
  IVolume,
  listKernels,
  listVolumes,
  PULL_SCHEMA
} from './request';
import { Result, settle } from './section';
import { VolumeSection } from './volumesection';

const POLL_MS = 5000;
export const PANEL_TITLE = 'Container kernels';

export class ContainersPanel extends SidePanel {
  constructor(app: JupyterFrontEnd) {
    super();
    this.id = 'jp-mlcontainer-panel';
    this.title.icon = containerIcon;
    this.title.caption = PANEL_TITLE;
    this.addClass('jp-mlcontainer-panel');
    this.header.addWidget(
      new Widget({
        node: el('h2', 'jp-mlcontainer-title', 'Container Kernels')
      })
    );
    this.toolbar.addItem(
      'new',
      new ToolbarButton({
        icon: addIcon,
        tooltip: 'New container kernel…',
        className: 'jp-mlcontainer-new',
        onClick: () => void app.commands.execute(COMMAND_NEW)
      })
    );
    this.toolbar.addItem(
      'refresh',
      new ToolbarButton({
        icon: refreshIcon,
        tooltip: 'Refresh',
        className: 'jp-mlcontainer-refresh',
        onClick: () => {
          void this.refreshVolumes();
          void this.refresh();
        }
      })
    );
    this.kernels = new KernelSection(app, () => void this.refresh());
    this.images = new ImageSection(
      () => void this.refresh(),
      app.serviceManager.events
    );
    for (const section of [
      this.engine,
      this.kernels,
      this.pool,
      this.images,
      this.volumes
    ]) {
      this.addWidget(section);
    }
    app.serviceManager.events.stream.connect(this.onEvent, this);
    app.serviceManager.sessions.runningChanged.connect(this.onSessions, this);
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

  /** The engine needs two lines, kernels and images the most room. */
  protected onAfterAttach(): void {
    (this.content as AccordionPanel).setRelativeSizes([2, 4, 2, 4, 3]);
  }

  protected onAfterShow(): void {
    void this.refreshVolumes();
    void this.refresh();
  }

  /**
   * Volumes with sizes: on show and on Refresh, and on the next refreshes only while the
   * last attempt failed (the sizes cost the engine a `df`).
   */
  private async refreshVolumes(): Promise<void> {
    if (this.loadingVolumes) {
      return; // the engine measures one at a time: a second `df` would be refused
    }
    this.loadingVolumes = true;
    this.volumeList = await settle(listVolumes());
    this.loadingVolumes = false;
    if (!this.isDisposed) {
      this.volumes.render(this.volumeList);
    }
  }

  /** Five calls, whatever the number of kernels; logs only of kernels whose log is open. */
  async refresh(): Promise<void> {
    if (
      this.volumeList !== null &&
      'error' in this.volumeList &&
      !this.loadingVolumes
    ) {
      void this.refreshVolumes();
    }
    const [engine, gpus, images, kernels, pool] = await Promise.all([
      settle(getEngine()),
      settle(getGpus()),
      settle(getImages()),
      settle(listKernels()),
      settle(getPool())
    ]);
    await this.kernels.loadOpenLogs(kernels);
    if (this.isDisposed) {
      return;
    }
    this.engine.render(engine, gpus);
    this.kernels.render(kernels);
    this.lastKernels = kernels;
    this.pool.render(pool);
    this.images.render(images);
    this.volumes.render(this.volumeList);
  }

  /** Notebooks opened or closed: the kernels' names change. */
  private onSessions(): void {
    if (this.lastKernels) {
      this.kernels.render(this.lastKernels);
    }
  }

  private onEvent(_: Event.IManager, event: Event.Emission): void {
    if (event.schema_id === PULL_SCHEMA) {
      this.images.onPull(event as unknown as IPullState);
    }
  }

  private readonly engine = new EngineSection();
  private readonly kernels: KernelSection;
  private readonly pool = new PoolSection();
  private readonly images: ImageSection;
  private readonly volumes = new VolumeSection();
  private timer: number;
  private volumeList: Result<IVolume[]> | null = null;
  private loadingVolumes = false;
  private lastKernels: Result<IKernelContainer[]> | null = null;
}

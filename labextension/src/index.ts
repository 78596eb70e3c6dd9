/** The plugin: registers the status-bar item, the sidebar and the "new kernel" command. */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';

import { COMMAND_NEW, newContainerKernel } from './newkernel';
import { ContainersPanel } from './sidebar';
import { watchRecordedEnvironments } from './recordednotice';
import { ContainerStatus } from './statusbar';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-mlcontainer:plugin',
  description:
    'See and drive container kernels: image, GPUs, resources, pulls, environment versions.',
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
      statusBar.registerStatusItem('jupyter-mlcontainer:status', {
        item: new ContainerStatus(
          tracker,
          app.serviceManager.kernelspecs,
          app.serviceManager.events
        ),
        align: 'left',
        rank: 4,
        isActive: () => true
      });
    }
    watchRecordedEnvironments(tracker, app.serviceManager.kernelspecs);
    const panel = new ContainersPanel(app);
    if (labShell) {
      labShell.add(panel, 'left', { rank: 300 });
    }
    app.commands.addCommand(COMMAND_NEW, {
      label: 'New Container Kernel…',
      caption: 'Create a pinned container kernelspec from an image',
      execute: async () => {
        if (await newContainerKernel(app)) {
          void panel.refresh();
        }
      }
    });
    palette?.addItem({ command: COMMAND_NEW, category: 'Kernel' });
  }
};

export default plugin;

/**
 * A notebook opened whose recorded environment (saved with it) differs from its kernel's
 * current version: a notice, with "Run as recorded" (its next kernel starts the recorded
 * image, and starts now) and "Use the current version".
 */
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { KernelSpec } from '@jupyterlab/services';

import { errorText } from './dom';
import { IRecordedEnvironment, recordedDiffers } from './environments';
import { showError } from './message';
import {
  forgetAsRecorded,
  getVersions,
  retryDropped,
  runAsRecorded
} from './request';
import { isContainerKernelSpec } from './statusbar';

const METADATA_KEY = 'jupyter_mlcontainer';

/** Check each notebook once it is opened and its kernel is known. */
export function watchRecordedEnvironments(
  tracker: INotebookTracker,
  specs: KernelSpec.IManager
): void {
  tracker.widgetAdded.connect((_, panel) => {
    check(panel, specs).catch(error =>
      console.warn(
        'jupyter-mlcontainer: recorded environment not checked',
        error
      )
    );
  });
}

async function check(
  panel: NotebookPanel,
  specs: KernelSpec.IManager
): Promise<void> {
  await panel.context.ready;
  await panel.sessionContext.ready;
  await specs.ready;
  const meta = panel.context.model.getMetadata(METADATA_KEY) as
    { environment?: IRecordedEnvironment } | undefined;
  const record = meta?.environment;
  const kernelName =
    panel.sessionContext.session?.kernel?.name ?? record?.kernel_name ?? '';
  if (!record || !isContainerKernelSpec(specs.specs, kernelName)) {
    return;
  }
  let differs;
  try {
    differs = recordedDiffers(
      record,
      kernelName,
      await retryDropped(() => getVersions(kernelName))
    );
  } catch (error) {
    console.debug('jupyter-mlcontainer: no versions of', kernelName, error);
    return; // not a kernelspec with versions: nothing to compare with
  }
  if (!differs) {
    return;
  }
  const { image } = differs;
  const recordedNumber = differs.recorded?.number;
  Notification.info(differs.text, {
    autoClose: false,
    actions: [
      {
        label: 'Run as recorded',
        caption:
          recordedNumber !== undefined
            ? `Restart this notebook's kernel with version ${recordedNumber}`
            : 'Restart this notebook with the recorded image',
        callback: () => void asRecorded(panel, kernelName, image)
      },
      {
        label: 'Use the current version',
        caption: `Keep version ${differs.current}`,
        callback: () => {
          // A kernel chosen to run as recorded before: the next one runs the current version.
          forgetAsRecorded(panel.context.path, kernelName).catch(error =>
            console.debug(
              'jupyter-mlcontainer: as-recorded not forgotten',
              error
            )
          );
        }
      }
    ]
  });
}

/** The notebook's next kernel runs the recorded image: start it now. */
async function asRecorded(
  panel: NotebookPanel,
  kernelName: string,
  image: string
): Promise<void> {
  try {
    await retryDropped(() =>
      runAsRecorded(panel.context.path, kernelName, image)
    );
    // A new kernel (a restart may reuse the container, and its image). Through the session
    // itself, so that a dropped request is tried again (the session's context would show
    // "Failed to fetch" and leave the notebook without a kernel); the server shuts the old
    // kernel down once the new one runs.
    const session = panel.sessionContext.session;
    if (session) {
      await retryDropped(() => session.changeKernel({ name: kernelName }));
    } else {
      await panel.sessionContext.changeKernel({ name: kernelName });
    }
  } catch (error) {
    await showError('Could not run as recorded', errorText(error));
  }
}

/** The "New container kernel" command: makes a pinned, probed kernelspec, as `add` does. */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';

import { errorText } from './dom';
import { MessageBody } from './message';
import { IFormError, NewKernelForm } from './newkernelform';
import {
  addKernelspec,
  ApiError,
  getEngine,
  IAddRequest,
  IAddResult,
  INameTaken
} from './request';

export const COMMAND_NEW = 'mlcontainer:new-kernelspec';

/** The form's error for a failed request, and the field that fixes it. */
export function formError(error: unknown): IFormError {
  const text = errorText(error);
  if (error instanceof ApiError && error.status === 409) {
    const taken = error.body as Partial<INameTaken>;
    if (taken.reason === 'name-taken' && taken.name) {
      return taken.replaceable
        ? {
            text:
              `A kernel named \`${taken.name}\` exists. Tick “Replace a kernel of ` +
              'this name” to replace it, or choose another kernel name.',
            field: 'replace'
          }
        : {
            text:
              `A kernel named \`${taken.name}\` exists and was not made by ` +
              'jupyter-mlcontainer, so it cannot be replaced: choose another kernel name.',
            field: 'name'
          };
    }
  }
  return { text };
}

/**
 * Ask for an image and settings, create the kernelspec; the created one, or null. A failure
 * shows the form again with its error, and with what was typed.
 */
export async function newContainerKernel(
  app: JupyterFrontEnd
): Promise<IAddResult | null> {
  const engine = getEngine().catch(() => null);
  let values: IAddRequest = { image: '' };
  let error: IFormError | null = null;
  for (;;) {
    const form = new NewKernelForm(values, error, engine);
    const field = error?.field ?? 'image';
    const result = await showDialog({
      title: 'New Container Kernel',
      body: form,
      focusNodeSelector: `input[name="${field}"]`,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
    });
    if (!result.button.accept) {
      return null;
    }
    values = form.getValue();
    const pending = Notification.emit(
      `Creating a container kernel from ${values.image || 'no image'}…`,
      'in-progress',
      { autoClose: false }
    );
    try {
      const created = await addKernelspec(values);
      await app.serviceManager.kernelspecs.refreshSpecs();
      await showDialog({
        title: 'Container kernel created',
        body: new MessageBody(
          `“${created.display_name}” (\`${created.name}\`) runs \`${created.image}\`.`,
          ...(created.warnings ?? [])
        ),
        buttons: [Dialog.okButton()]
      });
      return created;
    } catch (caught) {
      error = formError(caught);
    } finally {
      Notification.dismiss(pending);
    }
  }
}

/** The "New container kernel" dialog: makes a pinned, probed kernelspec, as `add` does. */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el, errorText } from './dom';
import { addKernelspec, IAddRequest, IAddResult } from './request';

export const COMMAND_NEW = 'mlcontainer:new-kernelspec';

const FIELDS: [keyof IAddRequest, string, string][] = [
  ['image', 'Image', 'pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime'],
  ['name', 'Kernel name (optional)', 'derived from the image'],
  ['display_name', 'Display name (optional)', 'derived from the image'],
  ['gpus', 'GPUs', 'auto, all, none, 2, 0,1'],
  ['mem_limit', 'Memory limit (optional)', '16g'],
  ['shm_size', 'Shared memory (optional)', '2g']
];

export class NewKernelForm extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlcontainer-form');
    for (const [name, label, placeholder] of FIELDS) {
      const row = el('label', 'jp-mlcontainer-form-row', label);
      const input = el('input', 'jp-mod-styled');
      input.name = name;
      input.placeholder = placeholder;
      row.appendChild(input);
      this.node.appendChild(row);
    }
  }

  getValue(): IAddRequest {
    const out: Record<string, string> = {};
    this.node.querySelectorAll('input').forEach(input => {
      if (input.value.trim()) {
        out[input.name] = input.value.trim();
      }
    });
    return out as unknown as IAddRequest;
  }
}

/** Ask for an image and settings, create the kernelspec; the created one, or null. */
export async function newContainerKernel(
  app: JupyterFrontEnd
): Promise<IAddResult | null> {
  const form = new NewKernelForm();
  const result = await showDialog({
    title: 'New container kernel',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Create' })]
  });
  if (!result.button.accept) {
    return null;
  }
  try {
    const created = await addKernelspec(form.getValue());
    await app.serviceManager.kernelspecs.refreshSpecs();
    await showDialog({
      title: 'Container kernel created',
      body: `“${created.display_name}” (${created.name}) runs ${created.image}.`,
      buttons: [Dialog.okButton()]
    });
    return created;
  } catch (error) {
    await showErrorMessage(
      'Could not create the container kernel',
      errorText(error)
    );
    return null;
  }
}

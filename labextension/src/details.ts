/** The kernel details dialog: image, digest, what is inside, container, GPUs, resources. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Event } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { el } from './dom';
import { addPackages } from './extenddialog';
import { detailRows } from './format';
import type { IKernelContainer } from './request';
import { showVersions } from './versionsdialog';

/** A table of one kernel's container. */
export class KernelDetails extends Widget {
  constructor(info: IKernelContainer) {
    super();
    this.addClass('jp-mlcontainer-details');
    const table = el('table');
    for (const [key, value] of detailRows(info)) {
      const row = el('tr');
      row.appendChild(el('th', '', key));
      row.appendChild(el('td', '', value));
      table.appendChild(row);
    }
    this.node.appendChild(table);
  }
}

/** The details, with "Add packages…" and "Versions…" for a kernel of a kernelspec. */
export async function showKernelDetails(
  info: IKernelContainer,
  events?: Event.IManager
): Promise<void> {
  const kernelName = info.kernel_name;
  const actions =
    kernelName && events
      ? [
          Dialog.createButton({
            label: 'Add packages…',
            displayType: 'default'
          }),
          Dialog.createButton({ label: 'Versions…', displayType: 'default' })
        ]
      : [];
  const answer = await showDialog({
    title: 'Container kernel',
    body: new KernelDetails(info),
    buttons: [...actions, Dialog.okButton({ label: 'Close' })]
  });
  if (!kernelName || !events) {
    return;
  }
  if (answer.button.label === 'Add packages…') {
    await addPackages(kernelName, events);
  } else if (answer.button.label === 'Versions…') {
    await showVersions(kernelName);
  }
}

/** The kernel details dialog: image, digest, what is inside, container, GPUs, resources. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el } from './dom';
import { detailRows } from './format';
import type { IKernelContainer } from './request';

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

export async function showKernelDetails(info: IKernelContainer): Promise<void> {
  await showDialog({
    title: 'Container kernel',
    body: new KernelDetails(info),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

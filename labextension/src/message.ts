/** Dialogs that show a server's message: its `inline code` as code, never as HTML. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { message } from './dom';

/** A dialog body of one or more paragraphs of server text. */
export class MessageBody extends Widget {
  constructor(...paragraphs: string[]) {
    super();
    this.addClass('jp-mlcontainer-message');
    for (const text of paragraphs) {
      this.node.appendChild(message('p', '', text));
    }
  }
}

/** JupyterLab's error dialog, with the server's message rendered (see `MessageBody`). */
export async function showError(title: string, text: string): Promise<void> {
  await showDialog({
    title,
    body: new MessageBody(text),
    buttons: [Dialog.okButton({ label: 'Dismiss' })]
  });
}

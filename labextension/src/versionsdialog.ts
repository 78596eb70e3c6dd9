/**
 * A kernelspec's versions: number, date, author, what each added, the current one marked,
 * and "Roll back" on the others (asks first).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { el, errorText, message } from './dom';
import { IVersions, versionLine } from './environments';
import { showError } from './message';
import { getVersions, rollbackTo } from './request';

export class VersionsList extends Widget {
  constructor(private readonly kernelName: string) {
    super();
    this.addClass('jp-mlcontainer-versions');
    void this.load();
  }

  async load(): Promise<void> {
    try {
      this.render(await getVersions(this.kernelName));
    } catch (error) {
      this.node.textContent = '';
      this.node.appendChild(
        message('p', 'jp-mlcontainer-error', errorText(error))
      );
    }
  }

  render(versions: IVersions): void {
    this.node.textContent = '';
    const list = el('ul', 'jp-mlcontainer-version-list');
    for (const version of [...versions.versions].reverse()) {
      const current = version.number === versions.current;
      const item = el(
        'li',
        current
          ? 'jp-mlcontainer-version jp-mod-current'
          : 'jp-mlcontainer-version'
      );
      item.dataset.version = String(version.number);
      const text = el('span', '', versionLine(version, versions.current));
      text.title = version.image;
      item.appendChild(text);
      if (current) {
        item.appendChild(el('span', 'jp-mlcontainer-badge', 'current'));
      } else {
        const button = el(
          'button',
          'jp-Button jp-mod-styled jp-mod-reject jp-mlcontainer-rollback',
          'Roll back'
        );
        button.type = 'button';
        button.addEventListener(
          'click',
          () => void this.rollback(version.number, versions.current, button)
        );
        item.appendChild(button);
      }
      list.appendChild(item);
    }
    this.node.appendChild(list);
  }

  private async rollback(
    number: number,
    current: number,
    button: HTMLButtonElement
  ): Promise<void> {
    const answer = await showDialog({
      title: 'Roll Back?',
      body:
        `Make version ${number} of ${this.kernelName} current again? Kernels started ` +
        `from now on run it; running kernels keep version ${current} until restarted.`,
      buttons: [
        Dialog.cancelButton(),
        Dialog.warnButton({ label: 'Roll Back' })
      ]
    });
    if (!answer.button.accept) {
      return;
    }
    button.disabled = true;
    try {
      await rollbackTo(this.kernelName, number);
    } catch (error) {
      await showError('Could not roll back', errorText(error));
    }
    await this.load();
  }
}

export async function showVersions(kernelName: string): Promise<void> {
  await showDialog({
    title: `Versions of ${kernelName}`,
    body: new VersionsList(kernelName),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

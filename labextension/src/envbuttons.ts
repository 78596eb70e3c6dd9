/**
 * "Add packages…" and "Versions…" for a kernelspec, as icon buttons for a sidebar row.
 */
import { Event } from '@jupyterlab/services';
import { addIcon, historyIcon } from '@jupyterlab/ui-components';

import { iconButton } from './dom';
import { addPackages } from './extenddialog';
import { showVersions } from './versionsdialog';

/** The two buttons for `kernelName`; `changed` runs once either dialog is closed. */
export function environmentButtons(
  kernelName: string,
  events: Event.IManager,
  changed: () => void
): HTMLButtonElement[] {
  return [
    iconButton(addIcon, 'Add packages…', 'jp-mlcontainer-add-packages', () => {
      void addPackages(kernelName, events).then(changed);
    }),
    iconButton(
      historyIcon,
      'Versions…',
      'jp-mlcontainer-versions-button',
      () => {
        void showVersions(kernelName).then(changed);
      }
    )
  ];
}

/**
 * A collapsible section of the sidebar, as JupyterLab's Running panel has them: a title bar
 * (with an optional toolbar) in the side panel's accordion, and a body the section fills.
 */
import { PanelWithToolbar } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { el, errorText, message } from './dom';

/** A REST call's outcome: its value, or the error's words. */
export type Result<T> = { value: T } | { error: string };

export async function settle<T>(promise: Promise<T>): Promise<Result<T>> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error: errorText(error) };
  }
}

export class Section extends PanelWithToolbar {
  constructor(kind: string, label: string) {
    super();
    this.addClass('jp-mlcontainer-section');
    this.addClass(`jp-mlcontainer-${kind}`);
    this.title.label = label;
    this.body = new Widget();
    this.body.addClass('jp-mlcontainer-section-body');
    this.addWidget(this.body);
  }

  /**
   * Fill the body: the error, a note when there is nothing, else one row per item.
   * `what` names the items in the error ("Cannot list kernels: …").
   */
  protected fill<T>(
    result: Result<T[]>,
    what: string,
    empty: string,
    row: (item: T) => HTMLElement
  ): void {
    const box = this.body.node;
    box.textContent = '';
    if ('error' in result) {
      box.appendChild(
        message(
          'div',
          'jp-mlcontainer-error',
          `Cannot list ${what}: ${result.error}`
        )
      );
    } else if (!result.value.length) {
      box.appendChild(
        el('div', 'jp-mlcontainer-muted jp-mlcontainer-empty', empty)
      );
    } else {
      for (const item of result.value) {
        box.appendChild(row(item));
      }
    }
  }

  protected readonly body: Widget;
}

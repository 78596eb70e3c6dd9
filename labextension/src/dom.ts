/** DOM helpers shared by the widgets. */
import { LabIcon } from '@jupyterlab/ui-components';

export const containerIcon = new LabIcon({
  name: 'jupyter-mlcontainer:container',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 7l9-4 9 4v10l-9 4-9-4V7zm2 1.3v7.4l7 3.1 7-3.1V8.3l-7 3.1-7-3.1zM12 5.2L6.2 7.7 12 10.3l5.8-2.6L12 5.2z"/></g></svg>'
});

/** An element with a class and text (never innerHTML: image names and logs are data). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** A button styled as JupyterLab's own (`extra` adds classes, e.g. `jp-mod-accept`). */
export function button(
  label: string,
  extra = '',
  onClick?: () => void
): HTMLButtonElement {
  const node = el(
    'button',
    `jp-Button jp-mod-styled jp-mod-small jp-mlcontainer-button ${extra}`.trim(),
    label
  );
  node.type = 'button';
  if (onClick) {
    node.addEventListener('click', onClick);
  }
  return node;
}

/** The words of an error, for people: the message without the class name. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** DOM helpers shared by the widgets. */
import { LabIcon } from '@jupyterlab/ui-components';

import { inlineParts } from './inline';

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

/**
 * An element showing a message of the server: its `inline code` as `<code>` elements, the
 * rest as text nodes (never innerHTML: messages quote image names, paths and logs).
 */
export function message<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text: string
): HTMLElementTagNameMap[K] {
  const node = el(tag, className);
  setMessage(node, text);
  return node;
}

/** Replace the contents of `node` with the message `text` (see `message`). */
export function setMessage(node: HTMLElement, text: string): void {
  node.textContent = '';
  for (const part of inlineParts(text)) {
    node.appendChild(
      part.code
        ? el('code', 'jp-mlcontainer-code', part.text)
        : document.createTextNode(part.text)
    );
  }
}

/**
 * An icon button as JupyterLab's toolbars and Running panel draw theirs (a minimal
 * `jp-ToolbarButtonComponent`), for rows built without React; `label` is its accessible
 * name and tooltip.
 */
export function iconButton(
  icon: LabIcon,
  label: string,
  extra = '',
  onClick?: () => void
): HTMLButtonElement {
  const node = el(
    'button',
    `jp-ToolbarButtonComponent jp-Button jp-mod-minimal jp-mlcontainer-icon-button ${extra}`.trim()
  );
  node.type = 'button';
  node.title = label;
  node.setAttribute('aria-label', label);
  node.appendChild(
    icon.element({
      tag: 'span',
      className: 'jp-ToolbarButtonComponent-icon',
      elementPosition: 'center',
      elementSize: 'normal'
    })
  );
  if (onClick) {
    node.addEventListener('click', onClick);
  }
  return node;
}

/** The words of an error, for people: the message without the class name. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

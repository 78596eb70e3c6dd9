/**
 * Inline code in server messages: the server writes Markdown backticks around commands and
 * settings (`` `jupyter mlcontainer prune` ``). This splits a message into plain and code
 * parts; the widgets make `<code>` elements of the code parts, never HTML of the text.
 */

export interface IInlinePart {
  /** True for a part that was between backticks. */
  code: boolean;
  text: string;
}

/**
 * The parts of `text`: runs of plain text and of inline code, in order. A backtick without
 * a closing one stays as it is (an unpaired backtick is text, not markup), and empty code
 * spans (two backticks) are kept as text too.
 */
export function inlineParts(text: string): IInlinePart[] {
  const parts: IInlinePart[] = [];
  const push = (code: boolean, value: string) => {
    if (!value) {
      return;
    }
    const last = parts[parts.length - 1];
    if (last && !last.code && !code) {
      last.text += value;
    } else {
      parts.push({ code, text: value });
    }
  };
  const pattern = /`([^`]+)`/g;
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    const index = match.index ?? 0;
    push(false, text.slice(at, index));
    push(true, match[1]);
    at = index + match[0].length;
  }
  push(false, text.slice(at));
  return parts;
}

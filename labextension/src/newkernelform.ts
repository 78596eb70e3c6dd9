/**
 * The form of the "New container kernel" dialog: what `jupyter mlcontainer add` asks for,
 * a Replace checkbox, a warning while the GPUs asked for cannot be had on this engine, and
 * the error of the last attempt (the form keeps what was typed).
 */
import { Widget } from '@lumino/widgets';

import { el, message, setMessage } from './dom';
import { gpuWarning } from './format';
import type { IAddRequest, IEngineStatus } from './request';

type TextField = Exclude<keyof IAddRequest, 'replace'>;

const FIELDS: [TextField, string, string][] = [
  ['image', 'Image', 'pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime'],
  ['name', 'Kernel name (optional)', 'derived from the image'],
  ['display_name', 'Display name (optional)', 'derived from the image'],
  ['gpus', 'GPUs', 'auto, all, none, 2, 0,1'],
  ['mem_limit', 'Memory limit (optional)', '16g'],
  ['shm_size', 'Shared memory (optional)', '2g']
];

/** The last attempt's error, and the field that fixes it. */
export interface IFormError {
  text: string;
  field?: TextField | 'replace';
}

export class NewKernelForm extends Widget {
  constructor(
    values: IAddRequest = { image: '' },
    error: IFormError | null = null,
    engine: Promise<IEngineStatus | null> = Promise.resolve(null)
  ) {
    super();
    this.addClass('jp-mlcontainer-form');
    if (error) {
      this.node.appendChild(
        message(
          'div',
          'jp-mlcontainer-error jp-mlcontainer-form-error',
          error.text
        )
      );
    }
    for (const [name, label, placeholder] of FIELDS) {
      const row = el('label', 'jp-mlcontainer-form-row', label);
      const input = el('input', 'jp-mod-styled');
      input.name = name;
      input.placeholder = placeholder;
      input.value = String(values[name] ?? '');
      input.spellcheck = false;
      input.classList.toggle('jp-mod-invalid', error?.field === name);
      row.appendChild(input);
      this.node.appendChild(row);
      if (name === 'name') {
        this.node.appendChild(
          this.replaceBox(!!values.replace, error?.field === 'replace')
        );
      }
      if (name === 'gpus') {
        this.node.appendChild(this.warning);
        input.addEventListener('input', () => this.checkGpus());
      }
    }
    void engine.then(status => {
      this.engine = status;
      this.checkGpus();
    });
  }

  getValue(): IAddRequest {
    const out: Record<string, string | boolean> = {};
    this.node.querySelectorAll('input').forEach(input => {
      if (input.type === 'checkbox') {
        if (input.checked) {
          out[input.name] = true;
        }
      } else if (input.value.trim()) {
        out[input.name] = input.value.trim();
      }
    });
    return out as unknown as IAddRequest;
  }

  private replaceBox(checked: boolean, highlight: boolean): HTMLElement {
    const row = el('label', 'jp-mlcontainer-form-check');
    const box = el('input');
    box.type = 'checkbox';
    box.name = 'replace';
    box.checked = checked;
    row.appendChild(box);
    row.appendChild(document.createTextNode('Replace a kernel of this name'));
    row.classList.toggle('jp-mod-highlighted', highlight);
    return row;
  }

  private checkGpus(): void {
    const input =
      this.node.querySelector<HTMLInputElement>('input[name="gpus"]');
    const text = gpuWarning(input?.value ?? '', this.engine);
    setMessage(this.warning, text);
    this.warning.hidden = !text;
  }

  private engine: IEngineStatus | null = null;
  private readonly warning = (() => {
    const node = el('div', 'jp-mlcontainer-warning jp-mlcontainer-gpu-warning');
    node.hidden = true;
    return node;
  })();
}

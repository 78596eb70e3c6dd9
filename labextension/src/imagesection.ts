/** The sidebar's images section: each container kernelspec's image, and pulls with progress. */
import { Event } from '@jupyterlab/services';
import { downloadIcon } from '@jupyterlab/ui-components';

import { el, errorText, iconButton, message } from './dom';
import { environmentButtons } from './envbuttons';
import { imageLine } from './format';
import { showError } from './message';
import { afterStart } from './pulls';
import { IImages, IKernelImage, IPullState, startPull } from './request';
import { Result, Section } from './section';

export class ImageSection extends Section {
  constructor(
    private readonly onPullEnd: () => void,
    /** The event bus, for "Add packages…" (its build's progress). */
    private readonly events?: Event.IManager
  ) {
    super('images', 'Kernel Images');
  }

  render(images: Result<IImages>): void {
    const entries =
      'error' in images ? images : { value: images.value.kernelspecs };
    this.fill(entries, 'images', 'No container kernelspec', entry =>
      this.renderImage(entry)
    );
    this.renderPulls();
  }

  /** A pull event of the server's event bus. */
  onPull(state: IPullState): void {
    this.pulls.set(state.image, state);
    this.renderPulls();
    if (state.status !== 'pulling') {
      this.onPullEnd();
    }
  }

  private renderImage(entry: IKernelImage): HTMLElement {
    const row = el('div', 'jp-mlcontainer-item jp-mlcontainer-image');
    row.dataset.image = entry.image;
    const text = el('div', 'jp-mlcontainer-item-text');
    text.appendChild(
      el(
        'div',
        'jp-mlcontainer-item-label jp-mlcontainer-image-name',
        entry.display_name
      )
    );
    text.appendChild(
      el(
        'div',
        'jp-mlcontainer-item-detail jp-mlcontainer-reference',
        imageLine(entry)
      )
    );
    if (!entry.pullable) {
      text.appendChild(
        el(
          'div',
          'jp-mlcontainer-muted jp-mlcontainer-local',
          entry.present
            ? 'No registry has it: rebuild or load it on the engine to update it'
            : 'An image id: only the engine that built it has it'
        )
      );
    }
    text.appendChild(el('div', 'jp-mlcontainer-progress'));
    row.title = `${entry.kernelspec}: ${entry.source ?? entry.image}`;
    row.appendChild(text);
    if (entry.pullable) {
      const label = entry.present ? 'Pull again' : 'Pull';
      row.appendChild(
        iconButton(downloadIcon, label, 'jp-mlcontainer-pull', () => {
          void this.pull(entry.image);
        })
      );
    }
    const events = this.events;
    if (events) {
      row.append(
        ...environmentButtons(entry.kernelspec, events, () => this.onPullEnd())
      );
    }
    return row;
  }

  private async pull(image: string): Promise<void> {
    this.pulls.delete(image); // events from now on are about this pull
    try {
      const answer = await startPull(image);
      this.pulls.set(image, afterStart(this.pulls.get(image), answer));
      this.renderPulls();
    } catch (error) {
      await showError('Pull failed', errorText(error));
    }
  }

  private renderPulls(): void {
    this.node
      .querySelectorAll<HTMLElement>('.jp-mlcontainer-image')
      .forEach(row => {
        const state = this.pulls.get(row.dataset.image ?? '');
        const box = row.querySelector<HTMLElement>('.jp-mlcontainer-progress');
        if (!state || !box) {
          return;
        }
        box.textContent = '';
        const bar = el('progress', 'jp-mlcontainer-bar');
        bar.max = 1;
        bar.value = state.status === 'done' ? 1 : (state.fraction ?? 0);
        box.appendChild(bar);
        box.appendChild(
          message(
            'div',
            state.status === 'error'
              ? 'jp-mlcontainer-error'
              : 'jp-mlcontainer-pull-status',
            state.status === 'done' ? 'Pull complete' : state.message
          )
        );
        box.dataset.status = state.status;
      });
  }

  private pulls = new Map<string, IPullState>();
}

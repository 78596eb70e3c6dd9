/** The sidebar's volumes section: the user's HOME volumes (caches) and kernel runtimes. */
import { el, message } from './dom';
import { formatBytes, imageName } from './format';
import type { IVolume } from './request';
import { Result, Section } from './section';

export class VolumeSection extends Section {
  constructor() {
    super('volumes', 'Caches and Runtimes');
    this.title.caption =
      'Your HOME volumes (pip and model caches, one per image) and the kernel runtimes';
  }

  render(volumes: Result<IVolume[]> | null): void {
    if (volumes === null) {
      this.body.node.textContent = '';
      this.body.node.appendChild(el('div', 'jp-mlcontainer-muted', 'Loading…'));
      return;
    }
    this.fill(volumes, 'volumes', 'None', volume => {
      const what =
        volume.kind === 'home'
          ? `HOME for ${imageName(volume.image)}`
          : 'ipykernel runtime';
      const row = el('div', 'jp-mlcontainer-item jp-mlcontainer-volume');
      row.dataset.volume = volume.name;
      const text = el('div', 'jp-mlcontainer-item-text');
      text.appendChild(el('div', 'jp-mlcontainer-item-label', what));
      text.appendChild(
        el(
          'div',
          'jp-mlcontainer-item-detail jp-mlcontainer-volume-name',
          volume.name
        )
      );
      text.appendChild(
        message(
          'div',
          volume.needed
            ? 'jp-mlcontainer-item-detail'
            : 'jp-mlcontainer-warning',
          formatBytes(volume.size) +
            (volume.needed
              ? ''
              : ' · unused: `jupyter mlcontainer prune` removes it')
        )
      );
      row.title =
        volume.kind === 'home'
          ? `uid ${volume.uid} · ${volume.image}`
          : volume.name;
      row.appendChild(text);
      return row;
    });
  }
}

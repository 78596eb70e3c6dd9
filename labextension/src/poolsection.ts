/** The sidebar's warm-pool section: ready kernels waiting for the next start. */
import { el } from './dom';
import { kernelImageName } from './format';
import type { IPool } from './request';
import { Result, Section } from './section';

export class PoolSection extends Section {
  constructor() {
    super('pool', 'Ready Kernels');
    this.title.caption =
      'Warm pool: started kernels that the next kernel starts claim';
  }

  render(pool: Result<IPool>): void {
    if ('value' in pool && !pool.value.size) {
      this.body.node.textContent = '';
      this.body.node.appendChild(
        el('div', 'jp-mlcontainer-muted', 'Off (MLContainerPool.size = 0)')
      );
      return;
    }
    const ready = 'error' in pool ? pool : { value: pool.value.kernels };
    this.fill(
      ready,
      'the pool',
      'None yet: a container kernelspec gets ready kernels once it has been started',
      kernel => {
        const row = el('div', 'jp-mlcontainer-item jp-mlcontainer-pooled');
        row.dataset.container = kernel.container_id;
        const text = el('div', 'jp-mlcontainer-item-text');
        text.appendChild(
          el('div', 'jp-mlcontainer-item-label', kernel.kernelspec)
        );
        text.appendChild(
          el('div', 'jp-mlcontainer-item-detail', kernelImageName(kernel))
        );
        row.title = `${kernel.kernelspec}: ${kernel.container_name}`;
        row.appendChild(text);
        return row;
      }
    );
  }
}

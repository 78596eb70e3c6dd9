import {
  asksForGpus,
  gpuLine,
  reclaimWarning,
  gpuWarning,
  ISessionRef,
  kernelDetail,
  kernelLabel
} from '../format';
import type { IKernelContainer } from '../request';
import { kernel as base } from './kernel.fixture';

const kernel: IKernelContainer = {
  ...base,
  kernel_name: 'ui-python',
  display_name: 'Container Python'
};
const session = (
  path: string,
  kernelId: string | null,
  type = 'notebook',
  name = path
): ISessionRef => ({ path, name, type, kernelId });

describe('kernelLabel', () => {
  it('names a kernel by its notebook, with the path as tooltip', () => {
    expect(
      kernelLabel(kernel, [
        session('work/analysis.ipynb', 'k1'),
        session('other.ipynb', 'k2')
      ])
    ).toEqual({ label: 'analysis.ipynb', title: 'work/analysis.ipynb' });
  });

  it('lists every notebook and console that shares the kernel', () => {
    expect(
      kernelLabel(kernel, [
        session('a.ipynb', 'k1'),
        session('console-1-x', 'k1', 'console', 'Console 1')
      ])
    ).toEqual({ label: 'a.ipynb, Console 1', title: 'a.ipynb\nconsole-1-x' });
  });

  it('falls back to the kernelspec when no session uses the kernel', () => {
    const { label, title } = kernelLabel(kernel, [session('b.ipynb', 'k2')]);
    expect(label).toBe('Container Python');
    expect(title).toContain('no notebook uses this kernel');
    expect(kernelLabel({ ...kernel, display_name: null }, []).label).toBe(
      'ui-python'
    );
  });
});

describe('kernelDetail', () => {
  it('gives the image first, then the state', () => {
    expect(kernelDetail(kernel)).toBe(
      'mlcontainer/python:3.11 · Up 3 minutes · CPU'
    );
  });
});

describe('asksForGpus', () => {
  it.each([
    ['', false],
    ['auto', false],
    ['none', false],
    ['NONE', false],
    ['0', false],
    ['all', true],
    ['2', true],
    ['0,1', true],
    ['device=GPU-3f2', true],
    ['"all"', true]
  ])('%p → %p', (gpus, asks) => {
    expect(asksForGpus(gpus)).toBe(asks);
  });
});

describe('gpuWarning', () => {
  const without = {
    reachable: true,
    gpus: { available: false, description: 'no NVIDIA runtime' }
  };
  const withGpus = {
    reachable: true,
    gpus: { available: true, description: 'NVIDIA runtime' }
  };

  it('warns before GPUs are asked of an engine without any', () => {
    const text = gpuWarning('all', without);
    expect(text).toContain('This engine has no NVIDIA runtime');
    expect(text).toContain('`auto`');
    expect(text).not.toContain('--gpus');
  });

  it('says nothing when GPUs can be had, are not asked for, or nothing is known', () => {
    expect(gpuWarning('all', withGpus)).toBe('');
    expect(gpuWarning('auto', without)).toBe('');
    expect(gpuWarning('none', without)).toBe('');
    expect(gpuWarning('all', null)).toBe('');
    expect(gpuWarning('all', { reachable: false })).toBe('');
  });
});

describe('gpuLine', () => {
  const gpu = {
    index: '0',
    uuid: 'GPU-aaaa',
    name: 'NVIDIA H200',
    memory_total: 141 * 2 ** 30,
    holders: [] as { user: string; kernel_id: string | null }[],
    free: true
  };
  it('says a GPU is free', () => {
    expect(gpuLine(gpu)).toBe('GPU 0 · NVIDIA H200 · 141.0 GiB — free');
  });
  it('names its holders with their counts, by name', () => {
    const holders = [
      { user: 'bob', kernel_id: null },
      { user: 'alice', kernel_id: 'k1' },
      { user: 'alice', kernel_id: null }
    ];
    expect(gpuLine({ ...gpu, memory_total: 0, holders, free: false })).toBe(
      'GPU 0 · NVIDIA H200 — alice ×2, bob ×1'
    );
  });
});

describe('reclaimWarning', () => {
  it('counts down in minutes and seconds, never below zero', () => {
    expect(reclaimWarning(245.4)).toBe(
      'Idle with its GPUs: shut down in 4:05 to free them, unless you run a cell'
    );
    expect(reclaimWarning(-3)).toContain('shut down in 0:00');
  });
});

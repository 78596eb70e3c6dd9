import {
  detailRows,
  formatBytes,
  gpuSummary,
  imageName,
  kernelLine,
  nodeSummary,
  probeSummary
} from '../format';
import { kernel } from './kernel.fixture';

describe('formatBytes', () => {
  it.each([
    [null, '–'],
    [undefined, '–'],
    [0, '0 B'],
    [1023, '1023 B'],
    [2048, '2 KiB'],
    [5 * 2 ** 20, '5.0 MiB'],
    [1.5 * 2 ** 30, '1.5 GiB'],
    [3 * 2 ** 50, '3072.0 TiB']
  ])('%p → %p', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('imageName', () => {
  it.each([
    ['mlcontainer/python:3.11', 'mlcontainer/python:3.11'],
    ['pytorch/pytorch:2.6.0-cuda12.4', 'pytorch/pytorch:2.6.0-cuda12.4'],
    ['docker.io/library/python:3.11', 'python:3.11'],
    ['docker.io/pytorch/pytorch:2.6.0', 'pytorch/pytorch:2.6.0'],
    ['index.docker.io/library/python', 'python'],
    ['ghcr.io/org/team/img:1', 'ghcr.io/org/team/img:1'],
    ['localhost:5000/team/torch:2.13', 'localhost:5000/team/torch:2.13'],
    ['docker.io/library/sub/img:1', 'library/sub/img:1'],
    ['ghcr.io/org/img@sha256:0123456789abcdef', 'ghcr.io/org/img@0123456'],
    ['sha256:' + '0123456789ab'.repeat(5) + 'cdef', '0123456789ab']
  ])('%s → %s', (image, name) => {
    expect(imageName(image)).toBe(name);
  });
});

describe('gpuSummary', () => {
  it('names granted GPUs', () => {
    expect(
      gpuSummary({ gpus_granted: '2 GPUs (0,1)', gpus_requested: 'all' })
    ).toBe('GPU: 2 GPUs (0,1)');
  });
  it('says CPU when none were asked for', () => {
    expect(gpuSummary({ gpus_granted: 'no GPU', gpus_requested: 'none' })).toBe(
      'CPU'
    );
  });
  it('says why there is no GPU when one was wanted', () => {
    expect(gpuSummary({ gpus_granted: null, gpus_requested: undefined })).toBe(
      'CPU · no GPU on the engine'
    );
  });
});

describe('probeSummary', () => {
  it('explains a missing probe', () => {
    expect(probeSummary(null)).toMatch(/^not probed/);
  });
  it('lists what it found, in a fixed order', () => {
    expect(
      probeSummary({
        python_version: '3.11.2',
        ipykernel: '7.4.0',
        torch: '2.13.0',
        os: 'Debian GNU/Linux 12'
      })
    ).toBe(
      'Python 3.11.2 · PyTorch 2.13.0 · ipykernel 7.4.0 · Debian GNU/Linux 12'
    );
  });
});

describe('kernelLine', () => {
  it('uses the engine status, the memory limit and the GPUs', () => {
    expect(kernelLine({ ...kernel, mem_limit: '2g' })).toBe(
      'Up 3 minutes · memory limit 2g · CPU'
    );
  });
  it('falls back to the state', () => {
    expect(
      kernelLine({ ...kernel, status: undefined, state: 'starting' })
    ).toBe('starting · CPU');
  });
});

describe('the node of a kernel on a swarm', () => {
  it('is shown only when the backend placed it', () => {
    expect(nodeSummary(kernel)).toBe('');
    expect(nodeSummary({ node: 'sw-gpu' })).toBe('on sw-gpu');
    expect(Object.fromEntries(detailRows(kernel)).Node).toBeUndefined();
    expect(
      Object.fromEntries(detailRows({ ...kernel, node: 'sw-gpu' })).Node
    ).toBe('sw-gpu');
  });
  it('joins the sidebar line unless the status names it already', () => {
    expect(
      kernelLine({ ...kernel, status: 'running', node: 'sw-worker' })
    ).toBe('running · on sw-worker · CPU');
    expect(
      kernelLine({ ...kernel, status: 'running on sw-gpu', node: 'sw-gpu' })
    ).toBe('running on sw-gpu · CPU');
  });
});

describe('detailRows', () => {
  it('shows the source and the pinned image', () => {
    const rows = Object.fromEntries(detailRows(kernel));
    expect(rows.Image).toBe(`mlcontainer/python:3.11 → ${kernel.image}`);
    expect(rows.Container).toBe('mlc-k1-1 (running)');
    expect(rows.Memory).toBe('– of –');
    expect(rows['Last death']).toBeUndefined();
  });
  it('shows a death', () => {
    const dead = {
      ...kernel,
      last_exit: { exit_code: 137, reason: 'killed (SIGKILL)', message: '' }
    };
    expect(Object.fromEntries(detailRows(dead))['Last death']).toBe(
      'killed (SIGKILL)'
    );
  });
});

/** A kernel container as the REST API lists it, for the formatting tests. */
import type { IKernelContainer } from '../request';

export const kernel: IKernelContainer = {
  kernel_id: 'k1',
  kernel_name: 'python',
  container_id: 'c1',
  container_name: 'mlc-k1-1',
  image: 'sha256:' + 'a'.repeat(64),
  image_details: null,
  probe: null,
  source: 'mlcontainer/python:3.11',
  gpus_requested: 'none',
  gpus_granted: 'no GPU',
  mem_limit: null,
  state: 'running',
  status: 'Up 3 minutes',
  last_exit: null
};

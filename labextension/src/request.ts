/**
 * The server extension's REST API under /mlcontainer/: one function per call, typed answers,
 * and errors that say whether the server answered (ApiError.status) or could not be reached.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { IAddRequest } from './addrequest';
import type { IExtendState, IVersion, IVersions } from './environments';

/** A failed call: `status` is the HTTP status, 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** The server's JSON answer, for errors that say more than their message. */
    readonly body: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Call `/mlcontainer/<endPoint>`; errors carry the server's words. */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'mlcontainer', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(`The Jupyter server cannot be reached: ${error}`, 0);
  }
  const text = await response.text();
  let data: any = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text
  }
  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && data.message) ||
      `${response.status} ${response.statusText}`.trim();
    throw new ApiError(
      message,
      response.status,
      data && typeof data === 'object' ? data : {}
    );
  }
  return data as T;
}

export interface IEngineStatus {
  reachable: boolean;
  address: string;
  /** "Docker 28.2.2, rootful", "Podman 4.3.1, rootless" */
  engine?: string;
  remote?: boolean;
  version?: string;
  api_version?: string;
  error?: string;
  gpus?: { available: boolean; description: string };
}

/** One GPU of the engine's host and who holds it (the GPU ledger). */
export interface IGpu {
  index: string;
  uuid: string;
  name: string;
  memory_total: number;
  /** Users by name; kernel ids only for this server's own kernels. */
  holders: { user: string; kernel_id: string | null }[];
  free: boolean;
}

export interface IGpuTable {
  support: string;
  available: boolean;
  /** Whether GPUs are handed out by the ledger (the host's GPUs could be listed). */
  ledger: boolean;
  /** Kernels per GPU (1: exclusive). */
  sharing: number;
  gpus: IGpu[];
}

export interface IKernelImage {
  kernelspec: string;
  display_name: string;
  image: string;
  source: string | null;
  present: boolean;
  /** Whether a pull can fetch it: false for images built or loaded on the engine. */
  pullable: boolean;
  size: number | null;
}

export interface IImages {
  images: { id: string; tags: string[]; digests: string[]; size: number }[];
  kernelspecs: IKernelImage[];
}

export interface IPullState {
  image: string;
  status: 'pulling' | 'done' | 'error';
  fraction: number | null;
  message: string;
  digest: string | null;
}

export interface IKernelContainer {
  kernel_id: string;
  kernel_name: string | null;
  display_name?: string | null;
  container_id: string | null;
  container_name: string | null;
  image: string;
  image_details: {
    image_id: string;
    digest: string | null;
    repo_digests: string[];
  } | null;
  probe: Record<string, string> | null;
  source: string | null;
  gpus_requested: unknown;
  gpus_granted: string | null;
  /**
   * Seconds until the server shuts this kernel down for holding GPUs idle
   * (GpuReclaimer.gpu_idle_timeout), once within its warning; else null.
   */
  reclaim_in?: number | null;
  mem_limit: string | null;
  /** The container's state: running, exited, … ("starting" before it exists, "gone" after). */
  state?: string;
  /** The engine's words for the state, in the kernel list only: "Up 3 minutes". */
  status?: string;
  /** The node a scheduled backend (Docker Swarm) placed it on; absent on a Docker engine. */
  node?: string;
  resources?: {
    memory_bytes: number | null;
    memory_limit_bytes: number | null;
    cpu_percent: number | null;
  };
  log_tail?: string;
  /** The kernelspec version the kernel runs (null: not one of its versions). */
  version?: number | null;
  /** pip-installed into the container, not in its image (as last looked up). */
  drift?: {
    added: Record<string, string>;
    removed: Record<string, string>;
    changed: Record<string, [string, string]>;
  };
  drift_message?: string | null;
  /** How the last container died; null after a stop or restart that Jupyter asked for. */
  last_exit: { exit_code: number; reason: string; message: string } | null;
}

/** The new kernelspec's fields: generated from the server's settings (addrequest.ts). */
export type { IAddRequest };

export interface IAddResult {
  name: string;
  display_name: string;
  image: string;
  /** What the user should know, e.g. GPUs asked of an engine without GPU support. */
  warnings?: string[];
}

/** The body of the 409 answer to a new kernelspec whose name is taken. */
export interface INameTaken {
  reason: 'name-taken';
  name: string;
  /** Whether `replace` would replace it (only kernelspecs this package made can be). */
  replaceable: boolean;
}

export const PULL_SCHEMA =
  'https://events.jupyter-mlcontainer.org/image_pull/v1';

export function getEngine(): Promise<IEngineStatus> {
  return requestAPI<IEngineStatus>('engine');
}

export function getGpus(): Promise<IGpuTable> {
  return requestAPI<IGpuTable>('gpus');
}

export function getImages(): Promise<IImages> {
  return requestAPI<IImages>('images');
}

/** The container kernels with their containers' state: one engine call on the server. */
export async function listKernels(): Promise<IKernelContainer[]> {
  return (await requestAPI<{ kernels: IKernelContainer[] }>('kernels')).kernels;
}

/** One kernel in full: resources and the last `tail` lines of its log. */
export function getKernel(
  kernelId: string,
  tail = 40
): Promise<IKernelContainer> {
  return requestAPI<IKernelContainer>(
    `kernels/${encodeURIComponent(kernelId)}?tail=${tail}`
  );
}

export function startPull(image: string): Promise<IPullState> {
  return requestAPI<IPullState>('images/pull', {
    method: 'POST',
    body: JSON.stringify({ image })
  });
}

export function addKernelspec(request: IAddRequest): Promise<IAddResult> {
  return requestAPI<IAddResult>('kernelspecs', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

/** A volume of the project: a user's HOME (caches) or an injected kernel runtime. */
export interface IVolume {
  name: string;
  kind: 'home' | 'runtime';
  uid: string;
  image: string;
  size: number | null;
  /** False when no installed kernelspec needs it: `jupyter mlcontainer prune` removes it. */
  needed: boolean;
}

/** The project's volumes with their sizes (the engine's `system df`: not for every refresh). */
export async function listVolumes(): Promise<IVolume[]> {
  return (await requestAPI<{ volumes: IVolume[] }>('volumes')).volumes;
}

/** A ready kernel waiting in the server's warm pool. */
export interface IPooledKernel {
  kernelspec: string;
  container_id: string;
  container_name: string;
  image: string;
  /** The reference the kernelspec's image was pinned from (`add` records it). */
  source: string | null;
  /** Seconds since the epoch. */
  ready_since: number;
}

/** The warm pool: its settings and the ready kernels that the next starts claim. */
export interface IPool {
  size: number;
  max_total: number;
  gpu_kernels: boolean;
  kernels: IPooledKernel[];
}

export function getPool(): Promise<IPool> {
  return requestAPI<IPool>('pool');
}

/** A kernelspec's environment versions and the current one's number. */
export function getVersions(kernelName: string): Promise<IVersions> {
  return requestAPI<IVersions>(
    `kernelspecs/${encodeURIComponent(kernelName)}/versions`
  );
}

/** Start adding packages to a kernelspec's environment: its progress comes as events. */
export function startExtend(
  kernelName: string,
  body: { pip: string[]; apt: string[] }
): Promise<IExtendState> {
  return requestAPI<IExtendState>(
    `kernelspecs/${encodeURIComponent(kernelName)}/extend`,
    { method: 'POST', body: JSON.stringify(body) }
  );
}

/** The last extend of a kernelspec (404 when none since the server started). */
export function getExtend(kernelName: string): Promise<IExtendState> {
  return requestAPI<IExtendState>(
    `kernelspecs/${encodeURIComponent(kernelName)}/extend`
  );
}

/** Make version `number` of a kernelspec's environment current again. */
export function rollbackTo(
  kernelName: string,
  number: number
): Promise<{ current: number; version: IVersion }> {
  return requestAPI(`kernelspecs/${encodeURIComponent(kernelName)}/rollback`, {
    method: 'POST',
    body: JSON.stringify({ version: number })
  });
}

/** The notebook's next kernel of `kernelName` starts with `image`, as recorded. */
export function runAsRecorded(
  path: string,
  kernelName: string,
  image: string
): Promise<IVersion> {
  return requestAPI<IVersion>('as-recorded', {
    method: 'POST',
    body: JSON.stringify({ path, kernel_name: kernelName, image })
  });
}

/** The notebook's next kernels of `kernelName` start with its current version again. */
export async function forgetAsRecorded(
  path: string,
  kernelName: string
): Promise<void> {
  const query = new URLSearchParams({ path, kernel_name: kernelName });
  await requestAPI(`as-recorded?${query.toString()}`, { method: 'DELETE' });
}

/**
 * `request()`, tried again (up to `tries` times, waiting `pause` ms more each time) when the
 * server could not be reached: a kernel's container starting (a new network interface) can
 * make the browser drop requests under way. Errors the server answered are not retried.
 */
export async function retryDropped<T>(
  request: () => Promise<T>,
  tries = 4,
  pause = 1000
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (error) {
      const networkError = ServerConnection.NetworkError;
      const dropped =
        (error instanceof ApiError && error.status === 0) ||
        (networkError !== undefined && error instanceof networkError);
      if (!dropped || attempt >= tries) {
        throw error;
      }
      await new Promise(resolve => setTimeout(resolve, pause * attempt));
    }
  }
}

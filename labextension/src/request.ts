import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Call the server extension's REST API under /mlcontainer/. Errors carry the server's words. */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'mlcontainer', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new Error(`The Jupyter server cannot be reached: ${error}`);
  }
  const text = await response.text();
  let data: any = text;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    // not JSON: keep the text
  }
  if (!response.ok) {
    const message = (data && data.message) || response.statusText;
    throw new Error(message);
  }
  return data as T;
}

export interface IEngineStatus {
  reachable: boolean;
  address: string;
  version?: string;
  api_version?: string;
  error?: string;
  gpus?: { available: boolean; description: string };
}

export interface IKernelImage {
  kernelspec: string;
  display_name: string;
  image: string;
  source: string | null;
  present: boolean;
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
  container_id: string | null;
  container_name: string | null;
  image: string;
  image_details: { image_id: string; digest: string | null; repo_digests: string[] } | null;
  probe: Record<string, string> | null;
  source: string | null;
  gpus_requested: unknown;
  gpus_granted: string | null;
  mem_limit: string | null;
  state?: string;
  resources?: {
    memory_bytes: number | null;
    memory_limit_bytes: number | null;
    cpu_percent: number | null;
  };
  log_tail?: string;
  last_exit: { exit_code: number; reason: string; message: string } | null;
}

export const PULL_SCHEMA = 'https://events.jupyter-mlcontainer.org/image_pull/v1';

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '–';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit < 2 ? 0 : 1)} ${units[unit]}`;
}

/** pytorch/pytorch:2.6.0-cuda12.4 → pytorch:2.6.0-cuda12.4; repo@sha256:abc… → repo@abc1234 */
export function shortImage(image: string): string {
  const [ref, digest] = image.split('@');
  const last = ref.split('/').pop() || ref;
  if (image.startsWith('sha256:')) {
    return image.slice(7, 19);
  }
  return digest ? `${last}@${digest.replace('sha256:', '').slice(0, 7)}` : last;
}

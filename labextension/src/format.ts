/**
 * Pure formatting helpers: what the widgets show, computed from the REST API's answers.
 * No DOM and no requests here, so each function is unit-tested on its own.
 */
import type { IGpu, IKernelContainer } from './request';

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

export function formatPercent(value: number | null | undefined): string {
  return value === null || value === undefined ? '–' : `${value}%`;
}

const DOCKER_HUB = /^(docker\.io|index\.docker\.io|registry-1\.docker\.io)\//;

/**
 * The image reference as users write it: repository path and tag kept, Docker Hub's host
 * (and its `library/` namespace) dropped, a digest shortened to 7 characters and a bare
 * image id to 12.
 *
 * `docker.io/library/python:3.11` → `python:3.11`;
 * `ghcr.io/org/img@sha256:0123456789…` → `ghcr.io/org/img@0123456`.
 */
export function imageName(image: string): string {
  if (/^sha256:[0-9a-f]+$/.test(image)) {
    return image.slice(7, 19);
  }
  const [ref, digest] = image.split('@');
  let name = ref;
  if (DOCKER_HUB.test(name)) {
    name = name.replace(DOCKER_HUB, '').replace(/^library\/(?=[^/]+$)/, '');
  }
  return digest ? `${name}@${digest.replace('sha256:', '').slice(0, 7)}` : name;
}

/** The name a kernel's image is shown by: the reference it was made from, else the image. */
export function kernelImageName(
  info: Pick<IKernelContainer, 'source' | 'image'>
): string {
  return imageName(info.source ?? info.image);
}

/** Where a scheduled backend placed the kernel: "on sw-gpu"; '' where it has no node. */
export function nodeSummary(info: Pick<IKernelContainer, 'node'>): string {
  return info.node ? `on ${info.node}` : '';
}

/** What the kernel has of GPUs, in a few words. */
export function gpuSummary(
  info: Pick<IKernelContainer, 'gpus_granted' | 'gpus_requested'>
): string {
  if (info.gpus_granted && info.gpus_granted !== 'no GPU') {
    return `GPU: ${info.gpus_granted}`;
  }
  const requested = String(info.gpus_requested ?? 'auto');
  return requested === 'none' ? 'CPU' : 'CPU · no GPU on the engine';
}

const PROBE_LABELS: [string, string][] = [
  ['torch', 'PyTorch'],
  ['tensorflow', 'TensorFlow'],
  ['jax', 'JAX'],
  ['cuda', 'CUDA'],
  ['cudnn', 'cuDNN'],
  ['ipykernel', 'ipykernel']
];

/** What the image probe found inside: `Python 3.11.2 · PyTorch 2.6.0 · Debian …`. */
/** One GPU and who holds it: "GPU 0 · H200 · 141 GiB — alice ×2, bob ×1" (or "— free"). */
export function gpuLine(gpu: IGpu): string {
  const counts = new Map<string, number>();
  for (const holder of gpu.holders) {
    counts.set(holder.user, (counts.get(holder.user) ?? 0) + 1);
  }
  const held = [...counts]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([user, n]) => `${user} ×${n}`)
    .join(', ');
  const size = gpu.memory_total ? ` · ${formatBytes(gpu.memory_total)}` : '';
  return `GPU ${gpu.index} · ${gpu.name}${size} — ${held || 'free'}`;
}

/** The idle-GPU warning: "Idle with its GPUs: shut down in 4:05 unless you run a cell". */
export function reclaimWarning(seconds: number): string {
  const left = Math.max(0, Math.round(seconds));
  const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
  return `Idle with its GPUs: shut down in ${clock} to free them, unless you run a cell`;
}

export function probeSummary(probe: Record<string, string> | null): string {
  if (!probe) {
    return 'not probed (kernelspec not made by `jupyter mlcontainer add`)';
  }
  const parts = [`Python ${probe.python_version}`];
  for (const [key, label] of PROBE_LABELS) {
    if (probe[key]) {
      parts.push(`${label} ${probe[key]}`);
    }
  }
  if (probe.os) {
    parts.push(probe.os);
  }
  return parts.join(' · ');
}

/** One line for a kernel in the sidebar, from what the kernel list reports. */
export function kernelLine(info: IKernelContainer): string {
  const status = info.status || info.state || '–';
  const parts = [status];
  // A swarm task's status may name its node already ("running on sw-gpu").
  if (info.node && !status.includes(info.node)) {
    parts.push(nodeSummary(info));
  }
  if (info.mem_limit) {
    parts.push(`memory limit ${info.mem_limit}`);
  }
  parts.push(gpuSummary(info));
  return parts.join(' · ');
}

/** The rows of the kernel details dialog. */
export function detailRows(info: IKernelContainer): [string, string][] {
  const details = info.image_details;
  const image =
    info.source && info.source !== info.image
      ? `${info.source} → ${info.image}`
      : info.image;
  const resources = info.resources;
  const rows: [string, string][] = [
    ['Image', image],
    [
      'Digest',
      details
        ? (details.digest ?? 'none (built or loaded on this engine)')
        : '–'
    ],
    ['Image ID', details?.image_id ?? '–'],
    ['Inside', probeSummary(info.probe)],
    ['Container', `${info.container_name ?? '–'} (${info.state ?? '–'})`],
    ...(info.node ? [['Node', info.node] as [string, string]] : []),
    [
      'GPUs',
      `${info.gpus_granted ?? '–'} (requested: ${String(info.gpus_requested)})`
    ],
    [
      'Memory',
      `${formatBytes(resources?.memory_bytes)} of ${formatBytes(resources?.memory_limit_bytes)}`
    ],
    ['CPU', formatPercent(resources?.cpu_percent)]
  ];
  if (info.version !== undefined && info.version !== null) {
    rows.push(['Version', `${info.version}`]);
  }
  if (info.drift_message) {
    rows.push(['Drift', info.drift_message]);
  }
  if (info.last_exit) {
    rows.push(['Last death', info.last_exit.reason]);
  }
  return rows;
}

/** What the sidebar says about a kernelspec's image. */
export function imageLine(entry: {
  image: string;
  source: string | null;
  present: boolean;
  pullable: boolean;
  size: number | null;
}): string {
  const where = entry.present
    ? formatBytes(entry.size)
    : entry.pullable
      ? 'not on the engine'
      : 'not on the engine, and not in a registry';
  const origin = entry.present && !entry.pullable ? ' · built locally' : '';
  return `${imageName(entry.source ?? entry.image)} · ${where}${origin}`;
}

/** What the sidebar knows of a Jupyter session (a notebook or console using a kernel). */
export interface ISessionRef {
  path: string;
  name: string;
  type: string;
  kernelId: string | null;
}

/**
 * How a kernel is named in the sidebar, as JupyterLab's Running panel does: by the
 * notebooks (or consoles) that use it, with their paths as the tooltip; a kernel no session
 * uses is named by its kernelspec.
 */
export function kernelLabel(
  kernel: Pick<IKernelContainer, 'kernel_id' | 'display_name' | 'kernel_name'>,
  sessions: ISessionRef[]
): { label: string; title: string } {
  const own = sessions.filter(s => s.kernelId === kernel.kernel_id);
  if (!own.length) {
    const spec =
      kernel.display_name || kernel.kernel_name || 'Container kernel';
    return {
      label: spec,
      title: `${spec}: no notebook uses this kernel (kernel ${kernel.kernel_id})`
    };
  }
  const names = own.map(s =>
    s.type === 'notebook' || !s.name ? basename(s.path) : s.name
  );
  return {
    label: names.join(', '),
    title: own.map(s => s.path).join('\n')
  };
}

function basename(path: string): string {
  return path.split('/').pop() || path;
}

/** The second line of a kernel card: its image, and what the engine says of it. */
export function kernelDetail(info: IKernelContainer): string {
  return `${kernelImageName(info)} · ${kernelLine(info)}`;
}

/** Whether a `gpus` setting as typed asks for GPUs (empty: the image's default, or auto). */
export function asksForGpus(gpus: string): boolean {
  const text = gpus
    .trim()
    .replace(/^["']|["']$/g, '')
    .toLowerCase();
  if (['', 'auto', 'none', 'false'].includes(text)) {
    return false;
  }
  return /^\d+$/.test(text) ? Number(text) > 0 : true;
}

/**
 * The new-kernel dialog's warning, before it is submitted, when the kernel would ask an
 * engine without GPU support for GPUs (what `jupyter mlcontainer add` warns about); '' else.
 */
export function gpuWarning(
  gpus: string,
  engine: {
    reachable: boolean;
    gpus?: { available: boolean; description: string };
  } | null
): string {
  if (
    !engine?.reachable ||
    !engine.gpus ||
    engine.gpus.available ||
    !asksForGpus(gpus)
  ) {
    return '';
  }
  return (
    `This engine has ${engine.gpus.description}: a kernel that asks for GPUs will not ` +
    "start here. Install the NVIDIA Container Toolkit on the engine's host, or set GPUs " +
    'to `auto` (GPUs when there are any) or `none`.'
  );
}

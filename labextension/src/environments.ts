/**
 * A kernel's environment versions (issue 20), the pure part: the extend request's body from
 * the dialog's text, how a version reads, and whether a notebook's recorded environment
 * differs from its kernel's current version.
 */

/** One version of a kernelspec's environment (the server's `Version.to_json()`). */
export interface IVersion {
  number: number;
  image: string;
  image_id?: string;
  created?: string;
  author?: string;
  /** What it added over its parent: `name==version`. */
  added?: string[];
  apt?: string[];
  parent?: number;
}

export interface IVersions {
  name: string;
  current: number;
  versions: IVersion[];
}

/** An extend's state, as `GET …/extend` answers and as its events (`extend/v1`) carry it. */
export interface IExtendState {
  id: string;
  kernel_name: string;
  status: 'running' | 'done' | 'error';
  /** Events: this event's progress line ("" for the end). */
  line?: string;
  /** The state: every line so far. */
  lines?: string[];
  message: string;
  version: IVersion | null;
  packages: string[];
}

/** What `jupyter_mlcontainer.environment` in a saved notebook's metadata holds. */
export interface IRecordedEnvironment {
  image?: string;
  image_id?: string;
  digest?: string | null;
  kernel_name?: string | null;
  version?: number | null;
}

export const EXTEND_SCHEMA = 'https://events.jupyter-mlcontainer.org/extend/v1';

/** Non-empty, trimmed lines of a text; `#` comments dropped. */
function lines(text: string): string[] {
  return text
    .split('\n')
    .map(line => line.replace(/(^|\s)#.*$/, '').trim())
    .filter(line => line.length > 0);
}

/** The extend request from the dialog: requirement lines, apt packages (spaces or lines). */
export function extendBody(
  pipText: string,
  aptText: string
): { pip: string[]; apt: string[] } {
  return {
    pip: lines(pipText),
    apt: aptText.split(/[\s,]+/).filter(name => name.length > 0)
  };
}

/** `+ tqdm==4.66.5, apt: graphviz`, or what the first version is (as `Version.summary`). */
export function versionSummary(version: IVersion): string {
  const parts = [...(version.added ?? [])];
  if (version.apt && version.apt.length > 0) {
    parts.push(`apt: ${version.apt.join(' ')}`);
  }
  if (parts.length === 0) {
    return version.parent === undefined || version.parent === null
      ? 'as added'
      : '(nothing added)';
  }
  return `+ ${parts.join(', ')}`;
}

/** `2026-12-02 23:08` of an ISO time ("" for none). */
export function shortDate(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').slice(0, 16) : '';
}

/** One line of the versions list. */
export function versionLine(version: IVersion, current: number): string {
  const parts = [
    `${version.number === current ? '● ' : ''}v${version.number}`,
    shortDate(version.created),
    version.author ?? '',
    versionSummary(version)
  ];
  return parts.filter(part => part.length > 0).join(' · ');
}

/** The version a recorded environment names: its number, else the one of its image. */
export function recordedVersion(
  record: IRecordedEnvironment,
  versions: IVersion[]
): IVersion | null {
  if (typeof record.version === 'number') {
    return versions.find(v => v.number === record.version) ?? null;
  }
  const images = [record.image, record.image_id].filter(Boolean);
  return (
    versions.find(
      v => images.includes(v.image) || images.includes(v.image_id)
    ) ?? null
  );
}

/** What a notebook's notice says, when its record differs from its kernel's current version. */
export interface IDiffers {
  kernelName: string;
  recorded: IVersion | null;
  current: number;
  /** The image "Run as recorded" asks for. */
  image: string;
  text: string;
}

/**
 * Whether the notebook was last run with another version than its kernel's current one: null
 * when it was the same, or when nothing (or another kernel) was recorded.
 */
export function recordedDiffers(
  record: IRecordedEnvironment | undefined,
  kernelName: string,
  versions: IVersions
): IDiffers | null {
  if (!record || (record.kernel_name && record.kernel_name !== kernelName)) {
    return null;
  }
  const image = record.image || record.image_id || '';
  if (!image) {
    return null;
  }
  const recorded = recordedVersion(record, versions.versions);
  if (recorded?.number === versions.current) {
    return null;
  }
  const current = versions.versions.find(v => v.number === versions.current);
  if (
    !recorded &&
    current &&
    [current.image, current.image_id].includes(image)
  ) {
    return null;
  }
  const was = recorded
    ? `version ${recorded.number} of ${kernelName}`
    : `${image}, not a version of ${kernelName}`;
  return {
    kernelName,
    recorded,
    current: versions.current,
    image: recorded?.image ?? image,
    text: `This notebook was last run with ${was}; the kernel is now at version ${versions.current}.`
  };
}

/** The result line of an ended extend. */
export function extendResult(state: IExtendState): string {
  if (state.status === 'error' && state.packages.length > 0) {
    return `Failed (${state.packages.join(', ')}): ${state.message}`;
  }
  return state.message;
}

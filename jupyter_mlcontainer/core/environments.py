"""A kernel's environment over time: its versions, what each added, and what differs.

Pure: kernel.json in, kernel.json out. ``extend`` (kernel/extend.py) makes a new version, an
image derived FROM the current one's pinned digest; ``rollback`` makes an older one current
again; both only rewrite kernel.json here. The history lives in kernel.json's metadata, so
``export`` carries it and a teammate who installs the kernelspec can roll back too.

In kernel.json: ``metadata.jupyter_mlcontainer.history`` is a list of versions (oldest first)
and ``metadata.jupyter_mlcontainer.version`` the number of the current one; the provisioner's
``image`` is always the current version's pinned reference. A kernelspec made before
versions existed has one version: its image as ``add`` pinned it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import kernelspec as ks
from .labels import PREFIX

#: Labels of an image that ``extend`` derived (besides its parent's own labels).
PARENT = f"{PREFIX}.parent"
PARENT_ID = f"{PREFIX}.parent-id"
LOCK = f"{PREFIX}.lock"
APT = f"{PREFIX}.apt"
EXTENDED_AT = f"{PREFIX}.extended-at"
EXTENDED_BY = f"{PREFIX}.extended-by"
#: What identifies an extend: the parent image and exactly what was installed (see
#: :func:`extend_key`). An identical request finds the image by it and builds nothing.
EXTEND_KEY = f"{PREFIX}.extend-key"

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


@dataclass(frozen=True)
class Version:
    """One version of a kernel's environment."""

    number: int
    #: The pinned reference kernels start (``repo@sha256:…`` or a local image id).
    image: str
    image_id: str = ""
    created: str = ""
    author: str = ""
    #: What this version added over its parent: pinned requirements (``name==version``).
    added: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    #: The version it was derived from (its number), and the parent image's reference.
    parent: int | None = None
    parent_image: str = ""
    #: The full lock that was installed (with hashes), as the image's label records it.
    lock: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["added"], data["apt"] = list(self.added), list(self.apt)
        return {key: value for key, value in data.items() if value not in ("", None, [])}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Version:
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        values["added"] = tuple(values.get("added") or ())
        values["apt"] = tuple(values.get("apt") or ())
        return cls(**values)

    def summary(self) -> str:
        """``+ tqdm==4.66.5, apt: graphviz`` or ``as added``."""
        parts = list(self.added) + ([f"apt: {' '.join(self.apt)}"] if self.apt else [])
        if not parts:
            return "as added" if self.parent is None else "(nothing added)"
        return "+ " + ", ".join(parts)


def history(spec_json: Mapping[str, Any]) -> list[Version]:
    """The kernelspec's versions, oldest first (one, when it has no history)."""
    record = ks.recorded(dict(spec_json))
    versions = [Version.from_json(v) for v in record.get("history") or [] if isinstance(v, dict)]
    if versions:
        return versions
    image = str(ks.provisioner_config(dict(spec_json)).get("image") or "")
    return [
        Version(
            number=1,
            image=image,
            image_id=str(record.get("image_id") or ""),
            created=str(record.get("created") or ""),
            author=str(record.get("author") or ""),
        )
    ]


def current(spec_json: Mapping[str, Any]) -> Version:
    """The version kernels of this kernelspec start."""
    versions = history(spec_json)
    number = ks.recorded(dict(spec_json)).get("version")
    return next((v for v in versions if v.number == number), versions[-1])


def version_of(spec_json: Mapping[str, Any], number: int) -> Version:
    for version in history(spec_json):
        if version.number == number:
            return version
    known = ", ".join(str(v.number) for v in history(spec_json))
    msg = f"This kernel has no version {number} (it has {known})."
    raise LookupError(msg)


def version_by_image(
    spec_json: Mapping[str, Any], image: str, image_id: str = ""
) -> Version | None:
    """The version whose image is ``image`` (a reference or an id), if any."""
    for version in reversed(history(spec_json)):
        if image in (version.image, version.image_id) or (
            image_id and image_id == version.image_id
        ):
            return version
    return None


def _with_history(
    spec_json: Mapping[str, Any], versions: Sequence[Version], current_number: int
) -> dict[str, Any]:
    spec = copy.deepcopy(dict(spec_json))
    chosen = next(v for v in versions if v.number == current_number)
    metadata = spec.setdefault("metadata", {})
    provisioner = metadata.setdefault("kernel_provisioner", {})
    provisioner.setdefault("config", {})["image"] = chosen.image
    record = metadata.setdefault(ks.METADATA_KEY, {})
    record["history"] = [v.to_json() for v in versions]
    record["version"] = current_number
    if chosen.image_id:
        record["image_id"] = chosen.image_id
    return spec


def with_first_version(spec_json: Mapping[str, Any], created: str, author: str) -> dict[str, Any]:
    """kernel.json as ``add`` writes it: version 1 recorded (when, by whom)."""
    first = history(spec_json)[0]
    first = Version(**{**asdict(first), "number": 1, "created": created, "author": author})
    return _with_history(spec_json, [first], 1)


def with_added_version(spec_json: Mapping[str, Any], version: Version) -> dict[str, Any]:
    """kernel.json with ``version`` appended to its history and made current. An image that
    is already a version (an identical extend) becomes current again instead."""
    versions = history(spec_json)
    same = version_by_image(spec_json, version.image, version.image_id)
    if same is not None:
        return _with_history(spec_json, versions, same.number)
    version = Version(**{**asdict(version), "number": versions[-1].number + 1})
    return _with_history(spec_json, [*versions, version], version.number)


def with_current(spec_json: Mapping[str, Any], number: int) -> dict[str, Any]:
    """kernel.json with version ``number`` current (a rollback; the history stays)."""
    version_of(spec_json, number)
    return _with_history(spec_json, history(spec_json), number)


def rollback_target(spec_json: Mapping[str, Any], number: int | None) -> Version:
    """The version ``rollback`` goes to: ``number``, else the current one's parent (else the
    one before it)."""
    if number is not None:
        return version_of(spec_json, number)
    now = current(spec_json)
    if now.parent is not None:
        return version_of(spec_json, now.parent)
    earlier = [v for v in history(spec_json) if v.number < now.number]
    if not earlier:
        msg = f"Version {now.number} is this kernel's first: there is nothing to roll back to."
        raise LookupError(msg)
    return earlier[-1]


# --- requirements and locks ----------------------------------------------------------


def requirement_name(line: str) -> str | None:
    """The project name a requirement line names (None for comments, options, blanks)."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    match = _REQUIREMENT_NAME.match(text)
    return normalize(match.group(1)) if match else None


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: str) -> dict[str, str]:
    """``{name: version}`` of a lock (``uv pip compile`` output: ``name==version \\`` lines)."""
    pins: dict[str, str] = {}
    for line in lock.splitlines():
        match = _LOCK_PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def lock_without(lock: str, names: Iterable[str]) -> str:
    """The lock without the entries of ``names`` (with their hash lines and comments)."""
    drop = {normalize(n) for n in names}
    kept: list[str] = []
    skipping = False
    for line in lock.splitlines():
        stripped = line.strip()
        match = _LOCK_PIN.match(stripped)
        if match:
            skipping = normalize(match.group(1)) in drop
        elif stripped and not line.startswith((" ", "\t")):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def extend_key(parent_image_id: str, lock: str, apt: Sequence[str]) -> str:
    """What makes two extends the same: the parent image, the lock's pins and hashes, the apt
    packages (order and comments do not count)."""
    lines = sorted(
        line.strip()
        for line in lock.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    text = json.dumps([parent_image_id, lines, sorted(apt)])
    return hashlib.sha256(text.encode()).hexdigest()


# --- what differs --------------------------------------------------------------------


@dataclass(frozen=True)
class PackageDiff:
    """How two package lists differ."""

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    #: name: (old, new)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def between(cls, old: Mapping[str, str], new: Mapping[str, str]) -> PackageDiff:
        a = {normalize(k): v for k, v in old.items()}
        b = {normalize(k): v for k, v in new.items()}
        return cls(
            added={k: b[k] for k in sorted(b.keys() - a.keys())},
            removed={k: a[k] for k in sorted(a.keys() - b.keys())},
            changed={k: (a[k], b[k]) for k in sorted(a.keys() & b.keys()) if a[k] != b[k]},
        )

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        return (
            [f"+ {name}=={version}" for name, version in self.added.items()]
            + [f"- {name}=={version}" for name, version in self.removed.items()]
            + [f"~ {name} {old} → {new}" for name, (old, new) in self.changed.items()]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "added": dict(self.added),
            "removed": dict(self.removed),
            "changed": {k: list(v) for k, v in self.changed.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PackageDiff:
        data = data or {}
        return cls(
            added=dict(data.get("added") or {}),
            removed=dict(data.get("removed") or {}),
            changed={k: (str(v[0]), str(v[1])) for k, v in (data.get("changed") or {}).items()},
        )


_DIST_INFO = re.compile(r"/(?:site|dist)-packages/([^/]+)-([^/-]+)\.dist-info$")
#: docker diff's kinds (GET /containers/{id}/changes)
_ADDED, _DELETED = 1, 2


def drift(changes: Iterable[Mapping[str, Any]]) -> PackageDiff:
    """Packages a running container has that its image had not, from the container's file
    changes (``docker diff``): a ``*.dist-info`` folder added to a ``site-packages`` is an
    installed package, one deleted an uninstalled one (an upgrade is both)."""
    added: dict[str, str] = {}
    removed: dict[str, str] = {}
    for change in changes:
        match = _DIST_INFO.search(str(change.get("Path") or ""))
        if not match:
            continue
        name, version = normalize(match.group(1)), match.group(2)
        if change.get("Kind") == _ADDED:
            added[name] = version
        elif change.get("Kind") == _DELETED:
            removed[name] = version
    return PackageDiff.between(removed, added) if removed else PackageDiff(added=added)


def describe_drift(diff: PackageDiff, kernel_name: str = "KERNEL") -> str:
    """One message for a kernel whose packages differ from its image's."""
    listed = ", ".join(diff.lines())
    pins = " ".join(f"--pip {name}=={version}" for name, version in diff.added.items())
    pins = pins or "--pip PACKAGE==VERSION"
    return (
        f"Installed in this kernel's container, not in its image: {listed}. A new kernel will "
        f"not have them; make them part of the environment with "
        f"`jupyter mlcontainer extend {kernel_name} {pins}`."
    )

"""A kernelspec's versions on disk: find it, rewrite its kernel.json, roll back, compare.

The history itself is pure (core/environments.py); this module reads and writes installed
kernelspecs and asks the backend about the versions' images.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.backend import Backend
from ..core.exceptions import ConfigurationError

log = logging.getLogger(__name__)


def find_kernelspec(name: str) -> ks.InstalledSpec:
    """The installed container kernelspec ``name`` (ConfigurationError: none)."""
    for spec in ks.installed_specs():
        if spec.name == name and spec.is_container:
            return spec
    msg = f"No container kernelspec named {name!r} (see `jupyter mlcontainer list`)."
    raise ConfigurationError(msg)


def write_spec(spec: ks.InstalledSpec, new: dict[str, Any]) -> None:
    """Replace ``spec``'s kernel.json with ``new``, atomically (never half a file)."""
    target = spec.path / "kernel.json"
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=spec.path, prefix=".kernel.json.")
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(new, indent=2) + "\n")
        os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except OSError as e:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        msg = (
            f"Could not write {target}: {e.strerror or e}. A kernelspec installed system-wide "
            "needs its owner (or root) to change it; nothing was changed."
        )
        raise ConfigurationError(msg) from None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jupyter-mlcontainer" / "packages"


async def packages_of(backend: Backend, ref: str, image_id: str = "") -> dict[str, str]:
    """The image's Python packages; kept per image id (content-addressed: never stale)."""
    cached = _cache_dir() / f"{image_id.replace(':', '-')}.json" if image_id else None
    if cached is not None:
        try:
            return dict(json.loads(cached.read_text()))
        except (OSError, ValueError):
            pass
    found = await backend.image_packages(ref)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(found))
        except OSError:
            pass  # only a cache
    return found


async def rollback(spec: ks.InstalledSpec, number: int | None, backend: Backend) -> envs.Version:
    """Make version ``number`` (default: the current one's parent) current again. Its image
    must be on the engine, or pullable by its digest."""
    try:
        target = envs.rollback_target(spec.spec, number)
    except LookupError as e:
        raise ConfigurationError(str(e)) from None
    if "@sha256:" not in target.image and await backend.image(target.image) is None:
        msg = (
            f"Version {target.number}'s image {target.image} is no longer on the engine "
            f"({backend.address or 'default'}) and no registry has it: it cannot be run again."
        )
        raise ConfigurationError(msg)
    write_spec(spec, envs.with_current(spec.spec, target.number))
    return target


async def package_diff(
    spec: ks.InstalledSpec, old: int | None, new: int | None, backend: Backend
) -> tuple[envs.Version, envs.Version, envs.PackageDiff]:
    """How version ``old``'s packages differ from ``new``'s (defaults: the current version
    against its parent), from the images' own package lists."""
    try:
        after = envs.version_of(spec.spec, new) if new else envs.current(spec.spec)
        before = envs.version_of(spec.spec, old) if old else envs.rollback_target(spec.spec, None)
        if old is None and new is None and after.parent is not None:
            before = envs.version_of(spec.spec, after.parent)
    except LookupError as e:
        raise ConfigurationError(str(e)) from None
    lists = []
    for version in (before, after):
        image = await backend.obtain_image(version.image, "missing", log)
        lists.append(await packages_of(backend, version.image, str(image["Id"])))
    return before, after, envs.PackageDiff.between(lists[0], lists[1])

"""Volumes on an engine: the verbs (ensure, create, inspect, list, measure, remove), and the
project's own volumes (users' HOME volumes and injected kernel runtimes): what exists, how
big, and which are no longer needed (for ``doctor`` and ``prune``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
from docker.types import Mount

from ..core import labels
from ..core.backend import ProjectVolume, families
from ..core.exceptions import KernelStartError, NotFound
from . import containers

if TYPE_CHECKING:
    from .engine import Engine


async def ensure(engine: Engine, name: str, volume_labels: dict[str, str]) -> bool:
    """Create named volume ``name`` unless it exists; True when it was made now (it is
    empty). Asked every time: a volume pruned meanwhile is made again, labelled."""

    def made(api: docker.APIClient) -> bool:
        try:
            api.inspect_volume(name)
            return False
        except docker.errors.NotFound:
            api.create_volume(name, labels=volume_labels)  # idempotent if made meanwhile
            return True

    return await engine.call(f"create volume {name!r}", made)


async def create(engine: Engine, name: str, volume_labels: dict[str, str]) -> None:
    await engine.call(
        f"create volume {name!r}", lambda api: api.create_volume(name, labels=volume_labels)
    )


async def list_matching(engine: Engine, filters: dict[str, Any]) -> list[dict[str, Any]]:
    def listed(api: docker.APIClient) -> list[dict[str, Any]]:
        return list(api.volumes(filters=filters).get("Volumes") or [])

    return await engine.call("list volumes", listed)


async def measure(engine: Engine) -> dict[str, int]:
    """Bytes used by each volume (the engine's `system df`; slow on big engines)."""

    def measured(api: docker.APIClient) -> dict[str, int]:
        return {
            v["Name"]: int((v.get("UsageData") or {}).get("Size") or 0)
            for v in api.df().get("Volumes") or []
        }

    return await engine.call("measure volumes", measured)


async def remove(engine: Engine, name: str) -> bool:
    """Remove volume ``name``; False when a container still uses it (409)."""

    def removed(api: docker.APIClient) -> bool:
        try:
            api.remove_volume(name)
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as e:
            if e.status_code == 409:
                return False
            raise
        return True

    return await engine.call(f"remove volume {name!r}", removed)


async def labels_of(engine: Engine, name: str) -> dict[str, str] | None:
    """The volume's labels ({} when it has none), or None when there is no such volume."""

    def inspected(api: docker.APIClient) -> dict[str, str] | None:
        try:
            return dict(api.inspect_volume(name).get("Labels") or {})
        except docker.errors.NotFound:
            return None

    return await engine.call(f"inspect volume {name!r}", inspected)


async def project_volumes(engine: Engine, sizes: bool = False) -> list[ProjectVolume]:
    """Every volume of this project on ``engine``, with sizes when asked (slower)."""
    found = await list_matching(engine, {"label": [f"{labels.MANAGED}=true"]})
    measured = await measure(engine) if sizes else {}
    out = []
    for volume in found:
        own = volume.get("Labels") or {}
        if own.get(labels.PURPOSE) == labels.PURPOSE_HOME:
            kind = "home"
        elif own.get(labels.RUNTIME):
            kind = "runtime"
        else:
            continue
        out.append(
            ProjectVolume(
                name=volume["Name"],
                kind=kind,
                uid=own.get(labels.HOME_UID, ""),
                image=own.get(labels.HOME_IMAGE, ""),
                version=own.get(labels.VERSION, ""),
                size=measured.get(volume["Name"]) if sizes else None,
            )
        )
    return sorted(out, key=lambda v: (v.kind, v.name))


async def prune(
    engine: Engine, needed_images: Iterable[str], everything: bool = False, dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """Remove the volumes no kernelspec needs (``everything``: all of them) that no container
    uses. Returns (removed, kept because in use)."""
    wanted = families(needed_images)
    removed, in_use = [], []
    for volume in await project_volumes(engine):
        if not everything and volume.needed(wanted):
            continue
        if dry_run or await remove(engine, volume.name):
            removed.append(volume.name)
        else:
            in_use.append(volume.name)
    return removed, in_use


#: Gives a HOME volume's files to its user (run as root with CAP_CHOWN only).
_GIVE_HOME = """\
import os, sys
uid, gid = int(sys.argv[1]), int(sys.argv[2])
for folder, subfolders, files in os.walk("/home-volume"):
    for name in [folder] + [os.path.join(folder, n) for n in subfolders + files]:
        os.lchown(name, uid, gid)
"""


async def give_home_to_user(
    engine: Engine, volume: str, uid: int, gid: int, image: str, python: str = "python3"
) -> None:
    """Make HOME volume ``volume`` writable by the kernel's ``uid`` when it is this project's
    HOME volume of that uid (made by an older version, or by hand as root): its files are
    given to the user. Any other volume is refused with what to run instead."""
    own = await labels_of(engine, volume)
    ours = (
        own is not None
        and own.get(labels.MANAGED) == "true"
        and own.get(labels.PURPOSE) == labels.PURPOSE_HOME
        and own.get(labels.HOME_UID) == str(uid)
    )
    if not ours:
        msg = (
            f"The kernel's HOME volume {volume!r} is not writable by uid {uid} and was not made "
            f"by jupyter-mlcontainer for that user, so it is left as it is: remove it "
            f"(`docker volume rm {volume}`; a new one is made at the next start) or give it "
            f"to uid {uid}, or set persistent_home to false for this kernel."
        )
        raise KernelStartError(msg)
    code, output = await containers.run(
        engine,
        image,
        [python, "-c", _GIVE_HOME, str(uid), str(gid)],
        labels={labels.PURPOSE: "home-repair"},
        mounts=[Mount(target="/home-volume", source=volume, type="volume")],
        user="0:0",
        cap_add=["CHOWN"],
    )
    if code != 0:
        msg = (
            f"Could not give the HOME volume {volume!r} to uid {uid} (exit code {code}: "
            f"{output.strip()[-300:]}). Remove it with `docker volume rm {volume}`; a new one "
            "is made at the next start."
        )
        raise KernelStartError(msg)


#: Packages a HOME volume carries: ``pip install --user`` puts them here.
_USER_PACKAGES = "/home-volume/.local/lib/python*/site-packages/*.dist-info"


async def home_packages(engine: Engine, volume: ProjectVolume) -> list[str]:
    """``name==version`` of each package pip installed into a HOME volume's ``~/.local``
    (read by a helper container of the volume's image, read-only, no network); [] when the
    image is not on the engine."""
    if volume.kind != "home" or not volume.image:
        return []
    try:
        code, output = await containers.run(
            engine,
            volume.image,
            ["sh", "-c", f'for d in {_USER_PACKAGES}; do [ -d "$d" ] && echo "$d"; done; true'],
            labels={labels.MANAGED: "true", labels.PURPOSE: "home-packages"},
            mounts=[Mount("/home-volume", volume.name, type="volume", read_only=True)],
            timeout=60,
        )
    except NotFound:
        return []
    found = []
    for line in output.splitlines():
        name = line.rstrip("/").rsplit("/", 1)[-1].removesuffix(".dist-info")
        package, _, version = name.rpartition("-")
        if package and line.startswith("/home-volume/"):
            found.append(f"{package}=={version}")
    return sorted(found) if code == 0 else []

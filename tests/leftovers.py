"""What a test session leaves on the engine besides containers: volumes, networks, images;
and on this machine: files, folders and mounts in the temporary folder.

A snapshot is taken when the session starts; at its end, whatever is new was made by the
session. The product's own caches (the kernels' network, HOME volumes, injected runtimes: all
labelled ``org.jupyter-mlcontainer.managed``) are removed the way ``prune --all`` would, and
reported; anything else new (an unlabelled volume, a test's image or network) is a leftover
that fails the session: each test removes what it makes. So does anything new named
``mlc-…`` in the temporary folder (an engine's folder whose mount kept it, a connection file,
a kernel's ipc folder); the CI's own work folder (``mlc-ci.…``) is not the session's.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from jupyter_mlcontainer.core import labels


@dataclass
class Snapshot:
    volumes: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    #: Names an image had (tags): a test that tags a kept image must drop its tag again.
    tags: set[str] = field(default_factory=set)

    @classmethod
    def take(cls, api: Any) -> Snapshot:
        images = api.images()
        return cls(
            volumes={v["Name"] for v in api.volumes().get("Volumes") or []},
            networks={n["Id"] for n in api.networks()},
            images={i["Id"] for i in images},
            tags={t for i in images for t in i.get("RepoTags") or [] if t != "<none>:<none>"},
        )


def _ours(item: dict[str, Any]) -> bool:
    return (item.get("Labels") or {}).get(labels.MANAGED) == "true"


def settle(api: Any, before: Snapshot, in_use_ok: bool = True) -> tuple[list[str], list[str]]:
    """Remove the product caches the session made; return (removed, leftovers).

    A leftover is anything new that is not a product cache, or a cache still in use by a
    container (only when ``in_use_ok`` is false: a server running beside the tests may use it).
    """
    removed: list[str] = []
    leftovers: list[str] = []
    new_volumes = [
        (f"volume {v['Name']}", v, lambda v=v: api.remove_volume(v["Name"]))
        for v in api.volumes().get("Volumes") or []
        if v["Name"] not in before.volumes
    ]
    new_networks = [
        (f"network {n['Name']} ({n['Id'][:12]})", n, lambda n=n: api.remove_network(n["Id"]))
        for n in api.networks()
        if n["Id"] not in before.networks
    ]
    for what, item, remove in new_volumes + new_networks:
        if not _ours(item):
            leftovers.append(f"{what} (labels {item.get('Labels')})")
            continue
        try:
            remove()
            removed.append(what)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if not in_use_ok:
                leftovers.append(f"{what} ({e.explanation})")
    for image in api.images():
        names = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if image["Id"] not in before.images:
            leftovers.append(f"image {', '.join(names) or image['Id'][:19]}")
        else:
            leftovers.extend(f"image tag {t}" for t in names if t not in before.tags)
    return removed, leftovers


def remove_leftovers(api: Any, before: Snapshot) -> None:
    """Remove the volumes and networks a failed session left, so that the next run starts
    clean anyway. Images are only named: one may be a build running beside the tests."""
    for volume in api.volumes().get("Volumes") or []:
        if volume["Name"] not in before.volumes:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_volume(volume["Name"])
    for network in api.networks():
        if network["Id"] not in before.networks:
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(network["Id"])


def temporary_entries() -> set[Path]:
    """Our names in the temporary folder (``mlc-…``), but the CI's own work folder."""
    tmp = Path(tempfile.gettempdir())
    return {p for p in tmp.glob("mlc-*") if not p.name.startswith("mlc-ci.")}


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, in mount order."""
    prefix = str(root)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def unmount_under(root: Path) -> None:
    """Unmount everything at or below ``root``, deepest last mounted first (an engine's exec
    root keeps its network namespace mounted: ``umount -R`` of a folder that is not itself a
    mount point leaves it, and its folder with it)."""
    for point in reversed(mounts_under(root)):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_entry(path: Path) -> None:
    unmount_under(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

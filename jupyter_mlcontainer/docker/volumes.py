"""The project's volumes on an engine: users' HOME volumes and injected kernel runtimes.

What exists, how big, and which are no longer needed (for ``doctor`` and ``prune``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._version import __version__
from ..core import labels
from ..core.plan import home_volume_name
from .engine import Engine


@dataclass(frozen=True)
class ProjectVolume:
    name: str
    kind: str  # "home" or "runtime"
    #: home: the user's uid and the image the volume was made for; runtime: "".
    uid: str = ""
    image: str = ""
    version: str = ""
    size: int | None = None

    def needed(self, families: set[str]) -> bool:
        """A HOME volume of an image family some kernelspec uses; a runtime of this version."""
        if self.kind == "home":
            return family_of(self.name) in families
        return self.version == __version__


def family_of(volume_name: str) -> str:
    """``pytorch-pytorch`` of ``mlc-home-1000-pytorch-pytorch``."""
    parts = volume_name.split("-", 3)
    return parts[3] if len(parts) == 4 else ""


def families(images: Iterable[str]) -> set[str]:
    """The image families of these references (as their HOME volumes name them)."""
    return {family_of(home_volume_name(0, image)) for image in images if image}


async def project_volumes(engine: Engine, sizes: bool = False) -> list[ProjectVolume]:
    """Every volume of this project on ``engine``, with sizes when asked (slower)."""
    found = await engine.list_volumes({"label": [f"{labels.MANAGED}=true"]})
    measured = await engine.volume_sizes() if sizes else {}
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
        if dry_run or await engine.remove_volume(volume.name):
            removed.append(volume.name)
        else:
            in_use.append(volume.name)
    return removed, in_use

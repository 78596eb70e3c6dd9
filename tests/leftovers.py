"""What a test session leaves on the engine besides containers: volumes, networks, images.

A snapshot is taken when the session starts; at its end, whatever is new was made by the
session. The product's own caches (the kernels' network, HOME volumes, injected runtimes: all
labelled ``org.jupyter-mlcontainer.managed``) are removed the way ``prune --all`` would, and
reported; anything else new (an unlabelled volume, a test's image or network) is a leftover
that fails the session: each test removes what it makes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
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

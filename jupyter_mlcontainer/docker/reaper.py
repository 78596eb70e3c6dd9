"""Remove containers nobody owns any more: their owner's lease expired (see leases.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core import labels
from . import containers, leases

if TYPE_CHECKING:
    from .engine import Engine


async def reap_orphans(engine: Engine, log: logging.Logger) -> list[str]:
    """Containers (kernels, probes, runtime builders) of processes whose lease in our runtime
    dir has expired: they crashed or were killed. Containers of live processes, and of
    processes with another runtime dir (another server, another user), are left alone.
    Returns the names removed.
    """
    found = await containers.list_matching(engine, labels.managed_filter())
    by_instance: dict[str, list[dict[str, Any]]] = {}
    for container in found:
        instance = (container.get("Labels") or {}).get(labels.SERVER_INSTANCE)
        if instance and instance != labels.server_instance_id():
            by_instance.setdefault(instance, []).append(container)
    removed = []
    for instance, theirs in by_instance.items():
        if not leases.expired(instance):
            continue
        for container in theirs:
            await containers.remove(engine, str(container["Id"]))
            names = container.get("Names") or [str(container["Id"])[:12]]
            removed.append(str(names[0]).lstrip("/"))
        leases.release(instance)
    if removed:
        log.info("Removed %d orphaned container(s): %s", len(removed), ", ".join(removed))
    return removed


async def reap_instance(engine: Engine, log: logging.Logger) -> list[str]:
    """This process's own containers (at server shutdown, after kernels stopped)."""
    await engine.drain()
    found = await containers.list_matching(
        engine, labels.managed_filter(**{labels.SERVER_INSTANCE: labels.server_instance_id()})
    )
    for container in found:
        await containers.remove(engine, container["Id"])
    names = [c["Names"][0].lstrip("/") for c in found]
    if names:
        log.info(
            "Removed %d kernel container(s) left at shutdown: %s", len(names), ", ".join(names)
        )
    return names

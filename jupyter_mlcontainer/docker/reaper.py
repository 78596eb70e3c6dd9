"""Remove kernel containers nobody owns any more (labels say whose they are)."""

from __future__ import annotations

import logging
import os
import socket

from ..core import labels
from .engine import Engine


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def reap_orphans(engine: Engine, log: logging.Logger) -> list[str]:
    """Containers of this server's earlier instances (same server id) whose process is gone.

    A container of a live process with the same id (say, nbconvert running beside this
    server) is left alone. Returns the names removed.
    """
    found = await engine.list_containers(
        labels.managed_filter(**{labels.SERVER_ID: labels.server_id()})
    )
    removed = []
    for container in found:
        own = container.get("Labels") or {}
        if own.get(labels.SERVER_INSTANCE) == labels.server_instance_id():
            continue
        if own.get(labels.SERVER_HOST) != socket.gethostname():
            continue
        try:
            pid = int(own.get(labels.SERVER_PID, "0"))
        except ValueError:
            pid = 0
        if pid and _pid_alive(pid):
            continue
        await engine.remove(container["Id"])
        removed.append(container["Names"][0].lstrip("/"))
    if removed:
        log.info("Removed %d orphaned kernel container(s): %s", len(removed), ", ".join(removed))
    return removed


async def reap_instance(engine: Engine, log: logging.Logger) -> list[str]:
    """This process's own kernel containers (at server shutdown, after kernels stopped)."""
    await engine.drain()
    found = await engine.list_containers(
        labels.managed_filter(**{labels.SERVER_INSTANCE: labels.server_instance_id()})
    )
    for container in found:
        await engine.remove(container["Id"])
    names = [c["Names"][0].lstrip("/") for c in found]
    if names:
        log.info(
            "Removed %d kernel container(s) left at shutdown: %s", len(names), ", ".join(names)
        )
    return names

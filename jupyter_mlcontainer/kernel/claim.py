"""Claiming a ready kernel from the server's warm pool (kernel/pool.py keeps the pool).

The pooled kernel's container is handed over whole (one :class:`KernelContainer`); the
kernel process is then moved into the user's directory and environment.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..core.plan import KernelLaunch, pool_key
from . import pool
from .container import KernelContainer
from .exits import discard_container

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


async def claimed_from_pool(p: MLContainerProvisioner, launch: KernelLaunch) -> bool:
    """Take a ready kernel from the server's warm pool when one fits this start."""
    kernel_pool = pool.MLContainerPool.current()
    if kernel_pool is None or p.network == "none" or p.run.has_started:
        return False  # a restart keeps its kernel's connection: never a pooled one
    key = pool_key(launch)
    if p.fills_a_pool:
        p.pool_key = key
        p.container.launch_env = dict(launch.env)
        return False
    entry = await kernel_pool.claim(p, key)
    if entry is None:
        return False
    pooled = entry.provisioner
    # The container is handed over whole; the pooled kernel's manager keeps nothing.
    p.container, pooled.container = pooled.container, KernelContainer()
    p.connection_info = pooled.connection_info.copy()
    p.last_exit = None
    p.run.has_started = True
    p.run.running = True
    pooled.run.running = False
    pool.release(entry.manager)
    launch_env = p.container.launch_env
    changed: dict[str, str | None] = {k: v for k, v in launch.env.items() if launch_env.get(k) != v}
    changed.update({k: None for k in launch_env if k not in launch.env})
    try:
        await pool.move_in(dict(p.connection_info), str(p.cwd), changed)
    except BaseException:
        await discard_container(p)
        raise
    # What the kernel now runs with, for a restart in this container (which moves the new
    # kernel process in the same way).
    p.container.moved_in = (str(p.cwd), changed)
    started = p.container.launch
    if started is not None:
        p.container.launch = dataclasses.replace(
            launch,
            connection_info=p.connection_info,
            lease=started.lease,
            address=started.address,
        )
    p.log.info(
        "Kernel %s: claimed ready kernel %s from the warm pool", p.kernel_id, p.container.name
    )
    return True

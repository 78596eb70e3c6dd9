"""A kernel's container coming up and going away: the heartbeat wait of a start, the record of
why a container ended (core/diagnostics.py words it), and removing it."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from ..core.backend import ContainerState
from ..core.diagnostics import ContainerExit
from ..core.exceptions import EngineUnavailableError, KernelStartError
from .readiness import Heartbeat

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


async def wait_until_up(p: MLContainerProvisioner) -> None:
    """Wait for the heartbeat; a container that exits first fails the start."""
    assert p.container.id is not None
    deadline = time.monotonic() + p.ready_timeout
    heartbeat = Heartbeat(p.connection_info)
    try:
        while True:
            if await heartbeat.answered(timeout=0.1):
                return
            state = await p.container_backend.inspect(p.container.id)
            if state is None or not state.running:
                exit_ = await record_exit(p, state)
                msg = f"The kernel did not start. {exit_.message()}"
                raise KernelStartError(msg)
            if time.monotonic() > deadline:
                p.log.warning(
                    "Kernel %s: no heartbeat after %.0f s; its container %s still runs, "
                    "so Jupyter's own timeout decides.",
                    p.kernel_id,
                    p.ready_timeout,
                    p.container.name,
                )
                return
    finally:
        heartbeat.close()


async def record_exit(p: MLContainerProvisioner, state: ContainerState | None) -> ContainerExit:
    """Why the container ended (None: it is gone), with its last log lines."""
    if state is None:
        exit_ = ContainerExit(
            name=p.container.name or "",
            image=p.image,
            exit_code=-1,
            error="the container was removed from outside Jupyter",
            requested=p.run.stopping,
        )
    else:
        try:
            tail = await p.container_backend.logs(state.id, tail=p.log_tail)
        except EngineUnavailableError:  # the backend is going away: the reason matters more
            tail = ""
        stopping = p.run.stopping  # after the logs: a stop may have been asked meanwhile
        exit_ = dataclasses.replace(
            ContainerExit.from_state(state, tail),
            requested=stopping,
            engine_stopped_at="" if stopping else await p.container_backend.stopped_at(state),
        )
    p.last_exit = exit_
    p.run.exit_code = exit_.exit_code
    p.run.running = False
    return exit_


def record_requested_exit(p: MLContainerProvisioner, code: int) -> int:
    """The kernel stopped as asked (its supervisor says how): no inspect needed."""
    p.last_exit = ContainerExit(
        name=p.container.name or "", image=p.image, exit_code=code, requested=True
    )
    p.run.exit_code = code
    p.run.running = False
    p.log.debug(
        "Kernel %s: container %s stopped (exit code %s)", p.kernel_id, p.container.name, code
    )
    return code


async def discard_container(p: MLContainerProvisioner) -> None:
    """Remove the container now (idempotent)."""
    p.container.stop_renewal()
    container_id, p.container.id = p.container.id, None
    p.run.running = False
    if container_id is not None:
        await p.container_backend.remove(container_id)

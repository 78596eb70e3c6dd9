"""Restarting a kernel inside its own container (kernel/supervisor.py is the client of the
container's supervisor, agent/bootstrap.py the supervisor itself).

Before a restart stops the kernel, the supervisor is asked to hold the container when the
kernel exits; the restart then starts a fresh kernel process there when nothing that decides
the container changed, else the held container is let go and a new one is started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.exceptions import KernelStartError
from ..core.plan import KernelLaunch, pool_key
from . import pool, reach
from .exits import discard_container, wait_until_up
from .supervisor import Supervisor, SupervisorError

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


async def hold_for_restart(p: MLContainerProvisioner) -> None:
    """Before a restart (or a kill) stops the kernel: ask its container's supervisor to keep
    the container when the kernel exits. Silently not, when that cannot work (the next start
    is a cold one)."""
    launch = p.container.launch
    if (
        p.run.supervisor is not None
        or launch is None
        or not (launch.supervise and launch.lease and p.restart_in_container)
        or p.container.id is None
        or p.run.exit_code is not None
    ):
        return
    key = p.connection_info.get("key") or b""
    try:
        supervisor = await Supervisor.connect(
            reach.lease_target(p.container, launch),
            key if isinstance(key, bytes) else key.encode(),
        )
    except SupervisorError as e:
        p.log.debug("Kernel %s: restarting in a new container: %s", p.kernel_id, e)
        return
    try:
        await supervisor.hold()
    except OSError as e:
        supervisor.close()
        p.log.debug("Kernel %s: restarting in a new container: %s", p.kernel_id, e)
        return
    p.run.supervisor = supervisor


async def signal_through_supervisor(p: MLContainerProvisioner, name: str) -> None:
    """A signal for a backend that cannot signal a container (``Capabilities.signals`` is
    False: Swarm): SIGINT, SIGTERM and SIGKILL go to the kernel through its container's
    supervisor; without one, a stop removes the container, and an interrupt is impossible
    (the kernelspec's ``interrupt_mode: "message"`` is the way then)."""
    commands = {"SIGINT": "interrupt", "SIGTERM": "terminate", "SIGKILL": "kill"}
    launch = p.container.launch
    container_id = p.container.id
    if name not in commands or container_id is None:
        p.log.debug("Kernel %s: %s is not sent on this backend", p.kernel_id, name)
        return
    supervisor = p.run.supervisor
    opened = None
    if (supervisor is None or supervisor.lost) and launch is not None and launch.supervise:
        key = p.connection_info.get("key") or b""
        try:
            opened = supervisor = await Supervisor.connect(
                reach.lease_target(p.container, launch),
                key if isinstance(key, bytes) else key.encode(),
            )
        except SupervisorError as e:
            p.log.debug("Kernel %s: %s", p.kernel_id, e)
            supervisor = None
    try:
        if supervisor is not None and not supervisor.lost:
            if name == "SIGINT":
                await supervisor.interrupt()
            else:
                await supervisor.signal(kill=name == "SIGKILL")
            return
    except OSError as e:
        p.log.debug("Kernel %s: the supervisor went away: %s", p.kernel_id, e)
    finally:
        if opened is not None:
            opened.close()
    if name == "SIGINT":
        p.log.warning(
            "Kernel %s cannot be interrupted: its backend has no signals and its container no "
            "supervisor (set restart_in_container, or the kernelspec's interrupt_mode to "
            '"message")',
            p.kernel_id,
        )
        return
    await p.container_backend.remove(container_id)  # a stop: the container goes with it


def _same_container(p: MLContainerProvisioner, launch: KernelLaunch) -> bool:
    old = p.container.launch
    return (
        old is not None
        and p.container.id is not None
        and pool_key(old) == pool_key(launch)
        and (old.cwd, dict(old.env)) == (launch.cwd, dict(launch.env))
        and reach.same_connection(old.connection_info, launch.connection_info)
    )


async def restarted_in_place(p: MLContainerProvisioner, launch: KernelLaunch) -> bool:
    """Start the restarted kernel in its held container when nothing that decides the
    container changed; else let the held container go."""
    supervisor, p.run.supervisor = p.run.supervisor, None
    if supervisor is None:
        return False
    try:
        same = _same_container(p, launch)
        if same:
            await supervisor.start()
    except SupervisorError as e:
        p.log.warning("Kernel %s: %s; starting a new container", p.kernel_id, e)
        same = False
    finally:
        supervisor.close()
    if not same:
        await discard_container(p)
        return False
    if p.run.previous_ip:
        reach.reach_at(p, p.run.previous_ip)
    p.run.running = True
    try:
        await wait_until_up(p)
    except KernelStartError as e:  # e.g. a process the old kernel left holds a port
        p.log.warning(
            "Kernel %s: the restart in its container failed (%s); starting a new container",
            p.kernel_id,
            str(e).splitlines()[0],
        )
        p.last_exit = None
        p.run.exit_code = None
        await discard_container(p)
        return False
    if p.container.moved_in is not None:  # a pooled container: its kernel moves in again
        await pool.move_in(dict(p.connection_info), *p.container.moved_in)
    p.log.info("Kernel %s: restarted in its container %s", p.kernel_id, p.container.name)
    return True

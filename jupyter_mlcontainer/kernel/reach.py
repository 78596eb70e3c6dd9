"""Reaching the kernel: whether its traffic is encrypted, where its ports are, and where its
lease watchdog (and supervisor) listens.

Bridge mode publishes the kernel's ports on 127.0.0.1 (or on a remote backend's host, then
CurveZMQ-encrypted), or reaches the container at its own address on the kernels' network
(``bridge_access``); ``network: none`` uses ipc sockets in a directory the container mounts.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any

from jupyter_client.connect import KernelConnectionInfo, LocalPortCache

from ..core.exceptions import ConfigurationError
from ..core.plan import PORT_NAMES, KernelLaunch, mapped_prefix, mounted_dir
from .container import KernelContainer
from .renewal import LeaseRenewal

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


def choose_encryption(p: MLContainerProvisioner, kwargs: dict[str, Any]) -> None:
    """Set ``transport_encryption`` in jupyter_client's launch arguments (before its
    ``pre_launch`` makes the connection file and the CurveZMQ keys)."""
    backend = p.container_backend
    km = p.parent
    if backend.remote:
        p.policy.check_remote(backend.address, backend.encrypted, p.remote_encryption)
        if p.remote_encryption == "curve":
            # CurveZMQ keys made per kernel by jupyter_client, kept across restarts.
            kwargs["transport_encryption"] = "required"
    elif (
        p.network != "none"
        and "transport_encryption" not in kwargs
        and getattr(km, "transport_encryption", "disabled") == "disabled"
    ):
        # What the server's KernelManager asks for wins; its default ("disabled") gives way to
        # ours. "auto": jupyter_client encrypts when the kernelspec declares it.
        kwargs["transport_encryption"] = {"auto": "auto", "curve": "required"}.get(
            p.local_encryption, "disabled"
        )


def use_ipc_sockets(p: MLContainerProvisioner) -> None:
    """network "none": ZMQ over ipc sockets in a directory that the container mounts."""
    km = p.parent
    if p.network != "none" or km is None:
        return
    if p.run.ipc_dir is None:
        p.run.ipc_dir = tempfile.mkdtemp(prefix="mlc-")
    km.transport = "ipc"
    km.cache_ports = False
    km.ip = os.path.join(p.run.ipc_dir, "k")


def remote_kernel_host(p: MLContainerProvisioner, server_root: str) -> str:
    """On a remote backend, where this server reaches its kernel ('' for a local one); refuses
    what cannot work across machines, before anything is created there."""
    backend = p.container_backend
    if not backend.remote:
        return ""
    if p.network != "bridge":
        msg = (
            f"network {p.network!r} cannot reach a kernel on the remote engine "
            f"{backend.address}: its ports would not leave that host. Use network 'bridge' "
            "(the default): the kernel's ports are published there, CurveZMQ-encrypted."
        )
        raise ConfigurationError(msg)
    if p.mount_cwd and p.cwd not in ("", "/"):
        mounted = mounted_dir(str(p.cwd), server_root)
        if mapped_prefix(mounted, p.path_map) is None:
            msg = (
                f"The notebook's folder {mounted} is on this machine, and the engine "
                f"{backend.address} runs on another: a bind mount there would show an empty "
                "folder. In the kernelspec's config, set path_map to where that folder is on "
                f'the engine\'s host (e.g. {{"{mounted}": "/srv/notebooks/you"}}, a shared or '
                "synced folder), or set mount_cwd to false to work in the kernel's persistent "
                "HOME volume on that host."
            )
            raise ConfigurationError(msg)
    return p.kernel_address or backend.kernel_host()


async def publishes_ports(p: MLContainerProvisioner) -> bool:
    """Bridge mode: whether the kernel's ports are published (on 127.0.0.1, or on a remote
    backend's host), or reached at the container's own address (``bridge_access``), which needs
    a network whose subnet is fixed (so that a kernel keeps its address across restarts)."""
    network = p.run.network
    if p.run.kernel_host:
        return True
    if p.network != "bridge" or p.bridge_access == "ports" or network is None or not network.subnet:
        return bool(p.network == "bridge")
    if p.bridge_access == "address":
        return False
    return not await p.container_backend.routable(network.id)


def lease_address(p: MLContainerProvisioner) -> str | None:
    """Where the kernel's lease watchdog listens, as the container sees it (the port is kept
    across restarts, like the kernel's own)."""
    if p.lease_timeout <= 0:
        return None
    if p.run.ipc_dir is not None:
        return f"unix:{os.path.join(p.run.ipc_dir, 'lease')}"
    if p.container.lease_port is None:
        p.container.lease_port = LocalPortCache.instance().find_available_port("127.0.0.1")
    bind = "0.0.0.0" if p.network == "bridge" else "127.0.0.1"  # noqa: S104 (its own netns)
    return f"tcp:{bind}:{p.container.lease_port}"


def lease_target(container: KernelContainer, launch: KernelLaunch) -> tuple[str, int] | str:
    """Where this process reaches the kernel's lease watchdog (and supervisor)."""
    # On a remote engine, its port is published beside the kernel's; the connection proves
    # the kernel's key (HMAC) and carries only restart and stop commands.
    kind, _, where = str(launch.lease).partition(":")
    host = container.ip or "127.0.0.1"
    return where if kind == "unix" else (host, int(where.rsplit(":", 1)[1]))


def renew_lease(p: MLContainerProvisioner, launch: KernelLaunch) -> None:
    if launch.lease:
        target = lease_target(p.container, launch)
        p.container.renewal = LeaseRenewal(target, p.lease_timeout, str(p.kernel_id))


def reach_at(p: MLContainerProvisioner, address: str) -> None:
    """Connect to the kernel at ``address``: its container's own on the kernels' network, or
    a remote backend's host."""
    p.container.ip = address
    p.connection_info = {**p.connection_info, "ip": address}


def reach_started(p: MLContainerProvisioner, launch: KernelLaunch) -> None:
    """After a start: where the kernel is reached, when not at this host's published ports."""
    if not launch.publish_ports and launch.network == "bridge":
        assert launch.address  # an address mode launch always names it
        reach_at(p, launch.address)
    elif p.run.kernel_host:
        backend = p.container_backend
        if backend.capabilities.scheduled and p.container.id and not p.kernel_address:
            # The scheduler chose the node: its ports are published there.
            p.run.kernel_host = backend.kernel_host(p.container.id) or p.run.kernel_host
        reach_at(p, p.run.kernel_host)  # its ports, published on a remote host


def fresh_ports(p: MLContainerProvisioner) -> KernelConnectionInfo:
    """New host ports for the kernel (one was taken meanwhile), in its connection file."""
    km = p.parent
    assert km is not None  # jupyter_client's KernelManager owns every provisioner
    cache = LocalPortCache.instance()
    for name in PORT_NAMES:
        setattr(km, name, cache.find_available_port(km.ip))
    km.write_connection_file()
    p.connection_info = km.get_connection_info()
    return p.connection_info


def same_connection(a: Any, b: Any) -> bool:
    """Whether two connection infos name the same ports, transport and key."""
    names = (*PORT_NAMES, "transport", "key", "signature_scheme")
    return all(a.get(name) == b.get(name) for name in names)

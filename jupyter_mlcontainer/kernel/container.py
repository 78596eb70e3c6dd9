"""A kernel's state between jupyter_client's calls: its container, and its provisioner's run.

Two objects, so that what belongs to the container travels together: a warm pool hands a
ready kernel's :class:`KernelContainer` over whole to the start that claims it, and a restart in
place keeps it; :class:`KernelRun` is what the provisioner itself knows about the current start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.backend import KernelNetwork
from ..core.environments import PackageDiff
from ..core.gpus import GPURequest, GPUSupport
from ..core.plan import KernelLaunch
from .renewal import LeaseRenewal
from .supervisor import Supervisor


@dataclass
class KernelContainer:
    """The container behind one kernel (empty until it is created)."""

    id: str | None = None
    name: str | None = None
    #: The container's own address when the server connects to it there ("": ports published).
    ip: str = ""
    #: The address chosen for it on the kernels' network, kept across restarts.
    pinned_ip: str = ""
    #: The host port of its lease watchdog (kept across restarts, like the kernel's own).
    lease_port: int | None = None
    #: This process's renewals of its lease, while it runs.
    renewal: LeaseRenewal | None = None
    #: The GPUs it was given, and what the engine offered when they were resolved.
    granted_gpus: GPURequest | None = None
    #: The granted GPUs are the ledger's choice (confirmed once the container exists).
    ledger_gpus: bool = False
    gpu_support: GPUSupport | None = None
    #: The image it runs (id, digests), learnt after the start, for records.
    image_details: dict[str, Any] | None = None
    #: Packages installed into the running container that its image has not (``%pip
    #: install``), as last looked up (``refresh_drift``); a restart in place keeps them.
    drift: PackageDiff = field(default_factory=PackageDiff)
    #: What it was made from (a restart in place compares the next launch with it).
    launch: KernelLaunch | None = None
    #: A pool's kernel: the environment it was started with (a claim moves it to the user's).
    launch_env: dict[str, str] = field(default_factory=dict)
    #: A claimed pooled kernel: the directory and variables it was moved into.
    moved_in: tuple[str, dict[str, str | None]] | None = None

    def stop_renewal(self) -> None:
        """Stop renewing its lease (it is being stopped anyway); idempotent."""
        if self.renewal is not None:
            self.renewal.stop()
            self.renewal = None


@dataclass
class KernelRun:
    """What a provisioner knows about its kernel's current start (reset by ``pre_launch``)."""

    running: bool = False
    #: A shutdown or restart was asked for: the container's end is expected.
    stopping: bool = False
    exit_code: int | None = None
    #: Containers made by this provisioner (their names count up).
    launches: int = 0
    #: Started once: a later start is a restart, which never claims a pooled kernel.
    has_started: bool = False
    #: The backend could not be asked (warned once until it answers again).
    backend_warned: bool = False
    last_inspect: float = 0.0
    #: The container's supervisor, holding the container for a restart in place.
    supervisor: Supervisor | None = None
    #: The last container's own address (a restart in place keeps it).
    previous_ip: str = ""
    #: network "none": the directory of the kernel's ipc sockets (mounted into the container).
    ipc_dir: str | None = None
    #: Arguments jupyter_client adds to the kernel's command line.
    extra_arguments: tuple[str, ...] = ()
    #: A remote backend's host, where its kernels' published ports are reached ("" local).
    kernel_host: str = ""
    #: The kernels' network this start joins (bridge mode), None otherwise.
    network: KernelNetwork | None = None

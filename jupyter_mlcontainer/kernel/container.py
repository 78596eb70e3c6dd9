"""A running kernel's container, as its provisioner knows it.

One object, so that what belongs to the container travels together: a warm pool hands a ready
kernel's container over whole to the start that claims it, and a restart in place keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.gpus import GPURequest, GPUSupport
from .renewal import LeaseRenewal


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
    gpu_support: GPUSupport | None = None
    #: The image it runs (id, digests), learnt after the start, for records.
    image_details: dict[str, Any] | None = None

    def stop_renewal(self) -> None:
        """Stop renewing its lease (it is being stopped anyway); idempotent."""
        if self.renewal is not None:
            self.renewal.stop()
            self.renewal = None

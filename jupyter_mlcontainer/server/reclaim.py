"""Idle GPU kernels give their GPUs back: a kernel that holds GPUs and has done nothing for
``gpu_idle_timeout`` seconds is shut down, after ``gpu_idle_warning`` seconds in which its
notebook says so (the status bar reads :func:`reclaim_in` through the REST API) and running
anything keeps it. jupyter_server's own culling (``MappingKernelManager.cull_idle_timeout``)
works on as before, for every kernel."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..kernel.provisioner import MLContainerProvisioner


def holds_gpus(provisioner: MLContainerProvisioner) -> bool:
    granted = provisioner.granted_gpus
    return granted is not None and granted.mode != "none"


class GpuReclaimer(LoggingConfigurable):
    """Shuts down GPU kernels that stay idle (configured as ``GpuReclaimer.…``)."""

    gpu_idle_timeout = Float(
        0,
        min=0,
        help="""Seconds a kernel that holds GPUs may stay idle (no code running, no message)
        before it is shut down and its GPUs go back to the ledger. 0: never. On a shared GPU
        server, an hour or two keeps forgotten notebooks from holding GPUs overnight.""",
    ).tag(config=True)

    gpu_idle_warning = Float(
        300,
        min=0,
        help="""Seconds before such a shutdown that the kernel's notebook warns of it (the
        status bar and a notification); running a cell keeps the kernel.""",
    ).tag(config=True)

    def __init__(self, kernel_manager: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.kernel_manager = kernel_manager
        self._task: asyncio.Task[None] | None = None

    def reclaim_in(self, kernel_id: str) -> float | None:
        """Seconds until this kernel is shut down for holding GPUs idle, once it is within
        the warning; else None."""
        if self.gpu_idle_timeout <= 0 or self.kernel_manager is None:
            return None
        try:
            kernel = self.kernel_manager.get_kernel(kernel_id)
        except KeyError:
            return None
        provisioner = kernel.provisioner
        if not isinstance(provisioner, MLContainerProvisioner) or not holds_gpus(provisioner):
            return None
        if getattr(kernel, "execution_state", "") == "busy":
            return None
        last = getattr(kernel, "last_activity", None)
        if last is None:
            return None
        idle = (datetime.datetime.now(datetime.timezone.utc) - last).total_seconds()
        left = self.gpu_idle_timeout - idle
        return max(left, 0.0) if left <= self.gpu_idle_warning else None

    def start(self) -> None:
        if self.gpu_idle_timeout > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def interval(self) -> float:
        """How often kernels are looked at: often enough for the warning to be seen."""
        return max(0.5, min(30.0, self.gpu_idle_timeout / 10, self.gpu_idle_warning / 5 or 30))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for kernel_id in list(self.kernel_manager.list_kernel_ids()):
                if self.reclaim_in(kernel_id) == 0:
                    await self._reclaim(kernel_id)

    async def _reclaim(self, kernel_id: str) -> None:
        provisioner = self.kernel_manager.get_kernel(kernel_id).provisioner
        self.log.warning(
            "Kernel %s held %s idle for %.0f s: shutting it down to free them "
            "(GpuReclaimer.gpu_idle_timeout)",
            kernel_id,
            provisioner.granted_gpus.describe() if provisioner.granted_gpus else "GPUs",
            self.gpu_idle_timeout,
        )
        try:
            await self.kernel_manager.shutdown_kernel(kernel_id)
        except Exception as e:  # one kernel's failure must not stop the watch
            self.log.warning("Kernel %s did not shut down: %s", kernel_id, e)

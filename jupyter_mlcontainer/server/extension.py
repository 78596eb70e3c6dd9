"""The Jupyter Server extension: REST API, pull events, orphan reaping, notebook records."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Unicode

from ..core import backend as backends
from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.exceptions import MLContainerError
from ..kernel.pool import MLContainerPool
from ..kernel.provisioner import MLContainerProvisioner
from .environments import SCHEMA_PATH as EXTEND_SCHEMA_PATH
from .environments import ExtendTracker, environment_handlers
from .forward import forward_handlers, gateway_enabled
from .gateway.kernels import OwnedKernelManager
from .handlers import default_handlers
from .pulls import SCHEMA_PATH, PullTracker
from .reclaim import GpuReclaimer

#: Seconds each step of the extension's stop may take before the server goes on without it
#: (an engine that does not answer must not keep the server from stopping; what a step left
#: is removed by the next one, reap_instance, or by the next server once the lease expired).
STOP_STEP_TIMEOUT = 20.0
#: Seconds the stop waits for engine calls still under way (the interpreter waits for their
#: threads before it exits); those still running then are logged.
SETTLE_TIMEOUT = 5.0


class MLContainerExtension(ExtensionApp):
    """Shows and drives container kernels from JupyterLab."""

    name = "jupyter_mlcontainer"

    docker_host = Unicode(
        None,
        allow_none=True,
        help="""Engine the extension reports on and pulls to (None: DOCKER_HOST, the docker
        context, the default socket). Kernels use MLContainerProvisioner.docker_host.""",
    ).tag(config=True)

    prepull = Bool(
        False,
        help="""At startup, pull the images of installed container kernelspecs that the engine
        lacks, in the background, so that the first start of each kernel is fast.""",
    ).tag(config=True)

    reap_orphans = Bool(
        True,
        help="""At startup, remove the containers (kernels, probes, runtime builders) of
        processes whose lease in this server's runtime dir has expired: a server, nbconvert or
        papermill that crashed or was killed. Containers of live processes and of other runtime
        dirs are never touched. At shutdown, after its kernels shut down, remove any container
        of this instance still there.""",
    ).tag(config=True)

    record_environment = Bool(
        True,
        help="""When a notebook attached to a container kernel is saved, record the kernel's
        image reference, id and digests in its metadata (``jupyter_mlcontainer.environment``).""",
    ).tag(config=True)

    extend_wheelhouse = Unicode(
        "",
        help="""A folder of wheels that extends started from JupyterLab (POST
        /mlcontainer/kernelspecs/NAME/extend) resolve and install from, offline, instead of
        the package index ("": the index). For sites whose kernels may only have vetted
        packages: apt packages are then refused there too.""",
    ).tag(config=True)

    drift_interval = Float(
        10,
        help="""Every this many seconds, look up what was pip-installed into each container
        kernel that its image lacks (its drift), so that notebooks saved meanwhile record it
        (0: never; the kernel details still look it up when asked).""",
    ).tag(config=True)

    classes = [MLContainerPool, GpuReclaimer]

    def initialize_settings(self) -> None:
        backend = backends.connect(self.docker_host or None)
        self.pool = MLContainerPool(
            parent=self,
            kernel_manager=self.serverapp.kernel_manager if self.serverapp else None,
            log=self.log,
        )
        self.pool.install()
        event_logger = getattr(self.serverapp, "event_logger", None)
        if event_logger is not None:
            event_logger.register_event_schema(SCHEMA_PATH)
            event_logger.register_event_schema(EXTEND_SCHEMA_PATH)
        self.pulls = PullTracker(backend, event_logger, self.log)
        self.extends = ExtendTracker(backend, event_logger, self.log)
        self.reclaimer = GpuReclaimer(
            kernel_manager=self.serverapp.kernel_manager if self.serverapp else None,
            parent=self,
            log=self.log,
        )
        self.settings.update(
            {
                "mlcontainer": {
                    "backend": backend,
                    "pulls": self.pulls,
                    "extends": self.extends,
                    "extend_wheelhouse": self.extend_wheelhouse,
                    "pool": self.pool,
                    "reclaimer": self.reclaimer,
                }
            }
        )
        if self.record_environment and self.serverapp is not None:
            self.serverapp.contents_manager.register_pre_save_hook(self._record_environment)
        self._background: list[asyncio.Future[Any]] = []
        self._drift_task: asyncio.Future[None] | None = None

    def initialize_handlers(self) -> None:
        if self.on_a_gateway:  # kernels run on the gateway: so does this API
            self.handlers.extend(forward_handlers)
        else:
            self.handlers.extend(default_handlers + environment_handlers)

    @property
    def on_a_gateway(self) -> bool:
        """This server runs its kernels on a gateway (``--gateway-url``): no engine here."""
        return gateway_enabled(self.serverapp)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if self.on_a_gateway:
            self.log.info("jupyter-mlcontainer: kernels and their containers are the gateway's")
            return
        backend: backends.Backend = self.settings["mlcontainer"]["backend"]
        if self.reap_orphans:
            for each in self._backends(backend):
                self._background.append(
                    asyncio.ensure_future(self._quietly(each.reap_orphans(self.log)))
                )
        self.reclaimer.start()
        if self.drift_interval > 0:
            self._drift_task = asyncio.ensure_future(self._watch_drift())
        if self.prepull:
            self._background.append(asyncio.ensure_future(self._quietly(self._prepull(backend))))
        kernel_manager = getattr(serverapp, "kernel_manager", None)
        if isinstance(kernel_manager, OwnedKernelManager):
            # A gateway's kernels are its users', with their uids: its pools are per user,
            # filled after each user's first start (a prefill would be the gateway's own).
            self.log.info("jupyter-mlcontainer: warm pools per user, after their first start")
        elif self.pool.size > 0 and self.pool.prefill:
            container_specs = [spec.name for spec in ks.installed_specs() if spec.is_container]
            wanted = self.pool.prefill
            self.pool.prefill_now(
                container_specs if "*" in wanted else [n for n in wanted if n in container_specs]
            )

    async def _quietly(self, work: Any) -> None:
        try:
            await work
        except MLContainerError as e:
            self.log.warning("jupyter-mlcontainer: %s", e)

    async def _prepull(self, backend: backends.Backend) -> None:
        for spec in ks.installed_specs():
            if not spec.is_container or not spec.image or spec.image.startswith("sha256:"):
                continue  # an image id cannot be pulled
            if await backend.image(spec.image) is None:
                self.log.info("Pre-pulling %s for kernelspec %s", spec.image, spec.name)
                self.pulls.start(spec.image)

    async def stop_extension(self) -> None:
        """Cancel background work, shut container kernels down gracefully (Jupyter Server
        stops extensions before kernels, so the reaper would otherwise kill them), then remove
        whatever of this instance is still there. Each step is bounded (``STOP_STEP_TIMEOUT``)
        and logged with its duration, so that a stop that waits says on what."""
        started = time.monotonic()
        for task in self._background:
            task.cancel()
        await self._stop_step(
            "background work", asyncio.gather(*self._background, return_exceptions=True)
        )
        if self._drift_task is not None:
            # Bounded apart: an engine call in flight must never hold up the server's stop.
            self._drift_task.cancel()
            await asyncio.wait([self._drift_task], timeout=1)
        await self._stop_step("extends", self.extends.stop())
        await self._stop_step("pulls", self.pulls.stop())
        await self._stop_step("the GPU reclaimer", self.reclaimer.stop())
        await self._stop_step("the warm pools", self.pool.stop())
        await self._stop_step("container kernels", self._shut_down_container_kernels())
        if self.on_a_gateway:
            return
        for backend in self._backends(self.settings["mlcontainer"]["backend"]):
            if self.reap_orphans:
                await self._stop_step(
                    "removing this server's containers",
                    self._quietly(backend.reap_instance(self.log)),
                )
            for what, since in await backend.settle(SETTLE_TIMEOUT):
                self.log.warning(
                    "jupyter-mlcontainer: an engine call still runs at shutdown (for %.0f s): "
                    "%s; the process exits once the engine answers or the call times out",
                    since,
                    what,
                )
        self.log.info("jupyter-mlcontainer: stopped in %.1f s", time.monotonic() - started)

    async def _stop_step(self, what: str, work: Awaitable[Any]) -> None:
        """Await one step of the stop, for at most ``STOP_STEP_TIMEOUT`` seconds."""
        started = time.monotonic()
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=STOP_STEP_TIMEOUT)
        took = time.monotonic() - started
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.log.warning(
                "jupyter-mlcontainer: %s did not stop within %.0f s; going on without it",
                what,
                STOP_STEP_TIMEOUT,
            )
        elif not task.cancelled() and task.exception() is not None:
            self.log.warning("jupyter-mlcontainer: stopping %s failed: %s", what, task.exception())
        else:
            self.log.debug("jupyter-mlcontainer: stopped %s in %.2f s", what, took)

    async def _watch_drift(self) -> None:
        """Keep each container kernel's drift fresh for the (synchronous) save hook."""
        while True:
            await asyncio.sleep(self.drift_interval)
            if self.serverapp is None:
                continue
            kernel_manager = self.serverapp.kernel_manager
            for kernel_id in list(kernel_manager.list_kernel_ids()):
                try:
                    provisioner = kernel_manager.get_kernel(kernel_id).provisioner
                    if isinstance(provisioner, MLContainerProvisioner):
                        await provisioner.refresh_drift()
                except Exception as e:  # the next round tries again
                    self.log.debug("Kernel %s: drift not looked up: %s", kernel_id, e)

    @staticmethod
    def _backends(own: backends.Backend) -> list[backends.Backend]:
        """The server's backend, those that installed kernelspecs name (remote engines too),
        and any other this process has used."""
        found = [own]
        for spec in ks.installed_specs():
            if spec.is_container and (spec.docker_host or spec.backend != "docker"):
                found.append(backends.connect(spec.docker_host or None, spec.backend))
        found.extend(backends.known())
        return list(dict.fromkeys(found))

    async def _shut_down_container_kernels(self) -> None:
        if self.serverapp is None:
            return
        kernel_manager = self.serverapp.kernel_manager
        ours = [
            kernel_id
            for kernel_id in kernel_manager.list_kernel_ids()
            if isinstance(kernel_manager.get_kernel(kernel_id).provisioner, MLContainerProvisioner)
        ]
        if ours:
            self.log.info("Shutting down %d container kernel(s)", len(ours))
        results = await asyncio.gather(
            *(kernel_manager.shutdown_kernel(kernel_id) for kernel_id in ours),
            return_exceptions=True,
        )
        for kernel_id, result in zip(ours, results, strict=True):
            if isinstance(result, Exception):
                self.log.warning("Kernel %s did not shut down cleanly: %s", kernel_id, result)

    def _record_environment(
        self, model: dict[str, Any], path: str, contents_manager: Any, **_: Any
    ) -> None:
        """pre_save_hook: stamp the kernel's image onto notebooks saved while attached to one."""
        if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
            return
        try:
            os_path = contents_manager._get_os_path(path)
        except Exception:  # non-file contents managers
            os_path = None
        candidates = {path, path.lstrip("/"), os_path}
        if self.serverapp is None:
            return
        kernel_manager = self.serverapp.kernel_manager
        for kernel_id in kernel_manager.list_kernel_ids():
            provisioner = kernel_manager.get_kernel(kernel_id).provisioner
            if not isinstance(provisioner, MLContainerProvisioner) or not provisioner.image_details:
                continue
            session = provisioner.session_path
            if session and (session in candidates or os.path.normpath(session) in candidates):
                metadata = model["content"].setdefault("metadata", {})
                record = metadata.setdefault(ks.METADATA_KEY, {})
                record["environment"] = environment_record(provisioner)
                return


def environment_record(provisioner: MLContainerProvisioner) -> dict[str, Any]:
    """What a saved notebook records of its kernel: image, version, and the packages
    installed into its container that the image lacks (as last looked up)."""
    details = provisioner.image_details or {}
    record = {
        **details,
        "kernel_name": getattr(provisioner.parent, "kernel_name", None),
        "version": details.get("version"),
    }
    drift: envs.PackageDiff = provisioner.container.drift
    if drift:
        record["drift"] = drift.to_json()
    return record

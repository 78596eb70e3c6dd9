"""The ``mlcontainer`` kernel provisioner: one kernel, one container.

jupyter_client drives it (see ``jupyter_client/provisioning`` and ``manager.py``):

- ``pre_launch`` runs before every start *and restart*, on the same instance. The host side
  (ports, the connection file, CurveZMQ keys) is :class:`LocalProvisioner`'s, reused as is.
- ``launch_kernel`` makes sure the image is there, creates the container from the pure
  :func:`~jupyter_mlcontainer.core.plan.build_plan`, copies the container's own connection file in
  and starts it, then waits for the kernel's heartbeat so that a kernel dying at start
  fails the start with the container's reason instead of a silent timeout.
- ``poll`` / ``wait`` / ``send_signal`` / ``terminate`` / ``kill`` map onto inspect and kill;
  ``cleanup`` removes the container and may be called more than once.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.multikernelmanager import MultiKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

from ..core import backend as backends
from ..core import environments, kernelspec
from ..core import gpus as gpu
from ..core.diagnostics import ContainerExit
from ..core.exceptions import ConfigurationError, EngineUnavailableError, one_line_errors
from ..core.reference import check_reference
from . import pool, reach
from .answers import answered
from .claim import claimed_from_pool
from .container import KernelContainer, KernelRun
from .exits import discard_container, record_exit, record_requested_exit
from .inplace import hold_for_restart, restarted_in_place, signal_through_supervisor
from .launch import prepare_launch
from .policy import MLContainerPolicy
from .settings import ContainerKernelSettings
from .start import start_fresh

#: While a stop is under way, how often ``poll`` may still ask ``inspect`` (events answer first).
INSPECT_INTERVAL_WHILE_STOPPING = 1.0


# KernelProvisionerMeta derives from MetaHasTraits, so the bases agree at run time; mypy cannot
# see that through the ABC metaclass.
class MLContainerProvisioner(ContainerKernelSettings, LocalProvisioner):  # type: ignore[metaclass]
    """Start, signal, restart and stop a Jupyter kernel inside a container.

    jupyter_client's interface; the work is in the kernel layer's modules: ``launch`` (what
    the container is made from), ``start`` (a new container, and its recoveries), ``inplace``
    (a restart inside the container), ``claim`` (a warm pool's kernel), ``reach`` (address,
    ports, encryption) and ``exits`` (up, down, why). They reach the backend only through
    :attr:`backend` (core/backend.py).
    """

    def __init__(self, **kwargs: Any):
        # kernel.json's config arrives as keyword arguments: an unknown key is a mistake (or an
        # attempt at an admin policy setting), never something to ignore quietly.
        unknown = sorted(set(kwargs) - set(self.class_trait_names()) - {"config", "parent", "log"})
        if unknown:
            msg = (
                f"Unknown setting(s) {', '.join(map(repr, unknown))} in the kernelspec's "
                "metadata.kernel_provisioner.config. The settings are those of "
                "MLContainerProvisioner (see `jupyter mlcontainer --help-all` or the README); "
                "admin policy settings (MLContainerPolicy) belong in the server's configuration."
            )
            raise ConfigurationError(msg)
        super().__init__(**kwargs)
        #: The kernel's container: one object, handed over whole by a warm pool.
        self.container = KernelContainer()
        #: What this provisioner knows about the current start.
        self.run = KernelRun()

    #: How the last container ended (set when it is seen to have stopped).
    last_exit: ContainerExit | None = None
    #: The admin policy, for this kernel (set by ``pre_launch``).
    policy: MLContainerPolicy
    #: A pool's kernel: what it was started for (core/plan.py pool_key).
    pool_key = ""
    #: The notebook this kernel serves, as the server sees it (for the save hook).
    session_path: str | None = None
    #: Whom the kernel is for, as a gateway verified them (its kernel manager sets it; never
    #: the kernelspec or the client). "": whoever runs this process. Names the kernel's
    #: GPUs' holder and counts against that user's quota.
    user_name = ""
    #: Learning the running container's image details (after the start).
    details_task: asyncio.Future[None] | None = None

    @property
    def container_id(self) -> str | None:
        return self.container.id

    @property
    def container_name(self) -> str | None:
        return self.container.name

    @property
    def granted_gpus(self) -> gpu.GPURequest | None:
        """The GPUs the last start resolved to."""
        return self.container.granted_gpus

    @property
    def image_details(self) -> dict[str, Any] | None:
        """image, image_id, digest, repo_digests of the running container's image."""
        return self.container.image_details

    @property
    def has_process(self) -> bool:
        return self.container.id is not None and self.run.running

    @property
    def container_backend(self) -> backends.Backend:
        """Where this kernel's containers run: the ``backend`` setting's kind (a Docker engine,
        a swarm) at ``docker_host`` (an engine's or a manager's address)."""
        return backends.connect(self.docker_host or None, self.backend)

    @property
    def fills_a_pool(self) -> bool:
        """Started by the warm pool, to wait for a user's start."""
        return bool(getattr(self.parent, pool.FILLER, False))

    @property
    def in_a_server(self) -> bool:
        """Started by a server's MultiKernelManager (not a headless tool's own manager)."""
        return isinstance(getattr(self.parent, "parent", None), MultiKernelManager)

    # --- start --------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Check the settings and the policy; ports, connection file and keys (jupyter_client's
        LocalProvisioner, with the container's own needs)."""
        with answered(self.in_a_server):
            return await self._pre_launch(**kwargs)

    async def _pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the host side; runs again before every restart on this instance."""
        self.run.running = self.run.stopping = False
        self.run.exit_code = None
        self._check_image()
        # The admin policy, on what the kernelspec asks for: before any backend call.
        asked = kernelspec.provisioner_config(
            self.kernel_spec.to_dict() if self.kernel_spec else {}
        )
        self.policy = MLContainerPolicy.for_kernel(self)
        self.policy.check_settings(asked, self)
        km = self.parent
        if not self.in_a_server:
            one_line_errors(self.log)  # a headless tool: errors in one line
        reach.use_ipc_sockets(self)
        reach.choose_encryption(self, kwargs)
        last_address, self.container.ip = self.container.ip, ""
        self.run.previous_ip = last_address
        # LocalProvisioner folds these into the host's command line; the container's command
        # is built from the kernelspec's argv, so keep them for it.
        self.run.extra_arguments = tuple(kwargs.get("extra_arguments") or ())
        if km is None or not last_address or km.ip != last_address:
            return await super().pre_launch(**kwargs)
        # The last container's own address (bridge_access): LocalProvisioner checks that the
        # address is local and picks ports there; the next container gets an address of its
        # own, and jupyter_client reconciles its connection file with it after the launch.
        km.ip = "127.0.0.1"
        try:
            return await super().pre_launch(**kwargs)
        finally:
            km.ip = last_address

    def _check_image(self) -> None:
        if not self.image:
            msg = (
                "This container kernel has no image: set 'image' in the kernelspec's "
                "metadata.kernel_provisioner.config (or MLContainerProvisioner.image)."
            )
            raise ConfigurationError(msg)
        try:
            check_reference(self.image)
        except ValueError as e:
            msg = f"{e}. Fix 'image' in the kernelspec's metadata.kernel_provisioner.config."
            raise ConfigurationError(msg) from None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Create and start the kernel's container; return when its heartbeat answers."""
        with answered(self.in_a_server):
            launch = await prepare_launch(self, kwargs)
            if not (
                await restarted_in_place(self, launch) or await claimed_from_pool(self, launch)
            ):
                await start_fresh(self, launch)
            return self.connection_info

    async def post_launch(self, **kwargs: Any) -> None:
        """Learn the image's id and digests in the background (for records, not the start)."""
        await super().post_launch(**kwargs)
        container_id = self.container.id

        async def learn() -> None:
            try:
                state = await self.container_backend.inspect(container_id) if container_id else None
                image = await self.container_backend.image(state.image_id) if state else None
            except Exception as e:  # only a record is lost
                self.log.debug("Kernel %s: no image details: %s", self.kernel_id, e)
                return
            if image is not None:
                # The same record `jupyter mlcontainer run` writes into notebooks.
                details = kernelspec.image_details(self.image, dict(image))
                spec = self.kernel_spec.to_dict() if self.kernel_spec else {}
                if kernelspec.recorded(spec):
                    version = environments.version_by_image(spec, self.image, str(image["Id"]))
                    details["version"] = version.number if version else None
                self.container.image_details = details

        self.details_task = asyncio.ensure_future(learn())

    async def refresh_drift(self) -> environments.PackageDiff:
        """Look up what was installed into the running container that its image has not."""
        container_id = self.container.id
        if container_id is not None:
            changes = await self.container_backend.changes(container_id)
            if self.container.id == container_id:
                self.container.drift = environments.drift(changes)
        return self.container.drift

    # --- running ------------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the container runs, else its exit code. At most one inspect call.

        While a stop is under way the backend's exit events answer instead of ``inspect``,
        which would wait for the engine's network teardown (see docker/events.py).
        """
        container_id = self.container.id
        if container_id is None:
            return 0
        if self.run.exit_code is not None:
            return self.run.exit_code
        supervisor = self.run.supervisor
        if supervisor is not None and not supervisor.lost:
            code = supervisor.exit_code()  # held for a restart: the kernel, not the container
            return None if code is None else record_requested_exit(self, code)
        exits = self.container_backend.exits()
        code = exits.exit_code(container_id)
        if self.run.stopping:
            if code is not None:
                return record_requested_exit(self, code)
            since = time.monotonic() - self.run.last_inspect
            if exits.healthy and since < INSPECT_INTERVAL_WHILE_STOPPING:
                return None
        self.run.last_inspect = time.monotonic()
        try:
            state = await self.container_backend.inspect(container_id)
        except EngineUnavailableError as e:
            if not self.run.backend_warned:
                self.log.warning("Kernel %s: cannot check its container: %s", self.kernel_id, e)
                self.run.backend_warned = True
            return None
        self.run.backend_warned = False
        if state is not None and state.running:
            return None
        exit_ = await record_exit(self, state)
        if self.run.stopping:
            self.log.debug(
                "Kernel %s: container %s stopped: %s", self.kernel_id, exit_.name, exit_.reason
            )
        else:
            self.log.warning("Kernel %s died. %s", self.kernel_id, exit_.message())
            if state is not None:
                # Its reason and log are recorded. Headless tools (nbclient) never shut a dead
                # kernel down, so nothing else would remove its container; a restart or
                # shutdown that follows finds it gone, which is fine.
                self.container_backend.remove_soon(container_id)
        return exit_.exit_code

    async def wait(self) -> int | None:
        ret = await self.poll()
        while ret is None:
            await asyncio.sleep(0.05)
            ret = await self.poll()
        self.run.running = False
        return ret

    async def send_signal(self, signum: int) -> None:
        if self.container.id is None or signum == 0:
            return
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        backend = self.container_backend
        if not backend.capabilities.signals:  # declared: the supervisor carries it
            await signal_through_supervisor(self, name)
            return
        await backend.signal(self.container.id, name)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self.run.stopping = True
        if restart:
            await hold_for_restart(self)

    async def terminate(self, restart: bool = False) -> None:
        await self._stop_kernel(kill=False)

    async def kill(self, restart: bool = False) -> None:
        await self._stop_kernel(kill=True)

    async def _stop_kernel(self, kill: bool) -> None:
        """SIGKILL / SIGTERM the kernel: through its container's supervisor, which keeps the
        container for a restart in place (jupyter_client's ``restart_kernel(now=True)`` kills
        without saying that a restart follows: ``cleanup`` tells), else the container."""
        self.run.stopping = True
        await hold_for_restart(self)
        supervisor = self.run.supervisor
        if supervisor is not None and not supervisor.lost:
            try:
                await supervisor.signal(kill)
                return
            except OSError:
                self.run.supervisor = None
        await self.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the container (idempotent) and, unless restarting, the ipc directory.

        A restart waits for the removal (the new container publishes the same ports). A
        final shutdown in a server leaves it to the backend's background queue, so that the
        engine's network teardown does not hold up the caller; outside a server it waits, as
        the process may end right after (a multiprocessing worker is terminated without its
        exit handlers, and the container would wait for its lease to expire).
        """
        if restart and self.run.supervisor is not None and self.run.exit_code is not None:
            pass  # the container stays for the kernel's restart in place
        elif restart:
            await discard_container(self)
        else:
            if self.run.supervisor is not None:
                self.run.supervisor.close()
                self.run.supervisor = None
            self.container.stop_renewal()
            container_id, self.container.id = self.container.id, None
            self.run.running = False
            if container_id is not None and self.in_a_server:
                self.container_backend.remove_soon(container_id)
            elif container_id is not None:
                await self.container_backend.remove(container_id)
        if not restart and self.run.ipc_dir is not None:
            shutil.rmtree(self.run.ipc_dir, ignore_errors=True)
            self.run.ipc_dir = None
        await super().cleanup(restart=restart)

    # --- persistence --------------------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update({"container_id": self.container.id, "container_name": self.container.name})
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        # LocalProvisioner's version expects a pid; ours has a container instead.
        await KernelProvisionerBase.load_provisioner_info(self, provisioner_info)
        self.container.id = provisioner_info.get("container_id")
        self.container.name = provisioner_info.get("container_name")
        self.run.running = self.container.id is not None

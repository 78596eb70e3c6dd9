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
import dataclasses
import os
import shutil
import signal
import tempfile
import time
from typing import Any

from jupyter_client.connect import KernelConnectionInfo, LocalPortCache
from jupyter_client.multikernelmanager import MultiKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

from ..agent.protocol import HOME_NOT_WRITABLE_EXIT, RUNTIME_MISMATCH_EXIT
from ..core import gpus as gpu
from ..core import kernelspec, labels
from ..core.diagnostics import ContainerExit
from ..core.exceptions import (
    ConfigurationError,
    EngineError,
    EngineUnavailableError,
    GPUUnavailableError,
    ImageNotFoundError,
    KernelStartError,
    NetworkGoneError,
    one_line_errors,
)
from ..core.plan import (
    PORT_NAMES,
    KernelLaunch,
    build_plan,
    home_volume_name,
    mapped_prefix,
    mounted_dir,
    parse_mount,
    pool_key,
    select_env,
)
from ..core.probe import ImageProbe
from ..core.reference import check_reference
from ..docker import endpoint, sibling, volumes
from ..docker.backend import state_of
from ..docker.engine import Engine
from ..docker.events import engine_stopped_at
from ..docker.images import obtain_image, probe_image
from ..docker.networks import random_address
from ..docker.runtime import RuntimeTarget, discard_runtime, ensure_runtime, volume_name
from . import pool
from .answers import answered
from .container import KernelContainer
from .identity import kernel_user
from .policy import MLContainerPolicy
from .readiness import Heartbeat
from .renewal import LeaseRenewal
from .settings import ContainerKernelSettings
from .supervisor import Supervisor, SupervisorError

#: While a stop is under way, how often ``poll`` may still ask ``inspect`` (events answer first).
INSPECT_INTERVAL_WHILE_STOPPING = 1.0
#: Fresh host ports to try when the engine finds a chosen one taken (concurrent starts).
PORT_RETRIES = 3
#: Seconds an engine's GPU capabilities are trusted before asking again (shared by kernels).
GPU_INFO_MAX_AGE = 60.0
#: Images found to lack ipykernel in this process, with their probes (skips a failing start).
_RUNTIME_PROBES: dict[str, ImageProbe] = {}


def _same_connection(a: Any, b: Any) -> bool:
    """Whether two connection infos name the same ports, transport and key."""
    names = (*PORT_NAMES, "transport", "key", "signature_scheme")
    return all(a.get(name) == b.get(name) for name in names)


# KernelProvisionerMeta derives from MetaHasTraits, so the bases agree at run time; mypy cannot
# see that through the ABC metaclass.
class MLContainerProvisioner(ContainerKernelSettings, LocalProvisioner):  # type: ignore[metaclass]
    """Start, signal, restart and stop a Jupyter kernel inside a Docker container."""

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

    # --- state --------------------------------------------------------------------------

    #: How the last container ended (set when it is seen to have stopped).
    last_exit: ContainerExit | None = None
    _running = False
    _stopping = False
    _exit_code: int | None = None
    _launches = 0
    _extra_arguments: tuple[str, ...] = ()
    _policy: MLContainerPolicy
    _ipc_dir: str | None = None
    _engine_warned = False
    _last_inspect = 0.0
    #: The kernels' network's subnet and id (bridge mode).
    _subnet: str | None = None
    _network_id: str | None = None
    #: Started once (a later start is a restart: it never claims a pooled kernel).
    _has_started = False
    #: What the running container was made from; the supervisor holding it for a restart.
    _running_launch: KernelLaunch | None = None
    _supervisor: Supervisor | None = None
    _previous_ip = ""
    #: A remote engine's host, where its kernels' published ports are reached ("" local).
    _kernel_host = ""
    #: A claimed pooled kernel: the directory and variables it was moved into.
    _moved_in: tuple[str, dict[str, str | None]] | None = None
    #: A pool's kernel: what it was started for (core/plan.py pool_key) and its environment.
    pool_key = ""
    _launch_env: dict[str, str] = {}
    session_path: str | None = None
    #: Learning the running container's image details (after the start).
    _details_task: asyncio.Future[None] | None = None

    @property
    def container_id(self) -> str | None:
        return self.container.id

    @container_id.setter
    def container_id(self, value: str | None) -> None:
        self.container.id = value

    @property
    def container_name(self) -> str | None:
        return self.container.name

    @container_name.setter
    def container_name(self, value: str | None) -> None:
        self.container.name = value

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
        return self.container_id is not None and self._running

    @property
    def engine(self) -> Engine:
        return Engine.for_url(self.docker_host or None)

    # --- start --------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Check the settings and the policy; ports, connection file and keys (jupyter_client's
        LocalProvisioner, with the container's own needs)."""
        with answered(self.in_a_server):
            return await self._pre_launch(**kwargs)

    async def _pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the host side; runs again before every restart on this instance."""
        self._running = False
        self._stopping = False
        self._exit_code = None
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
        # The admin policy, on what the kernelspec asks for: before any engine call.
        asked = kernelspec.provisioner_config(
            self.kernel_spec.to_dict() if self.kernel_spec else {}
        )
        self._policy = MLContainerPolicy.for_kernel(self)
        self._policy.check_settings(asked, self)
        km = self.parent
        if not isinstance(getattr(km, "parent", None), MultiKernelManager):
            # A headless tool's own kernel manager: errors in one line (the server's log
            # keeps tracebacks).
            one_line_errors(self.log)
        if self.network == "none" and km is not None:
            # ZMQ over ipc sockets in a directory that the container mounts.
            if self._ipc_dir is None:
                self._ipc_dir = tempfile.mkdtemp(prefix="mlc-")
            km.transport = "ipc"
            km.cache_ports = False
            km.ip = os.path.join(self._ipc_dir, "k")
        if self.engine.remote:
            self._policy.check_remote(
                self.engine.address, self.engine.endpoint.api_encrypted, self.remote_encryption
            )
            if self.remote_encryption == "curve":
                # CurveZMQ keys made per kernel by jupyter_client, kept across restarts.
                kwargs["transport_encryption"] = "required"
        elif (
            self.network != "none"
            and "transport_encryption" not in kwargs
            and getattr(km, "transport_encryption", "disabled") == "disabled"
        ):
            # What the server's KernelManager asks for wins; its default ("disabled") gives
            # way to ours. "auto": jupyter_client encrypts when the kernelspec declares it.
            kwargs["transport_encryption"] = {"auto": "auto", "curve": "required"}.get(
                self.local_encryption, "disabled"
            )
        last_address, self.container.ip = self.container.ip, ""
        self._previous_ip = last_address
        # LocalProvisioner folds these into the host's command line; the container's command
        # is built from the kernelspec's argv, so keep them for it.
        self._extra_arguments = tuple(kwargs.get("extra_arguments") or ())
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

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Create and start the kernel's container; return when its heartbeat answers."""
        with answered(self.in_a_server):
            return await self._launch_kernel(kwargs)

    async def _launch_kernel(self, kwargs: dict[str, Any]) -> KernelConnectionInfo:
        launch = await self._prepare_launch(kwargs)
        if await self._restarted_in_place(launch):
            return self.connection_info
        if await self._claimed_from_pool(launch):
            return self.connection_info
        self._has_started = True
        await self._start_fresh(launch)
        return self.connection_info

    async def _prepare_launch(self, kwargs: dict[str, Any]) -> KernelLaunch:
        """Everything that decides this start's container, resolved against the engine and
        checked against the policy before anything exists there."""
        self.cwd = self._working_dir(kwargs.get("cwd"))
        if self.network != "none" and not self.connection_info.get("curve_secretkey"):
            # ipykernel warns of eavesdropping on every such start: say why it is safe here.
            self.log.info(
                "Kernel %s: its traffic is not encrypted (local_encryption=%s, or its kernelspec "
                "does not declare CurveZMQ); only this machine reaches it: ports on 127.0.0.1 or "
                "the kernels' network, where containers cannot reach each other",
                self.kernel_id,
                self.local_encryption,
            )
        uid, gid = self._container_user(self.cwd)
        self._policy.check_user(uid, gid)  # before anything exists on the engine
        self._kernel_host = self._remote_kernel_host()
        engine = self.engine
        engine.exit_watcher()  # subscribe to exits before there is anything to miss
        if self.pull_policy == "always":
            await engine.pull(self.image, self.log)
        await self._join_kernel_network()
        publish = await self._publishes_ports(self._subnet)
        request = await self._resolve_gpus()
        host_memory = 0
        if self.mem_limit is None:  # the policy's default applies: it may be a share of this
            host_memory = int((await engine.info(max_age=GPU_INFO_MAX_AGE)).get("MemTotal") or 0)
        mem_limit = self._policy.memory_limit(self.mem_limit, host_memory)  # may refuse
        if self._ipc_dir is not None and os.getuid() == 0:
            os.chown(self._ipc_dir, uid, gid)
        #: The notebook this kernel serves, as the server sees it (for the save hook).
        self.session_path = (kwargs.get("env") or {}).get("JPY_SESSION_NAME")
        spec_json = self.kernel_spec.to_dict() if self.kernel_spec else {}
        source = str(kernelspec.recorded(spec_json).get("source") or "")
        home_volume, home_volume_is_new = await self._home_volume(uid, source or self.image)
        settings = self.launch_settings()
        if self._network_id:  # by id: a name may be ambiguous (see docker/networks.py)
            settings["bridge_network"] = self._network_id
        if not self.path_map:  # a server in a container: its own mounts say where things are
            settings["path_map"] = await sibling.own_path_map(engine)
        return KernelLaunch(
            **settings,
            kernel_id=str(self.kernel_id),
            kernel_name=getattr(self.parent, "kernel_name", "") or "",
            argv=[*self.kernel_spec.argv, *self._extra_arguments],
            connection_info=self.connection_info,
            cwd=self.cwd if self.mount_cwd else "",
            env=select_env(
                kwargs.get("env") or {},
                self.env_allowlist,
                (self.kernel_spec.env or {}).keys() if self.kernel_spec else (),
                self.env,
            ),
            uid=uid,
            gid=gid,
            gpus=request,
            gpu_support=self.container.gpu_support or gpu.GPUSupport(),
            mounts=[parse_mount(m) for m in self.mounts],
            ipc_dir=self._ipc_dir,
            mem_limit=mem_limit,
            source_image=source,
            home_volume=home_volume,
            home_volume_is_new=home_volume_is_new,
            lease=self._lease_address(),
            publish_ports=publish,
            publish_ip=self.publish_address if self._kernel_host else "127.0.0.1",
            mount_root=self._server_root(),
            pooled=self._fills_a_pool,
            supervise=self.restart_in_container,
            userns=await self._user_namespace(),
        )

    async def _join_kernel_network(self) -> None:
        """Bridge mode: the kernels' network (made on first use), its id and fixed subnet."""
        self._subnet = self._network_id = None
        if self.network == "bridge" and self.bridge_network:
            kernel_network = await self.engine.ensure_network(self.bridge_network)
            self._subnet, self._network_id = kernel_network.subnet, kernel_network.id

    async def _start_fresh(self, launch: KernelLaunch) -> None:
        """A new container; when the kernels' network was removed meanwhile (a prune while
        the server ran), it is made again and the start tried once more."""
        try:
            await self._start_in_network(launch)
        except NetworkGoneError:
            self.log.warning(
                "Kernel %s: the kernels' network %s was removed meanwhile; making it again",
                self.kernel_id,
                self.bridge_network,
            )
            await self._join_kernel_network()
            self.container.pinned_ip = ""  # the new network's subnet may differ
            relaunch = dataclasses.replace(launch, bridge_network=self._network_id or "")
            await self._start_in_network(relaunch)

    async def _start_in_network(self, launch: KernelLaunch) -> None:
        """A new container; an image without ipykernel is started again with an injected
        runtime (``inject_runtime: auto``)."""
        if not launch.publish_ports and self._subnet:
            # An address of its own, kept across restarts: Jupyter's open channels (the
            # notebook's websocket) stay connected to it.
            self.container.pinned_ip = self.container.pinned_ip or random_address(self._subnet)
            launch = dataclasses.replace(launch, address=self.container.pinned_ip)
        probe = await self._probe_for_runtime()
        try:
            await self._start_with_untouched_runtime(launch, probe)
        except KernelStartError:
            missing = self.last_exit is not None and self.last_exit.missing_ipykernel
            if probe is not None or self.inject_runtime != "auto" or not missing:
                raise
            self.log.info(
                "Kernel %s: image %s has no ipykernel; starting it with an injected runtime",
                self.kernel_id,
                self.image,
            )
            probe = await probe_image(self.engine, self.image)
            _RUNTIME_PROBES[self.image] = probe
            await self._start_with_untouched_runtime(launch, probe)

    async def _start_with_untouched_runtime(
        self, launch: KernelLaunch, probe: ImageProbe | None
    ) -> None:
        """Start; a kernel that finds its injected runtime changed since it was sealed
        (poisoned, or damaged) refuses it: rebuild the runtime once and start again."""
        try:
            await self._start_with_writable_home(launch, probe)
        except KernelStartError:
            exit_ = self.last_exit
            if probe is None or exit_ is None or exit_.exit_code != RUNTIME_MISMATCH_EXIT:
                raise
            volume = volume_name(RuntimeTarget.from_probe(probe), self.runtime_packages)
            self.log.warning(
                "Kernel %s: the runtime %s changed after it was sealed; rebuilding it",
                self.kernel_id,
                volume,
            )
            await discard_runtime(self.engine, volume)
            await self._start_with_writable_home(launch, probe)

    async def _start_with_writable_home(
        self, launch: KernelLaunch, probe: ImageProbe | None
    ) -> None:
        """Start; a kernel whose HOME volume its user may not write (a volume of an older
        version, or one made by hand as root) stops at once: the volume is given to the
        user when it is this project's HOME volume of that user, then the kernel starts again.
        """
        try:
            await self._start_with_free_ports(launch, probe)
        except KernelStartError:
            exit_ = self.last_exit
            if not launch.home_volume or exit_ is None or exit_.exit_code != HOME_NOT_WRITABLE_EXIT:
                raise
            self.log.warning(
                "Kernel %s: uid %s may not write its HOME volume %s; giving it to that user",
                self.kernel_id,
                launch.uid,
                launch.home_volume,
            )
            await volumes.give_home_to_user(
                self.engine,
                launch.home_volume,
                launch.uid if launch.uid is not None else 0,
                launch.gid if launch.gid is not None else 0,
                launch.image,
                probe.python if probe is not None else launch.python,  # as _start_container
            )
            await self._start_with_free_ports(launch, probe)

    @property
    def _fills_a_pool(self) -> bool:
        return bool(getattr(self.parent, pool.FILLER, False))

    @property
    def in_a_server(self) -> bool:
        """Started by a server's MultiKernelManager (not a headless tool's own manager)."""
        return isinstance(getattr(self.parent, "parent", None), MultiKernelManager)

    def _server_root(self) -> str:
        """The directory a server's kernels mount (its root_dir), or '' outside a server."""
        multikernel_manager = getattr(self.parent, "parent", None)
        if not isinstance(multikernel_manager, MultiKernelManager):
            return ""
        return str(getattr(multikernel_manager, "root_dir", "") or "")

    async def _claimed_from_pool(self, launch: KernelLaunch) -> bool:
        """Take a ready kernel from the server's warm pool when one fits this start."""
        kernel_pool = pool.MLContainerPool.current()
        if kernel_pool is None or self.network == "none" or self._has_started:
            return False  # a restart keeps its kernel's connection: never a pooled one
        key = pool_key(launch)
        if self._fills_a_pool:
            self.pool_key = key
            self._launch_env = dict(launch.env)
            return False
        entry = await kernel_pool.claim(self, key)
        if entry is None:
            return False
        pooled = entry.provisioner
        # The container is handed over whole; the pooled kernel's manager keeps nothing.
        self.container, pooled.container = pooled.container, KernelContainer()
        self.connection_info = pooled.connection_info.copy()
        self.last_exit = None
        self._has_started = True
        self._running = True
        pooled._running = False
        pool.release(entry.manager)
        changed: dict[str, str | None] = {
            k: v for k, v in launch.env.items() if pooled._launch_env.get(k) != v
        }
        changed.update({k: None for k in pooled._launch_env if k not in launch.env})
        try:
            await pool.move_in(dict(self.connection_info), str(self.cwd), changed)
        except BaseException:
            await self._discard_container()
            raise
        # What the kernel now runs with, for a restart in this container (which moves the
        # new kernel process in the same way).
        self._moved_in = (str(self.cwd), changed)
        if pooled._running_launch is not None:
            self._running_launch = dataclasses.replace(
                launch,
                connection_info=self.connection_info,
                lease=pooled._running_launch.lease,
                address=pooled._running_launch.address,
            )
        self.log.info(
            "Kernel %s: claimed ready kernel %s from the warm pool",
            self.kernel_id,
            self.container_name,
        )
        return True

    # --- restarts inside the container (kernel/supervisor.py) ----------------------------

    async def _hold_for_restart(self) -> None:
        """Before a restart (or a kill) stops the kernel: ask its container's supervisor to
        keep the container when the kernel exits, so that a restart can start a fresh kernel
        process in it. Silently not, when that cannot work (the next start is a cold one)."""
        launch = self._running_launch
        if (
            self._supervisor is not None
            or launch is None
            or not (launch.supervise and launch.lease and self.restart_in_container)
            or self.container_id is None
            or self._exit_code is not None
        ):
            return
        key = self.connection_info.get("key") or b""
        try:
            supervisor = await Supervisor.connect(
                self._lease_target(launch), key if isinstance(key, bytes) else key.encode()
            )
        except SupervisorError as e:
            self.log.debug("Kernel %s: restarting in a new container: %s", self.kernel_id, e)
            return
        try:
            await supervisor.hold()
        except OSError as e:
            supervisor.close()
            self.log.debug("Kernel %s: restarting in a new container: %s", self.kernel_id, e)
            return
        self._supervisor = supervisor

    async def _restarted_in_place(self, launch: KernelLaunch) -> bool:
        """Start the restarted kernel in its held container when nothing that decides the
        container changed; else let the held container go."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return False
        old = self._running_launch
        try:
            same = (
                old is not None
                and self.container_id is not None
                and pool_key(old) == pool_key(launch)
                and (old.cwd, dict(old.env)) == (launch.cwd, dict(launch.env))
                and _same_connection(old.connection_info, launch.connection_info)
            )
            if same:
                await supervisor.start()
        except SupervisorError as e:
            self.log.warning("Kernel %s: %s; starting a new container", self.kernel_id, e)
            same = False
        finally:
            supervisor.close()
        if not same:
            await self._discard_container()
            return False
        self.container.ip = self._previous_ip
        if self.container.ip:
            self.connection_info = {**self.connection_info, "ip": self.container.ip}
        self._running = True
        try:
            await self._wait_until_up()
        except KernelStartError as e:  # e.g. a process the old kernel left holds a port
            self.log.warning(
                "Kernel %s: the restart in its container failed (%s); starting a new container",
                self.kernel_id,
                str(e).splitlines()[0],
            )
            self.last_exit = None
            self._exit_code = None
            await self._discard_container()
            return False
        if self._moved_in is not None:  # a pooled container: its kernel moves in again
            await pool.move_in(dict(self.connection_info), *self._moved_in)
        self.log.info(
            "Kernel %s: restarted in its container %s", self.kernel_id, self.container_name
        )
        return True

    async def _publishes_ports(self, subnet: str | None) -> bool:
        """Bridge mode: whether the kernel's ports are published (on 127.0.0.1, or on a remote
        engine's host), or reached at the container's own address (``bridge_access``), which
        needs a network whose subnet is fixed (so that a kernel keeps its address across
        restarts)."""
        if self._kernel_host:
            return True
        if self.network != "bridge" or self.bridge_access == "ports" or not subnet:
            return bool(self.network == "bridge")
        if self.bridge_access == "address":
            return False
        return not await self.engine.routable(self._network_id or self.bridge_network or "bridge")

    def _lease_address(self) -> str | None:
        """Where the kernel's lease watchdog listens, as the container sees it (the port is
        kept across restarts, like the kernel's own)."""
        if self.lease_timeout <= 0:
            return None
        if self._ipc_dir is not None:
            return f"unix:{os.path.join(self._ipc_dir, 'lease')}"
        if self.container.lease_port is None:
            self.container.lease_port = LocalPortCache.instance().find_available_port("127.0.0.1")
        bind = "0.0.0.0" if self.network == "bridge" else "127.0.0.1"  # noqa: S104 (its own netns)
        return f"tcp:{bind}:{self.container.lease_port}"

    def _lease_target(self, launch: KernelLaunch) -> tuple[str, int] | str:
        """Where this process reaches the kernel's lease watchdog (and supervisor)."""
        # On a remote engine, its port is published beside the kernel's; the connection
        # proves the kernel's key (HMAC) and carries only restart and stop commands.
        kind, _, where = str(launch.lease).partition(":")
        host = self.container.ip or "127.0.0.1"
        return where if kind == "unix" else (host, int(where.rsplit(":", 1)[1]))

    def _renew_lease(self, launch: KernelLaunch) -> None:
        if not launch.lease:
            return
        target = self._lease_target(launch)
        self.container.renewal = LeaseRenewal(target, self.lease_timeout, str(self.kernel_id))

    async def _home_volume(self, uid: int, image: str) -> tuple[str | None, bool]:
        """The user's HOME volume for this image family, and whether it was made now."""
        if not self.persistent_home:
            return None, False
        name = home_volume_name(uid, image)
        made = await self.engine.ensure_volume(
            name,
            {
                labels.MANAGED: "true",
                labels.PURPOSE: labels.PURPOSE_HOME,
                labels.HOME_UID: str(uid),
                labels.HOME_IMAGE: image,
            },
        )
        return name, made

    async def _start_with_free_ports(self, launch: KernelLaunch, probe: ImageProbe | None) -> None:
        """Start; when the engine finds a chosen host port taken meanwhile (ports are picked
        free, then published by the engine a moment later, so concurrent starts can race),
        pick fresh ports and try again."""
        for attempt in range(PORT_RETRIES + 1):
            try:
                await self._start_container(launch, probe)
                return
            except KernelStartError as e:
                taken_address = launch.address and "Address already in use" in str(e)
                taken_port = "port is already allocated" in str(e)
                if not (taken_address or taken_port) or attempt == PORT_RETRIES:
                    raise
            if taken_port:
                self.log.info("Kernel %s: a host port was taken meanwhile", self.kernel_id)
                launch = dataclasses.replace(launch, connection_info=self._fresh_ports())
            else:
                self.log.warning(
                    "Kernel %s: its address %s is taken; it gets another (open notebooks "
                    "reconnect to it when reloaded)",
                    self.kernel_id,
                    launch.address,
                )
                self.container.pinned_ip = random_address(self._subnet or "")
                launch = dataclasses.replace(launch, address=self.container.pinned_ip)

    def _fresh_ports(self) -> KernelConnectionInfo:
        km = self.parent
        assert km is not None  # jupyter_client's KernelManager owns every provisioner
        cache = LocalPortCache.instance()
        for name in PORT_NAMES:
            setattr(km, name, cache.find_available_port(km.ip))
        km.write_connection_file()
        self.connection_info = km.get_connection_info()
        return self.connection_info

    async def _start_container(self, launch: KernelLaunch, probe: ImageProbe | None) -> None:
        """One attempt: create, copy the connection file in, start, wait for the heartbeat."""
        engine = self.engine
        self._launches += 1
        self._exit_code = None
        runtime_volume, runtime_digest = None, ""
        if probe is not None:
            runtime_volume, runtime_digest = await ensure_runtime(
                engine,
                self.image,
                probe,
                packages=self.runtime_packages,
                wheelhouse=self.wheelhouse,
                log=self.log,
            )
        plan = build_plan(
            dataclasses.replace(
                launch,
                container_name=f"mlc-{self.kernel_id}-{self._launches}",
                runtime_volume=runtime_volume,
                runtime_digest=runtime_digest,
                python=probe.python if probe is not None else launch.python,
            )
        )
        for note in plan.notes:
            self.log.warning("Kernel %s: %s", self.kernel_id, note)
        self.container_name = plan.name
        try:
            self.container_id = await engine.create_container(
                plan.create_args, plan.host_config, plan.raw_host_config
            )
        except ImageNotFoundError:
            # Creating first saves an inspect on every start; the image is rarely missing.
            await obtain_image(engine, self.image, self.pull_policy, self.log)
            self.container_id = await engine.create_container(
                plan.create_args, plan.host_config, plan.raw_host_config
            )
        self.log.info(
            "Kernel %s: starting container %s (%s, image %s, %s, user %s%s)",
            self.kernel_id,
            plan.name,
            self.container_id[:12],
            self.image,
            launch.gpus.describe(),
            plan.create_args["user"],
            f", injected runtime {runtime_volume}" if runtime_volume else "",
        )
        try:
            if plan.archive:
                await engine.put_archive(self.container_id, plan.archive_path, plan.archive)
            try:
                await engine.start(self.container_id)
            except NetworkGoneError:
                raise  # _start_fresh makes the network again
            except EngineError as e:
                raise KernelStartError(self._start_refused(e)) from None
            self._running = True
            if not launch.publish_ports and launch.network == "bridge":
                assert launch.address  # an address mode launch always names it
                self._reach_at(launch.address)
            elif self._kernel_host:
                self._reach_at(self._kernel_host)  # its ports, published on a remote host
            await self._wait_until_up()
            self._renew_lease(launch)
            self._running_launch = launch
        except BaseException:
            await self._discard_container()
            raise

    def _reach_at(self, address: str) -> None:
        """Connect to the kernel at ``address``: its container's own on the kernels' network,
        or a remote engine's host."""
        self.container.ip = address
        self.connection_info = {**self.connection_info, "ip": address}

    async def _user_namespace(self) -> str:
        """keep-id on rootless Podman: the kernel's uid is the user's own on the host too
        (without it, uid N inside is the user's N-th subordinate uid outside)."""
        kind = await self.engine.kind()
        return "keep-id" if kind.podman and kind.rootless else ""

    def _remote_kernel_host(self) -> str:
        """On a remote engine, where this server reaches its kernel ('' for a local engine);
        refuses what cannot work across machines, before anything is created there."""
        engine = self.engine
        if not engine.remote:
            return ""
        if self.network != "bridge":
            msg = (
                f"network {self.network!r} cannot reach a kernel on the remote engine "
                f"{engine.address}: its ports would not leave that host. Use network 'bridge' "
                "(the default): the kernel's ports are published there, CurveZMQ-encrypted."
            )
            raise ConfigurationError(msg)
        if self.mount_cwd and self.cwd not in ("", "/"):
            mounted = mounted_dir(str(self.cwd), self._server_root())
            if mapped_prefix(mounted, self.path_map) is None:
                msg = (
                    f"The notebook's folder {mounted} is on this machine, and the engine "
                    f"{engine.address} runs on another: a bind mount there would show an empty "
                    "folder. In the kernelspec's config, set path_map to where that folder is on "
                    f'the engine\'s host (e.g. {{"{mounted}": "/srv/notebooks/you"}}, a shared or '
                    "synced folder), or set mount_cwd to false to work in the kernel's persistent "
                    "HOME volume on that host."
                )
                raise ConfigurationError(msg)
        return self.kernel_address or endpoint.kernel_host(engine.endpoint)

    async def _probe_for_runtime(self) -> ImageProbe | None:
        """The image's probe when the kernel needs an injected runtime, else None."""
        if self.inject_runtime == "never":
            return None
        recorded = kernelspec.recorded(self.kernel_spec.to_dict() if self.kernel_spec else {})
        probe = ImageProbe.from_dict(recorded["probe"]) if recorded.get("probe") else None
        if self.inject_runtime == "always":
            if probe is None:
                probe = _RUNTIME_PROBES.get(self.image) or await probe_image(
                    self.engine, self.image
                )
            return probe
        if probe is not None:
            return probe if probe.ipykernel is None else None
        return _RUNTIME_PROBES.get(self.image)

    async def _resolve_gpus(self) -> gpu.GPURequest:
        request = gpu.parse_gpus(self.gpus)
        if request.mode == "none":
            self.container.granted_gpus = request
            return request
        if self.container.gpu_support is None:
            self.container.gpu_support = await self.engine.gpu_support(max_age=GPU_INFO_MAX_AGE)
        support = self.container.gpu_support
        if support.ignores_requests and request.explicit:
            msg = (
                f"GPUs were requested but the engine is {support.ignores_requests}; "
                "or set gpus='none' (or 'auto') to run this kernel on the CPU."
            )
            raise GPUUnavailableError(msg)
        resolved = gpu.resolve(request, support)
        if request.mode == "auto" and resolved.mode == "none":
            self.log.warning(
                "Kernel %s runs on the CPU: the Docker engine has %s. Install the NVIDIA "
                "Container Toolkit for GPUs, or set gpus='none' to silence this warning.",
                self.kernel_id,
                support.describe(),
            )
        self.container.granted_gpus = resolved
        return resolved

    def _working_dir(self, cwd: str | None) -> str:
        """The kernel's directory: Jupyter's ``cwd``, else the server's root_dir, else ours."""
        if not cwd:
            multikernel_manager = getattr(self.parent, "parent", None)
            cwd = getattr(multikernel_manager, "root_dir", None) or os.getcwd()
        return os.path.abspath(cwd)

    def _container_user(self, cwd: str) -> tuple[int, int]:
        return kernel_user(cwd, self.uid, self.gid)

    def _start_refused(self, error: EngineError) -> str:
        text = str(error)
        if "executable file not found" in text or "no such file or directory" in text:
            return (
                f"The image {self.image!r} cannot run the kernel command: {text}. The image "
                f"needs Python at '{self.python}' (set the provisioner's `python` to its "
                "interpreter) and ipykernel."
            )
        return text

    async def _wait_until_up(self) -> None:
        """Wait for the heartbeat; a container that exits first fails the start."""
        assert self.container_id is not None
        deadline = time.monotonic() + self.ready_timeout
        heartbeat = Heartbeat(self.connection_info)
        try:
            while True:
                if await heartbeat.answered(timeout=0.1):
                    return
                state = await self.engine.inspect(self.container_id)
                if state is None or not (state.get("State") or {}).get("Running"):
                    exit_ = await self._record_exit(state)
                    msg = f"The kernel did not start. {exit_.message()}"
                    raise KernelStartError(msg)
                if time.monotonic() > deadline:
                    self.log.warning(
                        "Kernel %s: no heartbeat after %.0f s; its container %s still runs, "
                        "so Jupyter's own timeout decides.",
                        self.kernel_id,
                        self.ready_timeout,
                        self.container_name,
                    )
                    return
        finally:
            heartbeat.close()

    async def _record_exit(self, state: dict[str, Any] | None) -> ContainerExit:
        if state is None:
            exit_ = ContainerExit(
                name=self.container_name or "",
                image=self.image,
                exit_code=-1,
                error="the container was removed from outside Jupyter",
                requested=self._stopping,
            )
        else:
            assert self.container_id is not None
            try:
                tail = await self.engine.logs(self.container_id, tail=self.log_tail)
            except EngineUnavailableError:  # the engine is going away: the reason matters more
                tail = ""
            exit_ = dataclasses.replace(
                ContainerExit.from_inspect(state, tail),
                requested=self._stopping,
                engine_stopped_at=(
                    "" if self._stopping else await engine_stopped_at(self.engine, state_of(state))
                ),
            )
        self.last_exit = exit_
        self._exit_code = exit_.exit_code
        self._running = False
        return exit_

    async def post_launch(self, **kwargs: Any) -> None:
        """Learn the image's id and digests in the background (for records, not the start)."""
        await super().post_launch(**kwargs)
        container_id = self.container_id

        async def learn() -> None:
            try:
                state = await self.engine.inspect(container_id) if container_id else None
                image = await self.engine.image_inspect(state["Image"]) if state else None
            except Exception as e:  # only a record is lost
                self.log.debug("Kernel %s: no image details: %s", self.kernel_id, e)
                return
            if image is not None:
                # The same record `jupyter mlcontainer run` writes into notebooks.
                self.container.image_details = kernelspec.image_details(self.image, image)

        self._details_task = asyncio.ensure_future(learn())

    # --- running ------------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the container runs, else its exit code. At most one inspect call.

        While a stop is under way the engine's ``die`` event answers instead of ``inspect``,
        which would wait for the engine's network teardown (see docker/events.py).
        """
        if self.container_id is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        if self._supervisor is not None and not self._supervisor.lost:
            code = self._supervisor.exit_code()  # held for a restart: the kernel, not the container
            return None if code is None else self._record_requested_exit(code)
        watcher = self.engine.exit_watcher()
        code = watcher.exit_code(self.container_id)
        if self._stopping:
            if code is not None:
                return self._record_requested_exit(code)
            if (
                watcher.healthy
                and time.monotonic() - self._last_inspect < INSPECT_INTERVAL_WHILE_STOPPING
            ):
                return None
        self._last_inspect = time.monotonic()
        try:
            state = await self.engine.inspect(self.container_id)
        except EngineUnavailableError as e:
            if not self._engine_warned:
                self.log.warning("Kernel %s: cannot check its container: %s", self.kernel_id, e)
                self._engine_warned = True
            return None
        self._engine_warned = False
        if state is not None and (state.get("State") or {}).get("Running"):
            return None
        exit_ = await self._record_exit(state)
        if self._stopping:
            self.log.debug(
                "Kernel %s: container %s stopped: %s", self.kernel_id, exit_.name, exit_.reason
            )
        else:
            self.log.warning("Kernel %s died. %s", self.kernel_id, exit_.message())
            if state is not None:
                # Its reason and log are recorded. Headless tools (nbclient) never shut a dead
                # kernel down, so nothing else would remove its container; a restart or
                # shutdown that follows finds it gone, which is fine.
                self.engine.remove_soon(self.container_id)
        return exit_.exit_code

    def _record_requested_exit(self, code: int) -> int:
        self.last_exit = ContainerExit(
            name=self.container_name or "", image=self.image, exit_code=code, requested=True
        )
        self._exit_code = code
        self._running = False
        self.log.debug(
            "Kernel %s: container %s stopped (exit code %s)",
            self.kernel_id,
            self.container_name,
            code,
        )
        return code

    async def wait(self) -> int | None:
        ret = await self.poll()
        while ret is None:
            await asyncio.sleep(0.05)
            ret = await self.poll()
        self._running = False
        return ret

    async def send_signal(self, signum: int) -> None:
        if self.container_id is None or signum == 0:
            return
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        await self.engine.kill(self.container_id, signal=name)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping = True
        if restart:
            await self._hold_for_restart()

    async def terminate(self, restart: bool = False) -> None:
        await self._stop_kernel(restart, kill=False)

    async def kill(self, restart: bool = False) -> None:
        await self._stop_kernel(restart, kill=True)

    async def _stop_kernel(self, restart: bool, kill: bool) -> None:
        """SIGKILL / SIGTERM the kernel: through its container's supervisor, which keeps the
        container for a restart in place (jupyter_client's ``restart_kernel(now=True)`` kills
        without saying that a restart follows: ``cleanup`` tells), else the container."""
        self._stopping = True
        await self._hold_for_restart()
        if self._supervisor is not None and not self._supervisor.lost:
            try:
                await self._supervisor.signal(kill)
                return
            except OSError:
                self._supervisor = None
        await self.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        """Remove the container (idempotent) and, unless restarting, the ipc directory.

        A restart waits for the removal (the new container publishes the same ports). A
        final shutdown in a server leaves it to the engine façade's background queue, so that
        the engine's network teardown does not hold up the caller; outside a server it waits,
        as the process may end right after (a multiprocessing worker is terminated without
        its exit handlers, and the container would wait for its lease to expire).
        """
        if restart and self._supervisor is not None and self._exit_code is not None:
            pass  # the container stays for the kernel's restart in place
        elif restart:
            await self._discard_container()
        else:
            if self._supervisor is not None:
                self._supervisor.close()
                self._supervisor = None
            self.container.stop_renewal()
            container_id, self.container_id = self.container_id, None
            self._running = False
            if container_id is not None and self.in_a_server:
                self.engine.remove_soon(container_id)
            elif container_id is not None:
                await self.engine.remove(container_id)
        if not restart and self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
            self._ipc_dir = None
        await super().cleanup(restart=restart)

    async def _discard_container(self) -> None:
        self.container.stop_renewal()
        container_id, self.container_id = self.container_id, None
        self._running = False
        if container_id is not None:
            await self.engine.remove(container_id)

    # --- persistence --------------------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update({"container_id": self.container_id, "container_name": self.container_name})
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        # LocalProvisioner's version expects a pid; ours has a container instead.
        await KernelProvisionerBase.load_provisioner_info(self, provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        self.container_name = provisioner_info.get("container_name")
        self._running = self.container_id is not None

"""The one door to the Docker engine.

Every Docker call of the package goes through :class:`Engine`: it runs the blocking SDK call
on a background executor (never on the event loop) and turns SDK errors into the package's
own exceptions, whose messages say what to do. Nothing here assumes that the engine runs on
this machine: it may be a remote ``DOCKER_HOST`` or a docker context.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import docker
import docker.constants
import docker.errors
import requests.exceptions

from ..core import labels
from ..core.backend import BackendKind, KernelNetwork
from ..core.exceptions import (
    EngineError,
    EngineUnavailableError,
    GPUUnavailableError,
    ImageNotFoundError,
    ImagePullError,
    InvalidReferenceError,
    NetworkGoneError,
    without_repeats,
)
from ..core.gpus import GPUSupport
from ..core.labels import owner_labels
from ..core.progress import PullProgress
from ..core.reference import check_reference
from . import endpoint, leases, networks
from .events import ExitWatcher

T = TypeVar("T")
#: Pulls at once per engine (each on its own thread, apart from kernel work).
PULL_WORKERS = 4
log = logging.getLogger(__name__)

_NO_GPU_MARKERS = (
    'could not select device driver ""',
    "could not select device driver",
    "unresolvable CDI devices",
    "nvidia-container-cli",
)


def _engine_unavailable(where: str, error: Exception) -> EngineUnavailableError:
    msg = (
        f"Cannot reach the Docker engine at {where}: {error}. "
        "Start the engine (for example `sudo systemctl start docker`, or Docker Desktop), "
        "make sure this user may use it (the `docker` group), or point DOCKER_HOST / "
        "MLContainerProvisioner.docker_host at a running engine."
    )
    return EngineUnavailableError(msg)


def _explain_api_error(error: docker.errors.APIError, what: str, where: str = "") -> Exception:
    """Our error for an SDK one; ``where`` names a remote engine (" at ssh://gpu-box")."""
    text = without_repeats(str(error.explanation or error))
    if any(marker in text for marker in _NO_GPU_MARKERS):
        msg = (
            f"GPUs were requested but the Docker engine{where} cannot provide them ({text}). "
            "Install the NVIDIA Container Toolkit on the engine's host and register it "
            "(`sudo nvidia-ctk runtime configure --runtime=docker` then restart dockerd), "
            "or enable CDI (`nvidia-ctk cdi generate`); or set gpus='none' (or 'auto') "
            "to run this kernel on the CPU."
        )
        return GPUUnavailableError(msg)
    if "no space left on device" in text:
        msg = (
            f"The Docker engine{where}'s disk is full while trying to {what} ({text}). "
            "Free space with `docker system prune` (or remove unused images) and try again."
        )
        return EngineError(msg)
    if isinstance(error, docker.errors.ImageNotFound):
        return ImageNotFoundError(f"Could not {what}: {text}")
    if isinstance(error, docker.errors.NotFound) and text.startswith("network "):
        return NetworkGoneError(f"The Docker engine{where} could not {what}: {text}")
    msg = f"The Docker engine{where} refused to {what}: {text}"
    return EngineError(msg)


#: Which engine answers the Docker API (the seam's name for it).
EngineKind = BackendKind


def _read_kind(api: docker.APIClient) -> EngineKind:
    version = api.version()
    for component in version.get("Components") or []:
        if "Podman" in str(component.get("Name")):
            number = str(component.get("Version") or version.get("Version") or "")
            # Only Podman's own API says whether it runs rootless.
            reply = api.get(f"{api.base_url}/v{number}/libpod/info")
            security = (reply.json().get("host") or {}).get("security") or {} if reply.ok else {}
            return EngineKind("Podman", number, bool(security.get("rootless")))
    options = api.info().get("SecurityOptions") or []
    rootless = any("name=rootless" in str(option) for option in options)
    return EngineKind("Docker", str(version.get("Version") or ""), rootless)


def _forget_inherited_event_loop() -> None:
    """A synchronous KernelManager (jupyter_core's ``run_sync``) keeps one event loop per
    thread. A forked child would reuse the parent's, whose epoll instance is shared with the
    parent and every sibling: their events land in the wrong process and a start waits for
    ever. The child must not close or even touch that loop (unregistering its descriptors
    would change the parent's epoll set): it only drops its references, so that its next call
    makes a loop of its own."""
    asyncio.set_event_loop(None)
    import jupyter_core.utils

    current = getattr(jupyter_core.utils, "_loop", None)  # jupyter_core's per-thread loop
    if isinstance(current, contextvars.ContextVar):
        current.set(None)


class Engine:
    """An async façade over one Docker engine.

    Instances are shared per engine address (:meth:`for_url`), so all kernels of a server
    use one HTTP connection pool and one executor.
    """

    _instances: ClassVar[dict[str | None, Engine]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()
    _fork_hook_installed: ClassVar[bool] = False

    def __init__(self, base_url: str | None = None, timeout: float = 60, max_workers: int = 16):
        self.base_url = base_url
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="mlc-docker"
        )
        # Pulls can take minutes each: their own threads, so they never hold up a kernel.
        self._pull_executor = ThreadPoolExecutor(
            max_workers=PULL_WORKERS, thread_name_prefix="mlc-docker-pull"
        )
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._watcher_lock = threading.Lock()
        self._info: tuple[float, dict[str, Any]] | None = None
        self._watcher: ExitWatcher | None = None
        self._pending: set[Future[None]] = set()
        self._networks: dict[str, KernelNetwork] = {}
        self._network_lock = threading.Lock()
        self._routable: dict[str, bool] = {}
        self._endpoint: endpoint.Endpoint | None = None
        self._kind: EngineKind | None = None

    @classmethod
    def for_url(cls, base_url: str | None = None) -> Engine:
        """The shared engine for ``base_url``.

        None means what docker/endpoint.py finds: DOCKER_HOST, DOCKER_CONTEXT, the current
        docker context, the default socket, Podman's socket.
        """
        with cls._instances_lock:
            if not cls._fork_hook_installed:
                os.register_at_fork(after_in_child=cls._forget_after_fork)
                cls._fork_hook_installed = True
            if base_url not in cls._instances:
                cls._instances[base_url] = cls(base_url)
            return cls._instances[base_url]

    @classmethod
    def known(cls) -> list[Engine]:
        """Every engine this process has used."""
        with cls._instances_lock:
            return list(cls._instances.values())

    @classmethod
    def _forget_after_fork(cls) -> None:
        """In a forked child (multiprocessing's default on Linux), the parent's executor
        threads, event watcher and held locks do not exist or never get released: work
        submitted there would wait for ever. Start afresh; the instance id is the child's own.
        """
        cls._instances = {}
        cls._instances_lock = threading.Lock()
        labels.server_instance_id.cache_clear()
        leases.forget_after_fork()
        _forget_inherited_event_loop()

    @property
    def endpoint(self) -> endpoint.Endpoint:
        """Where the engine is (docker/endpoint.py); raises EngineUnavailableError when the
        address names nothing (an unknown docker context)."""
        if self._endpoint is None:
            try:
                self._endpoint = endpoint.resolve(self.base_url)
            except endpoint.EndpointError as e:
                raise EngineUnavailableError(str(e)) from None
        return self._endpoint

    @property
    def address(self) -> str:
        try:
            return self.endpoint.describe()
        except EngineUnavailableError:
            return str(self.base_url)

    def _where(self) -> str:
        """ " at ADDRESS" for a remote engine, for messages; "" for the local one."""
        return f" at {self.address}" if self._endpoint is not None and self.remote else ""

    @property
    def remote(self) -> bool:
        """Reached over the network at another host (see docker/endpoint.py)."""
        return self.endpoint.remote

    # --- plumbing -------------------------------------------------------------------

    def _new_client(self) -> docker.APIClient:
        where = self.endpoint
        kwargs: dict[str, Any] = {"base_url": where.url} if where.url else {}
        if where.tls is not None:
            kwargs["tls"] = where.tls
        try:
            if where.tls is None:
                return docker.APIClient(version="auto", timeout=self.timeout, **kwargs)
            # requests would let REQUESTS_CA_BUNDLE (set for a proxy's CA) replace the
            # engine's own CA, and every call would fail certificate verification: no
            # environment for this client, so its version is negotiated after that is set.
            client = docker.APIClient(
                version=docker.constants.DEFAULT_DOCKER_API_VERSION,
                timeout=self.timeout,
                **kwargs,
            )
            client.trust_env = False
            client._version = str(client.version(api_version=False)["ApiVersion"])
            return client
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise _engine_unavailable(self.address, e) from e

    def _api(self) -> docker.APIClient:
        """The SDK client, made on first use (its version negotiation is a blocking call)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def exit_watcher(self) -> ExitWatcher:
        """The engine's ``die`` event watcher, started on first use (see docker/events.py)."""
        # Not the client lock: an executor thread may hold that for a whole API version
        # negotiation with a slow engine, and this runs on the event loop.
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = ExitWatcher(self._new_client)
            return self._watcher

    async def call(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        executor: ThreadPoolExecutor | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(api, *args, **kwargs)`` on the executor; map SDK errors to ours.

        ``what`` completes the sentence "could not ..." in error messages.
        """

        def run() -> T:
            api = self._api()
            try:
                return fn(api, *args, **kwargs)
            # `from None`: our message carries the engine's words; the SDK's traceback
            # would only bury it.
            except docker.errors.APIError as e:
                error = _explain_api_error(e, what, self._where())
                if isinstance(error, NetworkGoneError):
                    self.forget_network()  # looked up (and made) again at the next start
                raise error from None
            except (requests.exceptions.ConnectionError, ConnectionError) as e:
                raise _engine_unavailable(self.address, e) from None

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self._executor, run)

    # --- engine ---------------------------------------------------------------------

    async def info(self, max_age: float = 0) -> dict[str, Any]:
        """The engine's ``info``; ``max_age`` seconds of caching (engines change rarely)."""
        cached = self._info
        if cached is not None and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        info: dict[str, Any] = await self.call("read the engine's info", lambda api: api.info())
        self._info = (time.monotonic(), info)
        return info

    async def version(self) -> dict[str, Any]:
        return await self.call("read the engine's version", lambda api: api.version())

    async def gpu_support(self, max_age: float = 60) -> GPUSupport:
        """What the engine can do for GPUs (Podman says nothing in ``info``: its version
        decides, see core/gpus.py)."""
        kind = await self.kind()
        if kind.podman:
            return GPUSupport.for_podman(kind.version)
        return GPUSupport.from_info(await self.info(max_age=max_age))

    async def kind(self) -> EngineKind:
        """Docker or Podman, rootful or rootless (cached: it does not change while it runs)."""
        if self._kind is None:
            self._kind = await self.call("read the engine's version", _read_kind)
        return self._kind

    # --- images ---------------------------------------------------------------------

    async def image_inspect(self, ref: str) -> dict[str, Any] | None:
        """The image's inspect data, or None when the engine does not have it."""

        def inspect(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                return api.inspect_image(ref)  # type: ignore[no-any-return]
            except docker.errors.ImageNotFound:
                return None

        return await self.call(f"inspect image {ref!r}", inspect)

    async def pull(
        self,
        ref: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Pull ``ref``, logging progress every few seconds; return the image's inspect data."""
        try:
            check_reference(ref)
        except ValueError as e:
            raise InvalidReferenceError(str(e)) from None
        progress = PullProgress(ref)

        def pull(api: docker.APIClient) -> dict[str, Any]:
            repository, tag = docker.utils.parse_repository_tag(ref)
            logger.info("Pulling image %s", ref)
            try:
                stream = api.pull(repository, tag=tag or "latest", stream=True, decode=True)
                for event in stream:
                    if "error" in event:
                        raise ImagePullError(_pull_failed(ref, str(event["error"])))
                    if on_event is not None:
                        on_event(event)
                    line = progress.feed(event)
                    if line:
                        logger.info("%s", line)
            except docker.errors.APIError as e:
                raise ImagePullError(_pull_failed(ref, str(e.explanation or e))) from e
            logger.info("Pulled image %s (%s)", ref, progress.digest or "no digest reported")
            return api.inspect_image(ref)  # type: ignore[no-any-return]

        return await self.call(f"pull image {ref!r}", pull, executor=self._pull_executor)

    # --- containers -----------------------------------------------------------------

    async def create_container(
        self,
        create_args: dict[str, Any],
        host_config: dict[str, Any],
        raw_host_config: dict[str, Any] | None = None,
    ) -> str:
        def create(api: docker.APIClient) -> str:
            leases.hold()  # before anything exists that a crash could leave behind
            hc = api.create_host_config(**host_config)
            hc.update(raw_host_config or {})
            created = api.create_container(host_config=hc, **create_args)
            for warning in created.get("Warnings") or []:
                log.warning("Docker: %s", warning)
            return str(created["Id"])

        created = asyncio.ensure_future(
            self.call(f"create a container of image {create_args.get('image')!r}", create)
        )
        try:
            return await asyncio.shield(created)
        except asyncio.CancelledError:
            # The engine goes on creating it: remove it once it exists, or nobody would.
            with contextlib.suppress(Exception):
                await self.remove(await created)
            raise

    async def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        def put(api: docker.APIClient) -> None:
            if not api.put_archive(container_id, path, io.BytesIO(data).getvalue()):
                msg = f"The engine did not accept files for {path} in container {container_id[:12]}"
                raise EngineError(msg)

        await self.call(f"copy the kernel's files to {path} in the container", put)

    async def start(self, container_id: str) -> None:
        await self.call("start the kernel's container", lambda api: api.start(container_id))

    async def inspect(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data, or None when it is gone."""

        def inspect(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                return api.inspect_container(container_id)  # type: ignore[no-any-return]
            except docker.errors.NotFound:
                return None

        return await self.call("inspect the kernel's container", inspect)

    async def kill(self, container_id: str, signal: str = "SIGKILL") -> bool:
        """Send ``signal``; False when the container is gone or not running (not an error)."""

        def kill(api: docker.APIClient) -> bool:
            try:
                api.kill(container_id, signal=signal)
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as e:
                if e.status_code == 409:  # not running
                    return False
                raise
            return True

        return await self.call(f"send {signal} to the kernel's container", kill)

    async def remove(self, container_id: str) -> None:
        """Remove the container, running or not; already gone is fine."""

        await self.call("remove the kernel's container", self._remove, container_id)
        if self._watcher is not None:
            self._watcher.forget(container_id)

    @staticmethod
    def _remove(api: docker.APIClient, container_id: str) -> None:
        try:
            api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code == 409 and "already in progress" in str(e.explanation):
                return
            raise

    def remove_soon(self, container_id: str) -> None:
        """Remove the container in the background; errors are logged.

        The executor finishes queued work before the interpreter exits, so a server that
        shuts down right after still removes it.
        """

        def remove() -> None:
            try:
                self._remove(self._api(), container_id)
            except Exception as e:
                log.warning("Could not remove kernel container %s: %s", container_id[:12], e)
            if self._watcher is not None:
                self._watcher.forget(container_id)

        future = self._executor.submit(remove)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background removals (tests, server shutdown)."""
        pending = list(self._pending)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending))

    def drain_blocking(self, timeout: float = 30) -> None:
        """:meth:`drain` for code without an event loop."""
        futures.wait(list(self._pending), timeout=timeout)

    async def logs(self, container_id: str, tail: int = 20) -> str:
        """The last ``tail`` lines of the container's output ('' when it is gone)."""

        def logs(api: docker.APIClient) -> str:
            try:
                raw = api.logs(container_id, stdout=True, stderr=True, tail=tail)
            except docker.errors.APIError as e:
                if _gone(e):
                    return ""
                raise
            return bytes(raw).decode("utf-8", errors="replace")

        return await self.call("read the kernel container's log", logs)

    async def run(
        self,
        image: str,
        command: list[str],
        *,
        labels: dict[str, str],
        mounts: list[Any] | None = None,
        user: str | None = None,
        archive: tuple[str, bytes] | None = None,
        timeout: float = 300,
        cap_add: list[str] | None = None,
    ) -> tuple[int, str]:
        """Run a short-lived helper container to completion; return (exit code, output).

        No network; the image's entrypoint is bypassed; ``archive`` (path, tar) is unpacked
        into the container before it starts; the container is always removed.
        """

        def run(api: docker.APIClient) -> tuple[int, str]:
            host_config = api.create_host_config(
                network_mode="none",
                mounts=mounts or [],
                init=True,
                cap_drop=["ALL"],
                cap_add=cap_add or None,
                security_opt=["no-new-privileges:true"],
            )
            leases.hold()
            created = api.create_container(
                image,
                command=command,
                entrypoint=[],
                user=user,
                labels={**owner_labels(), **labels},
                host_config=host_config,
                detach=True,
            )
            container_id = created["Id"]
            try:
                if archive is not None:
                    api.put_archive(container_id, archive[0], archive[1])
                api.start(container_id)
                try:
                    result = api.wait(container_id, timeout=timeout)
                except requests.exceptions.ReadTimeout as e:
                    msg = f"The helper container of image {image!r} ran longer than {timeout:.0f} s"
                    raise EngineError(msg) from e
                output = bytes(api.logs(container_id, stdout=True, stderr=True)).decode(
                    errors="replace"
                )
                return int(result.get("StatusCode", -1)), output
            finally:
                self._remove(api, container_id)

        return await self.call(f"run a helper container of image {image!r}", run)

    async def ensure_network(self, name: str) -> KernelNetwork:
        """The bridge network ``name`` kernels join, made (inter-container traffic off, a
        fixed subnet) unless it exists; see docker/networks.py.

        Kept between kernels and servers (like an image): later starts only look it up. Its
        subnet is fixed at creation (one the engine picked as free), which is what lets a
        kernel keep its address across restarts. Containers name it by its id.
        """
        cached = self._networks.get(name)
        if cached is not None:
            return cached

        def ensure(api: docker.APIClient) -> KernelNetwork:
            with self._network_lock:  # this process's concurrent first starts make one
                return networks.ensure(api, name)

        found = await self.call(f"create the kernels' network {name!r}", ensure)
        self._networks[name] = found
        return found

    def forget_network(self, name: str | None = None) -> None:
        """Look ``name`` (None: every network) up again at the next start: it was removed or
        repaired."""
        if name is None:
            self._networks.clear()
        else:
            self._networks.pop(name, None)
        self._routable.clear()

    async def routable(self, network: str) -> bool:
        """Whether this process reaches containers on ``network`` by their own address: the
        engine is on this machine (a local socket, not Docker Desktop's VM) and the network's
        gateway is one of this machine's addresses. Cached per network."""
        if network in self._routable:
            return self._routable[network]
        scheme = self.endpoint.scheme
        reachable = False
        if scheme in ("unix", "http+unix", "") and sys.platform.startswith("linux"):

            def gateways(api: docker.APIClient) -> list[str]:
                if "Docker Desktop" in str(api.info().get("OperatingSystem", "")):
                    return []
                configs = (api.inspect_network(network).get("IPAM") or {}).get("Config") or []
                return [str(c["Gateway"]) for c in configs if c.get("Gateway")]

            found = await self.call(f"inspect the kernels' network {network!r}", gateways)
            reachable = any(_local_address(gateway) for gateway in found)
        self._routable[network] = reachable
        return reachable

    async def ensure_volume(self, name: str, volume_labels: dict[str, str]) -> bool:
        """Create named volume ``name`` unless it exists; True when it was made now (it is
        empty). Asked every time: a volume pruned meanwhile is made again, labelled."""

        def ensure(api: docker.APIClient) -> bool:
            try:
                api.inspect_volume(name)
                return False
            except docker.errors.NotFound:
                api.create_volume(name, labels=volume_labels)  # idempotent if made meanwhile
                return True

        return await self.call(f"create volume {name!r}", ensure)

    async def list_volumes(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        def volumes(api: docker.APIClient) -> list[dict[str, Any]]:
            return list(api.volumes(filters=filters).get("Volumes") or [])

        return await self.call("list volumes", volumes)

    async def volume_sizes(self) -> dict[str, int]:
        """Bytes used by each volume (the engine's `system df`; slow on big engines)."""

        def sizes(api: docker.APIClient) -> dict[str, int]:
            return {
                v["Name"]: int((v.get("UsageData") or {}).get("Size") or 0)
                for v in api.df().get("Volumes") or []
            }

        return await self.call("measure volumes", sizes)

    async def remove_volume(self, name: str) -> bool:
        """Remove volume ``name``; False when a container still uses it (409)."""

        def remove(api: docker.APIClient) -> bool:
            try:
                api.remove_volume(name)
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as e:
                if e.status_code == 409:
                    return False
                raise
            return True

        return await self.call(f"remove volume {name!r}", remove)

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        """The volume's labels ({} when it has none), or None when there is no such volume."""

        def labels_of(api: docker.APIClient) -> dict[str, str] | None:
            try:
                return dict(api.inspect_volume(name).get("Labels") or {})
            except docker.errors.NotFound:
                return None

        return await self.call(f"inspect volume {name!r}", labels_of)

    async def volume_exists(self, name: str) -> bool:
        def exists(api: docker.APIClient) -> bool:
            try:
                api.inspect_volume(name)
            except docker.errors.NotFound:
                return False
            return True

        return await self.call(f"inspect volume {name!r}", exists)

    async def create_volume(self, name: str, labels: dict[str, str]) -> None:
        await self.call(
            f"create volume {name!r}", lambda api: api.create_volume(name, labels=labels)
        )

    async def stats(self, container_id: str) -> dict[str, Any] | None:
        """One sample of the container's resource use (None when it is gone)."""

        def stats(api: docker.APIClient) -> dict[str, Any] | None:
            try:
                return api.stats(container_id, stream=False, one_shot=True)  # type: ignore[no-any-return]
            except docker.errors.APIError as e:
                if _gone(e):
                    return None
                raise
            except ValueError:  # an empty body: the engine tore the container down meanwhile
                return None

        return await self.call("read the kernel container's resource use", stats)

    async def list_images(self) -> list[dict[str, Any]]:
        return await self.call("list images", lambda api: list(api.images()))

    async def list_containers(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.call(
            "list containers", lambda api: list(api.containers(all=True, filters=filters))
        )


def _pull_failed(ref: str, reason: str) -> str:
    # Plain text: it is read in terminals and in JupyterLab's error dialogs alike.
    return (
        f"Could not pull image {ref!r}: {without_repeats(reason).strip().rstrip('.')}. Check the "
        "image name and tag ('docker images' lists the engine's own), run 'docker login "
        "REGISTRY' if the registry is private, or build or load the image onto the engine first."
    )


def _local_address(address: str) -> bool:
    """Whether ``address`` is one of this machine's own (binding to it works)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((address.split("/")[0], 0))
    except OSError:
        return False
    return True


def _gone(error: docker.errors.APIError) -> bool:
    """The container no longer exists, or the engine is removing it (409 "marked for
    removal", "removal in progress", "dead"): either way there is nothing to read."""
    if isinstance(error, docker.errors.NotFound):
        return True
    return bool(error.status_code == 409)

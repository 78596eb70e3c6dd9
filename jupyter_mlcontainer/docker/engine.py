"""The one door to the Docker engine.

Every Docker call of the package goes through :meth:`Engine.call`: it runs the blocking SDK
call on a background executor (never on the event loop) and turns SDK errors into the
package's own typed exceptions (``NotFound``, ``Conflict``, ``PortTaken``...), whose messages
say what to do. Nothing here assumes that the engine runs on this machine: it may be a remote
``DOCKER_HOST`` or a docker context.

:class:`Engine` is the transport (client, executors, errors, the engine's own info, the exit
watcher, background removals); the verbs live by area beside it: ``containers.py``,
``images.py``, ``volumes.py``, ``networks.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import docker
import docker.constants
import docker.errors
import requests.exceptions

from ..core import labels
from ..core.backend import BackendKind
from ..core.exceptions import (
    AddressTaken,
    CommandNotFound,
    Conflict,
    EngineError,
    EngineUnavailableError,
    GPUUnavailableError,
    ImageNotFoundError,
    NetworkGoneError,
    NotFound,
    PortTaken,
    without_repeats,
)
from . import containers, endpoint, leases, networks
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
#: A start refused because a host port it publishes is in use: by another container (Docker's
#: own allocator), or by a process of the host (the userland proxy, rootlesskit, Podman).
_PORT_TAKEN = ("port is already allocated", "bind: address already in use")


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
    return _typed(error.status_code, text)(msg)


def _typed(status: int | None, text: str) -> type[EngineError]:
    """The type of a refusal: what is in use (a port, an address), missing, or in the way."""
    if any(marker in text for marker in _PORT_TAKEN):
        return PortTaken
    # The address a container asks for on its network: Docker's words (capitalised, unlike a
    # host port's above), then Podman's.
    if "Address already in use" in text or (
        "requested ip address" in text and "already allocated" in text
    ):
        return AddressTaken
    if "executable file not found" in text or ("exec:" in text and "no such file" in text):
        return CommandNotFound
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    return EngineError


def _read_kind(api: docker.APIClient) -> BackendKind:
    version = api.version()
    for component in version.get("Components") or []:
        if "Podman" in str(component.get("Name")):
            number = str(component.get("Version") or version.get("Version") or "")
            # Only Podman's own API says whether it runs rootless.
            reply = api.get(f"{api.base_url}/v{number}/libpod/info")
            security = (reply.json().get("host") or {}).get("security") or {} if reply.ok else {}
            return BackendKind("Podman", number, bool(security.get("rootless")))
    options = api.info().get("SecurityOptions") or []
    rootless = any("name=rootless" in str(option) for option in options)
    return BackendKind("Docker", str(version.get("Version") or ""), rootless)


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
        self.pull_executor = ThreadPoolExecutor(
            max_workers=PULL_WORKERS, thread_name_prefix="mlc-docker-pull"
        )
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._watcher_lock = threading.Lock()
        self._info: tuple[float, dict[str, Any]] | None = None
        self._watcher: ExitWatcher | None = None
        self._pending: set[Future[None]] = set()
        #: The calls under way on the executors: id -> (what, when it began).
        self._under_way: dict[int, tuple[str, float]] = {}
        self._under_way_lock = threading.Lock()
        self._call_ids = itertools.count()
        #: The kernels' networks as this process found them (docker/networks.py).
        self.kernel_networks = networks.KernelNetworks(self)
        self._endpoint: endpoint.Endpoint | None = None
        self._kind: BackendKind | None = None

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
            with self._call(what):
                return attempt()

        def attempt() -> T:
            api = self._api()
            try:
                return fn(api, *args, **kwargs)
            # `from None`: our message carries the engine's words; the SDK's traceback
            # would only bury it.
            except docker.errors.APIError as e:
                error = _explain_api_error(e, what, self._where())
                if isinstance(error, NetworkGoneError):
                    self.kernel_networks.forget()  # looked up (made) again at the next start
                raise error from None
            except (requests.exceptions.ConnectionError, ConnectionError) as e:
                raise _engine_unavailable(self.address, e) from None

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor or self._executor, run)

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Count the call as under way while it runs (see :meth:`busy`)."""
        call_id = next(self._call_ids)
        with self._under_way_lock:
            self._under_way[call_id] = (what, time.monotonic())
        try:
            yield
        finally:
            with self._under_way_lock:
                del self._under_way[call_id]

    def busy(self) -> list[tuple[str, float]]:
        """The engine calls under way now: (what, seconds since it began), oldest first."""
        now = time.monotonic()
        with self._under_way_lock:
            running = sorted(self._under_way.values(), key=lambda call: call[1])
        return [(what, now - since) for what, since in running]

    async def settle(self, timeout: float) -> list[tuple[str, float]]:
        """Wait up to ``timeout`` seconds for the calls under way to end (at shutdown: the
        interpreter waits for the executors' threads before it exits); those still running
        then, as :meth:`busy` says. Calls cancelled by their caller still run on their thread
        until the engine answers or the client's timeout ends them."""
        deadline = time.monotonic() + timeout
        # The calls end on executor threads: a look every 50 ms, at shutdown only.
        while (running := self.busy()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return running

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

    async def kind(self) -> BackendKind:
        """Docker or Podman, rootful or rootless (cached: it does not change while it runs)."""
        if self._kind is None:
            self._kind = await self.call("read the engine's version", _read_kind)
        return self._kind

    # --- exits and background removals -------------------------------------------------

    def forget_exit(self, container_id: str) -> None:
        """The container is gone: the exit watcher (when it runs) need not remember it."""
        if self._watcher is not None:
            self._watcher.forget(container_id)

    def remove_soon(self, container_id: str) -> None:
        """Remove the container in the background; errors are logged.

        The executor finishes queued work before the interpreter exits, so a server that
        shuts down right after still removes it.
        """

        def remove(api: docker.APIClient) -> None:
            try:
                containers.remove_now(api, container_id)
            finally:
                self.forget_exit(container_id)

        def failed(error: Exception) -> None:
            log.warning("Could not remove kernel container %s: %s", container_id[:12], error)
            self.forget_exit(container_id)  # also when the engine could not be reached

        self.in_background(f"remove the kernel's container {container_id[:12]}", remove, failed)

    def in_background(
        self,
        what: str,
        fn: Callable[[docker.APIClient], None],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Run ``fn(api)`` on the engine's executor without waiting (:meth:`drain` waits);
        ``on_error`` gets what it raised. Counted as under way while it runs (:meth:`busy`)."""

        def run() -> None:
            with self._call(f"{what} (in the background)"):
                try:
                    fn(self._api())
                except Exception as e:
                    on_error(e)

        future = self._executor.submit(run)
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

"""Warm pools: ready container kernels that the next start of their kernelspec claims.

A container kernel's cold start pays for the container (network namespace, mounts) and for
the kernel's own start (Python, ipykernel). A Jupyter server keeps ``size`` ready kernels per
container kernelspec: started exactly as the next start of that kernelspec would be (same
image, resources, GPUs, user, network; the server's root directory mounted), with ids, ports
and a key of their own. A start of that kernelspec then claims one instead of starting a
container: its connection (ports, key, address) becomes the claiming kernel's, and one silent
execute request, signed with the kernel's key, moves it into the notebook's directory and
environment. A claimed kernel never returns to the pool; the pool refills in the background,
``refill_delay`` seconds later, one kernel at a time.

A pooled kernel is matched to a start by :func:`~jupyter_mlcontainer.core.plan.pool_key` (what
decides its container) and by its image's id (a tag pulled again since is not served); one
that does not match, or that died, is shut down and never served. Pooled containers carry the
server's lease like any kernel (a killed server's pool stops itself and is reaped), and the
``pooled`` label.

Pools fill once their kernelspec has been started in this server (or at start, for those in
``prefill``). A gateway keeps one pool per user and kernelspec, filled after that user's
first start, with that user's uid and name (a ready kernel of one user never serves
another). Kernelspecs whose kernels get GPUs have none unless ``gpu_kernels`` is set
(``gpus: auto`` on an engine without GPUs runs on the CPU, and is pooled). Headless
tools (nbconvert, papermill, ``jupyter mlcontainer run``) have no pool: it lives in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_client.session import Session
from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from ..core import kernelspec
from ..core.exceptions import KernelStartError

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner

#: Set on a kernel manager that fills a pool (its provisioner starts, never claims).
FILLER = "_mlc_pool_filler"
#: Seconds a claimed kernel has to answer the request that moves it into the notebook's
#: directory and environment.
CONFIGURE_TIMEOUT = 10.0


#: A pool: its kernelspec, and whose kernels it holds ("": this server's own user).
Slot = tuple[str, str]


@dataclass(frozen=True)
class Owner:
    """Whom a gateway user's pool starts its kernels as (copied from their first start)."""

    user: str
    uid: int | None
    gid: int | None


@dataclass
class PooledKernel:
    kernel_name: str
    key: str
    manager: AsyncKernelManager
    since: float

    @property
    def provisioner(self) -> MLContainerProvisioner:
        return self.manager.provisioner  # type: ignore[return-value]


class MLContainerPool(LoggingConfigurable):
    """Ready container kernels, kept by a Jupyter server (see the module's docstring)."""

    size = Int(
        1,
        help="""Ready kernels to keep per container kernelspec, once it has been started in
        this server (or at start, see ``prefill``). A kernelspec's ``pool_size`` overrides it
        (up to ``max_per_kernelspec``). 0: no warm pools.""",
    ).tag(config=True)

    max_per_kernelspec = Int(
        4, help="""The most ready kernels one kernelspec may ask for with ``pool_size``."""
    ).tag(config=True)

    max_total = Int(
        4,
        help="""The most ready kernels across all kernelspecs (each holds its container's
        memory while it waits).""",
    ).tag(config=True)

    prefill = List(
        Unicode(),
        help="""Kernelspecs whose pools fill when the server starts, before their first use
        ("*": every container kernelspec).""",
    ).tag(config=True)

    gpu_kernels = Bool(
        False,
        help="""Keep ready kernels for kernelspecs that ask for GPUs too (they hold their GPUs
        while they wait; off unless the admin says so).""",
    ).tag(config=True)

    refill_delay = Float(
        1.0,
        help="""Seconds after a claim before the pool starts its replacement, so that the
        claimed kernel's first cells do not compete with it for the CPU.""",
    ).tag(config=True)

    _current: ClassVar[MLContainerPool | None] = None

    def __init__(self, kernel_manager: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.kernel_manager = kernel_manager
        self._ready: dict[Slot, list[PooledKernel]] = {}
        self._targets: dict[Slot, int] = {}
        self._filling: dict[Slot, asyncio.Task[None]] = {}
        self._waiting: set[Slot] = set()  # fills still in their delay (safe to cancel)
        self._owners: dict[Slot, Owner] = {}
        self._discarding: set[asyncio.Task[Any]] = set()
        self._told: set[str] = set()  # kernelspecs whose reason for no pool was logged
        self._closed = False

    # --- the server's pool --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    def current(cls) -> MLContainerPool | None:
        """The pool of this process's server, if it has one."""
        return cls._current

    def install(self) -> None:
        MLContainerPool._current = self

    # --- claims -------------------------------------------------------------------------

    def target(self, kernel_name: str, provisioner: MLContainerProvisioner) -> int:
        """How many ready kernels this kernelspec gets. Whether its kernels get GPUs is what
        the start asking now resolved (``gpus: auto`` on an engine without GPUs is the CPU,
        pooled like ``none``)."""
        wanted = self.size if provisioner.pool_size is None else provisioner.pool_size
        granted = provisioner.granted_gpus
        if not self.gpu_kernels and (granted is None or granted.mode != "none"):
            return 0
        why_not = not_pooled(provisioner)
        if why_not:
            if wanted > 0 and kernel_name not in self._told:
                self._told.add(kernel_name)
                self.log.info("Warm pool: %s is not pooled: %s", kernel_name, why_not)
            return 0
        return max(0, min(wanted, self.max_per_kernelspec))

    async def claim(self, provisioner: MLContainerProvisioner, key: str) -> PooledKernel | None:
        """A ready kernel for this start, or None; the pool refills later either way."""
        if self._closed or self.kernel_manager is None:
            return None
        name = str(getattr(provisioner.parent, "kernel_name", "") or "")
        slot = (name, provisioner.user_name)
        if provisioner.user_name:  # a gateway's user: their pool's kernels are theirs
            self._owners[slot] = Owner(provisioner.user_name, provisioner.uid, provisioner.gid)
        self._targets[slot] = self.target(name, provisioner)
        ready = self._ready.get(slot, [])
        claimed = None
        while ready and claimed is None:
            entry = ready.pop(0)
            if entry.key == key and await self._still_good(entry, provisioner):
                claimed = entry
            else:
                self.log.info("Warm pool: a ready %s kernel no longer fits; replacing it", name)
                self._discard(entry)
        self._refill_soon(slot)
        return claimed

    async def _still_good(self, entry: PooledKernel, provisioner: MLContainerProvisioner) -> bool:
        pooled = entry.provisioner
        if pooled is None or await pooled.poll() is not None:
            return False
        image = await provisioner.container_backend.image(provisioner.image)
        details = pooled.image_details or {}
        if image is None:
            return False
        if not details.get("image_id"):  # its own record is not there yet: ask the engine
            state = await provisioner.container_backend.inspect(pooled.container_id or "")
            details = {"image_id": state.image_id if state else None}
        return bool(image.get("Id") == details.get("image_id"))

    # --- filling ------------------------------------------------------------------------

    def prefill_now(self, names: list[str]) -> None:
        """Fill the pools of ``names`` (at server start)."""
        for name in names:
            self._targets.setdefault((name, ""), self.size)
            self._refill_soon((name, ""), delay=0)

    def _refill_soon(self, slot: Slot, delay: float | None = None) -> None:
        if self._closed or slot in self._filling:
            return
        task = asyncio.ensure_future(
            self._fill(slot, self.refill_delay if delay is None else delay)
        )
        self._filling[slot] = task
        task.add_done_callback(lambda _: self._filling.pop(slot, None))

    def _total(self) -> int:
        return sum(len(entries) for entries in self._ready.values())

    async def _fill(self, slot: Slot, delay: float) -> None:
        name = slot[0]
        self._waiting.add(slot)
        try:
            await asyncio.sleep(delay)
        finally:
            self._waiting.discard(slot)
        ready = self._ready.setdefault(slot, [])
        while (
            not self._closed
            and len(ready) < self._targets.get(slot, 0)
            and self._total() < self.max_total
        ):
            try:
                entry = await self._start_one(slot)
            except Exception as e:  # a kernel that cannot start is the next start's to report
                self.log.warning("Warm pool: could not start a ready %s kernel: %s", name, e)
                return
            if entry is None:
                return
            if self.closed:  # the server stopped meanwhile
                await entry.manager.shutdown_kernel(now=True)
                return
            ready.append(entry)
            self.log.info(
                "Warm pool: a %s kernel is ready (container %s)",
                name,
                entry.provisioner.container_name,
            )

    async def _start_one(self, slot: Slot) -> PooledKernel | None:
        name = slot[0]
        km = AsyncKernelManager(
            parent=self.kernel_manager,
            log=self.log,
            kernel_name=name,
            connection_file=os.path.join(
                self.kernel_manager.connection_dir, f"kernel-pool-{uuid.uuid4()}.json"
            ),
        )
        setattr(km, FILLER, True)
        root = str(getattr(self.kernel_manager, "root_dir", "") or os.getcwd())
        owner = self._owners.get(slot)
        if owner is not None:  # as the gateway's kernel manager makes a user's provisioner
            km.kernel_id = str(uuid.uuid4())
            made = KernelProvisionerFactory.instance(parent=km.parent).create_provisioner_instance(
                km.kernel_id, km.kernel_spec, parent=km
            )
            made.uid, made.gid = owner.uid, owner.gid  # type: ignore[attr-defined]
            made.user_name = owner.user  # type: ignore[attr-defined]
            km.provisioner = made
        await km.start_kernel(cwd=root, env=dict(os.environ))
        provisioner = km.provisioner
        key = getattr(provisioner, "pool_key", "")
        if not key:  # not a container kernelspec after all
            await km.shutdown_kernel(now=True)
            self._targets[slot] = 0
            return None
        return PooledKernel(name, key, km, time.time())

    def _discard(self, entry: PooledKernel) -> None:
        task = asyncio.ensure_future(entry.manager.shutdown_kernel(now=True))
        self._discarding.add(task)  # awaited by stop(): a dropped task leaves its container

        def done(finished: asyncio.Task[Any]) -> None:
            self._discarding.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                self.log.warning("Warm pool: %s", finished.exception())

        task.add_done_callback(done)

    # --- the server's view ----------------------------------------------------------------

    def ready_count(self, kernel_name: str, user: str = "") -> int:
        """Ready kernels of ``kernel_name`` for ``user`` ("": this server's own)."""
        return len(self._ready.get((kernel_name, user), []))

    def in_use(self, kernel_name: str, user: str = "") -> bool:
        """Whether that pool has been asked for (a start claimed from it, or a prefill)."""
        return (kernel_name, user) in self._targets

    def describe(self) -> dict[str, Any]:
        """For the REST API: the settings and every ready kernel."""
        kernels = []
        for (name, user), entries in sorted(self._ready.items()):
            for entry in entries:
                pooled = entry.provisioner
                spec = pooled.kernel_spec.to_dict() if pooled.kernel_spec else {}
                kernels.append(
                    {
                        "kernelspec": name,
                        "container_id": pooled.container_id,
                        "container_name": pooled.container_name,
                        "image": pooled.image,
                        "source": kernelspec.recorded(spec).get("source") or None,
                        "ready_since": entry.since,
                        "user": user or None,
                    }
                )
        return {
            "size": self.size,
            "max_total": self.max_total,
            "gpu_kernels": self.gpu_kernels,
            "kernels": kernels,
        }

    async def stop(self) -> None:
        """Shut every ready kernel down (server stop); idempotent."""
        self._closed = True
        if MLContainerPool._current is self:
            MLContainerPool._current = None
        # A fill still waiting is cancelled; one that is starting a kernel finishes and shuts
        # it down (cancelling a start midway would leave the engine creating its container).
        for slot, task in list(self._filling.items()):
            if slot in self._waiting:
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._filling.values(), *self._discarding, return_exceptions=True)
        entries = [entry for ready in self._ready.values() for entry in ready]
        self._ready.clear()
        await asyncio.gather(
            *(entry.manager.shutdown_kernel(now=True) for entry in entries),
            return_exceptions=True,
        )


def release(manager: AsyncKernelManager) -> None:
    """Let go of a claimed pooled kernel's manager without touching its kernel (now the
    claiming manager's): its control socket and connection file only."""
    manager._close_control_socket()
    manager.cleanup_connection_file()


async def move_in(info: dict[str, Any], cwd: str, env: dict[str, str | None]) -> None:
    """Move a claimed kernel into the notebook's directory and environment: one silent
    execute request (no history, no execution count), signed with the kernel's key."""
    setting = {k: v for k, v in env.items() if v is not None}
    unsetting = [k for k, v in env.items() if v is None]
    code = (
        f"(lambda os: (os.chdir({json.dumps(cwd)}), os.environ.update({json.dumps(setting)}), "
        f"[os.environ.pop(k, None) for k in {json.dumps(unsetting)}]))(__import__('os'))"
    )
    if setting.get("JPY_SESSION_NAME"):  # what ipykernel sets at its start
        code += (
            f"\nget_ipython().user_ns['__session__'] = {json.dumps(setting['JPY_SESSION_NAME'])}"
        )
    key = info["key"]
    session = Session(
        key=key if isinstance(key, bytes) else str(key).encode(),
        signature_scheme=info.get("signature_scheme", "hmac-sha256"),
    )
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    public, secret = info.get("curve_publickey"), info.get("curve_secretkey")
    if public and secret:  # the kernel's keypair doubles as the client's (jupyter_client)
        public_key = public if isinstance(public, bytes) else public.encode()
        sock.curve_secretkey = secret if isinstance(secret, bytes) else secret.encode()
        sock.curve_publickey = public_key
        sock.curve_serverkey = public_key  # a socket's keys can be set, never read
    transport, ip, port = info.get("transport", "tcp"), info["ip"], info["shell_port"]
    sock.connect(f"tcp://{ip}:{port}" if transport == "tcp" else f"{transport}://{ip}-{port}")
    try:
        request = session.msg(
            "execute_request",
            {
                "code": code,
                "silent": True,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        await sock.send_multipart(session.serialize(request))
        if not await sock.poll(timeout=int(CONFIGURE_TIMEOUT * 1000)):
            msg = f"The ready kernel did not answer within {CONFIGURE_TIMEOUT:g} s."
            raise KernelStartError(msg)
        _, frames = session.feed_identities(await sock.recv_multipart())
        reply = session.deserialize(frames)
        if reply["content"].get("status") != "ok":
            msg = f"The ready kernel could not move to {cwd}: {reply['content'].get('evalue')}"
            raise KernelStartError(msg)
    finally:
        sock.close(linger=0)


def not_pooled(provisioner: MLContainerProvisioner) -> str:
    """Why this kernelspec's kernels are never started ahead ("" where they may be)."""
    backend = provisioner.container_backend
    if provisioner.network == "none":
        return "its kernels talk through ipc sockets in a folder of each kernel's own"
    if backend.capabilities.scheduled:
        return (
            "on a scheduler (Docker Swarm) a ready kernel would hold a node's memory and GPUs "
            "before anyone asks, and be placed before the request says what it needs"
        )
    if backend.remote:
        return "a kernel on a remote engine gets CurveZMQ keys of its own, made at its start"
    return ""

"""The backend seam: every verb a kernel needs from where its containers run.

The provisioner, the warm pool, the server and the CLI speak only to a :class:`Backend`. The
Docker engine (local, remote, a docker context, Podman's Docker API) is the first
implementation (``jupyter_mlcontainer/docker/backend.py``); Docker Swarm is designed against the
same verbs (see ``docs/backends.md``) and Kubernetes on paper (``docs/kubernetes.md``).

What a backend returns is typed here (:class:`ContainerState`, :class:`KernelNetwork`, ...);
what goes wrong is one of the typed errors of ``core/exceptions.py`` (``NotFound``,
``Conflict``, ``PortTaken``, ``AddressTaken``, ``Unavailable``, ``Unsupported``...), never a
message to match. The container plan a backend creates from (``core/plan.py``) is written in the
Docker Engine API's vocabulary (a create body and its host config): the lingua franca that a
Swarm task template and a Pod spec are translated from.

Backends are found by name through the ``jupyter_mlcontainer.backends`` entry point group
(``docker`` is built in), so a new one is a package of its own: see CONTRIBUTING.md.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._version import __version__
from .exceptions import ConfigurationError
from .plan import home_volume_name

if TYPE_CHECKING:
    from .gpus import GPUSupport
    from .ledger import GPUDevice, GPUHolder
    from .plan import ContainerPlan
    from .probe import ImageProbe

#: Container states that hold nothing any more (no GPU, no place in a quota).
ENDED_STATES = frozenset({"exited", "dead"})
#: The entry point group backends register in; ``docker`` is also known without it.
ENTRY_POINT_GROUP = "jupyter_mlcontainer.backends"
BUILT_IN = {
    "docker": "jupyter_mlcontainer.docker.backend:DockerBackend",
    "swarm": "jupyter_mlcontainer.swarm.backend:SwarmBackend",
}

#: A pull's progress: called with each of the engine's progress events.
OnEvent = Callable[[dict[str, Any]], None]
#: Where a backend logs what it does for a kernel (a kernel's logger may be an adapter).
Log = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class BackendKind:
    """Which product answers, and how it runs (for messages and the few rules that differ)."""

    product: str  # "Docker", "Podman", "Docker Swarm"
    version: str
    rootless: bool

    @property
    def podman(self) -> bool:
        return self.product == "Podman"

    def describe(self) -> str:
        return f"{self.product} {self.version}, {'rootless' if self.rootless else 'rootful'}"


@dataclass(frozen=True)
class Capabilities:
    """What differs between backends, declared instead of discovered by failing."""

    #: Signals reach a container's init process (Docker: kill; a Swarm task: no such verb, so
    #: interrupts and restarts go through the in-container supervisor).
    signals: bool = True
    #: The backend decides where a container runs (a scheduler); else the engine is the place.
    scheduled: bool = False
    #: GPUs are asked for as device requests (Docker) or as generic resources (Swarm).
    gpu_requests: str = "device"


@dataclass(frozen=True)
class ContainerState:
    """One container as the backend sees it now."""

    id: str
    name: str
    #: The image as the container was created from it (a reference), and its id.
    image: str
    image_id: str
    running: bool
    #: "created", "running", "exited", "dead"...: the backend's own word.
    status: str
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    #: When it was created (ISO 8601 with nanoseconds: sortable); "" from a list.
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    #: GPUs the container was given, as the backend records them (for the REST API).
    device_requests: Sequence[Mapping[str, Any]] = ()
    memory_limit: int = 0
    #: The backend's own sentence about it, for people ("Up 5 minutes").
    description: str = ""
    #: The node it runs on where the backend schedules (a Swarm node's hostname); "" else.
    node: str = ""


@dataclass(frozen=True)
class NodeInfo:
    """One machine of a scheduled backend (a Swarm node), as ``doctor`` lists them."""

    #: Its hostname (a Swarm node's name), and its id.
    name: str
    id: str = ""
    #: "manager" or "worker".
    role: str = ""
    #: The backend's words: "ready", "down"...; "active", "pause", "drain".
    state: str = ""
    availability: str = ""
    memory_total: int = 0
    #: Memory that tasks running there reserved (what the scheduler counts as taken).
    memory_reserved: int = 0
    #: GPUs the node advertises (``NVIDIA-GPU`` generic resources): their ids, or as many
    #: empty strings as a count declares.
    gpus: tuple[str, ...] = ()
    #: GPUs held by running kernels of ours there, and by any running task there.
    gpus_ours: tuple[str, ...] = ()
    gpus_held: tuple[str, ...] = ()

    @property
    def memory_free(self) -> int:
        return max(self.memory_total - self.memory_reserved, 0)

    @property
    def schedulable(self) -> bool:
        """Whether the scheduler places new tasks there."""
        return self.state == "ready" and self.availability in ("", "active")


@dataclass(frozen=True)
class KernelNetwork:
    """A network kernels join: its id (what containers name), name and fixed subnet (None
    when it has none: kernels then get their address from the backend)."""

    id: str
    name: str
    subnet: str | None


def random_address(subnet: str) -> str:
    """A random host address of ``subnet`` past its gateway (engines pick from the bottom, so
    a kernel's address stays free while it restarts)."""
    network = ipaddress.ip_network(subnet)
    return str(network.network_address + random.randrange(2, network.num_addresses - 1))  # noqa: S311


@dataclass(frozen=True)
class ProjectVolume:
    """One of the project's volumes: a user's HOME, or an injected runtime."""

    name: str
    kind: str  # "home" or "runtime"
    #: home: the user's uid and the image the volume was made for; runtime: "".
    uid: str = ""
    image: str = ""
    version: str = ""
    size: int | None = None

    def needed(self, families: set[str]) -> bool:
        """A HOME volume of an image family some kernelspec uses; a runtime of this version."""
        if self.kind == "home":
            return family_of(self.name) in families
        return self.version == __version__


def family_of(volume_name: str) -> str:
    """``pytorch-pytorch`` of ``mlc-home-1000-pytorch-pytorch``."""
    parts = volume_name.split("-", 3)
    return parts[3] if len(parts) == 4 else ""


def families(images: Iterable[str]) -> set[str]:
    """The image families of these references (as their HOME volumes name them)."""
    return {family_of(home_volume_name(0, image)) for image in images if image}


class ExitEvents(Protocol):
    """Containers' exits as the backend reports them, without asking per container."""

    @property
    def healthy(self) -> bool:
        """True while exits are seen as they happen."""

    def exit_code(self, container_id: str) -> int | None:
        """The exit code of a container seen to exit, else None."""


@runtime_checkable
class Backend(Protocol):
    """Where kernels' containers run. Every method that talks to the backend is async and runs
    off the event loop; errors are the typed ones of ``core/exceptions.py``."""

    capabilities: Capabilities

    # --- the backend itself ------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where the backend is, for messages (``unix:///var/run/docker.sock``, ``ssh://…``)."""

    @property
    def remote(self) -> bool:
        """Whether the containers run on another machine (ports are published there)."""

    @property
    def encrypted(self) -> bool:
        """Whether the API connection to a remote backend is encrypted (TLS, ssh)."""

    def describe_client(self) -> str:
        """Where this process's client found the backend, and from what (for ``doctor``)."""

    async def kind(self) -> BackendKind: ...

    async def version(self) -> dict[str, Any]: ...

    async def info(self, max_age: float = 0) -> dict[str, Any]: ...

    async def memory_total(self, max_age: float = 60) -> int:
        """Bytes of memory where kernels run (0 when unknown)."""

    async def gpu_support(self, max_age: float = 60, try_image: str = "") -> GPUSupport:
        """What the backend can do for GPUs. With ``try_image``, a backend that says nothing
        of GPUs is asked once to start a container with a GPU request (the NVIDIA hook alone,
        without a configured runtime, runs such containers): the answer is cached."""

    async def gpu_inventory(
        self, command: str, probe_image: str, max_age: float = 60, mig: bool = False
    ) -> tuple[GPUDevice, ...]:
        """The GPUs where kernels run, for the GPU ledger (core/ledger.py): ``command``
        (nvidia-smi) asked :data:`~.ledger.INVENTORY_QUERY` (``mig``: its MIG instances,
        :data:`~.ledger.MIG_QUERY`), here for a local backend, in a probe container from
        ``probe_image`` for a remote one; () when there are none."""

    async def gpu_holders(self) -> list[GPUHolder]:
        """The live containers of ours that hold GPUs (the ledger's state)."""

    # --- images -------------------------------------------------------------------------

    async def image(self, ref: str) -> dict[str, Any] | None:
        """The image's OCI config and identity (``Id``, ``RepoDigests``, ``Config.Labels``), or
        None when it is not there."""

    async def images(self) -> list[dict[str, Any]]: ...

    async def pull(self, ref: str, log: Log, on_event: OnEvent | None = None) -> None:
        """Pull ``ref``; ``ImagePullError`` with what to do when it cannot."""

    async def obtain_image(
        self, ref: str, policy: str, log: Log, on_event: OnEvent | None = None
    ) -> dict[str, Any]:
        """The image, pulled when ``policy`` ("missing", "always", "never") says so."""

    async def probe_image(self, ref: str) -> ImageProbe:
        """Python, ipykernel, platform and libc of the image (a short-lived container)."""

    async def image_packages(self, ref: str) -> dict[str, str]:
        """Every Python distribution the image has, ``{name: version}``."""

    # --- derived images (``extend``) ----------------------------------------------------

    async def derive_image(
        self,
        parent: str,
        script: str,
        *,
        archive: tuple[str, Path],
        labels: Mapping[str, str],
        network: bool,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[str | None, str]:
        """Run ``sh -c script`` as root in a container of ``parent`` with ``archive`` (where,
        and a tar file here, streamed: it may hold large wheels) unpacked into it, and keep
        the result as an image labelled ``labels``: (its id, or None when the script failed;
        the script's output)."""

    async def find_image(self, label: str, value: str) -> dict[str, Any] | None:
        """The newest image labelled ``label=value`` (None: none)."""

    async def push_image(self, image_id: str, repository: str, tag: str) -> str:
        """Tag ``image_id`` as ``repository:tag`` and push it; the registry's digest."""

    async def remove_image(self, ref: str) -> None:
        """Remove a reference (a tag, or an untagged image); gone already is fine."""

    async def changes(self, container_id: str) -> list[dict[str, Any]]:
        """The container's file changes against its image (``Path``, ``Kind``: 0 changed,
        1 added, 2 deleted); [] when it is gone."""

    # --- place and create, files in, start ----------------------------------------------

    async def create(self, plan: ContainerPlan) -> str:
        """Place and create the kernel's container; its id. ``NotFound`` when the image is
        missing; ``NetworkGone`` when the kernels' network was removed meanwhile."""

    async def put_files(self, container_id: str, path: str, tar: bytes) -> None: ...

    async def start(self, container_id: str) -> None:
        """Start it; ``PortTaken`` / ``AddressTaken`` when what the plan chose is in use."""

    # --- a running container ------------------------------------------------------------

    async def inspect(self, container_id: str) -> ContainerState | None:
        """Its state now, None when it is gone."""

    async def signal(self, container_id: str, signal: str) -> bool:
        """Send ``signal`` (``SIGINT``…) to its init process; False when it was not running.
        ``Unsupported`` where :attr:`Capabilities.signals` is False."""

    async def remove(self, container_id: str) -> None:
        """Stop and remove it; idempotent."""

    def remove_soon(self, container_id: str) -> None:
        """Remove it in the background (a server's shutdown does not wait)."""

    async def drain(self) -> None:
        """Wait for background removals."""

    async def settle(self, timeout: float) -> list[tuple[str, float]]:
        """At shutdown: wait up to ``timeout`` seconds for the backend's calls under way to
        end (a process waits for them before it exits); those still running then, as (what,
        seconds since it began)."""

    async def logs(self, container_id: str, tail: int = 20) -> str: ...

    async def stats(self, container_id: str) -> dict[str, Any] | None: ...

    async def containers(self, label_filter: Mapping[str, Any]) -> list[ContainerState]:
        """Containers whose labels match, in one call however many: what a list gives
        (id, name, image, status, description, labels; no exit details)."""

    def exits(self) -> ExitEvents:
        """The exit event stream (subscribed on first use)."""

    async def stopped_at(self, state: ContainerState) -> str:
        """When the backend itself stopped, taking this container with it ("08:44:23"), else
        ""."""

    async def nodes(self) -> list[NodeInfo]:
        """The machines a scheduler places kernels on, with their memory and GPUs; [] where
        the backend is one engine (it is the place)."""

    # --- address and ports --------------------------------------------------------------

    async def kernel_network(self, name: str) -> KernelNetwork:
        """The network kernels join, made on first use (one per backend)."""

    async def routable(self, network: str) -> bool:
        """Whether this process reaches containers' own addresses on ``network``."""

    def kernel_host(self, container_id: str = "") -> str:
        """Where this process reaches a remote backend's published ports ("" when local). A
        scheduled backend knows a container's node once it started (``container_id``); before
        that, it names its own host."""

    async def own_path_map(self) -> dict[str, str]:
        """A server running in a container of this backend: its mounts, container path → the
        host path (so that kernels mount what the server sees)."""

    # --- volumes and the injected runtime -----------------------------------------------

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        """Make the volume unless it exists; whether it was made now."""

    async def project_volumes(self, sizes: bool = False) -> list[ProjectVolume]: ...

    async def home_packages(self, volume: ProjectVolume) -> list[str]:
        """``name==version`` of the packages pip installed into a HOME volume's ``~/.local``
        (kernels do not import them: their PYTHONUSERBASE is in the container)."""

    async def prune_volumes(
        self, needed_images: Iterable[str], everything: bool = False, dry_run: bool = False
    ) -> tuple[list[str], list[str]]:
        """Remove the volumes no kernelspec of ``needed_images`` needs (``everything``: all)
        that no container uses: (removed, kept because in use)."""

    async def give_home_to_user(
        self, volume: str, uid: int, gid: int, image: str, python: str
    ) -> None:
        """Make an old HOME volume of ours writable by its user."""

    def runtime_volume(self, probe: ImageProbe, packages: Sequence[str]) -> str:
        """The name of the injected runtime for this image's platform and these packages."""

    async def ensure_runtime(
        self,
        image: str,
        probe: ImageProbe,
        packages: Sequence[str],
        wheelhouse: str | None,
        log: Log,
    ) -> tuple[str, str]:
        """The sealed runtime volume for this image (built on first use): (volume, digest)."""

    async def discard_runtime(self, volume: str) -> None: ...

    # --- housekeeping -------------------------------------------------------------------

    async def reap_orphans(self, log: logging.Logger) -> list[str]:
        """Remove kernels whose server's lease expired; their names."""

    async def reap_instance(self, log: logging.Logger) -> list[str]:
        """Remove this process's kernels (at shutdown); their names."""

    async def settle_networks(self, repair: bool) -> list[tuple[str, list[str]]]:
        """Kernels' networks made twice: (name, containers still on a copy)."""


def connect(address: str | None = None, kind: str = "docker") -> Backend:
    """The backend ``kind`` at ``address`` (None: its own default), shared per process.

    A backend is a class with ``for_url(address)`` (shared instances) and ``known()``.
    """
    factory = _factory(kind)
    backend: Backend = factory.for_url(address or None)
    return backend


def missing_verbs(cls: type) -> list[str]:
    """The verbs of :class:`Backend` that ``cls`` lacks. Looked up on the class, never on an
    instance: a property such as ``remote`` would ask the backend (``isinstance`` with a
    runtime-checkable protocol does, before Python 3.12)."""
    verbs = [name for name in dir(Backend) if not name.startswith("_")]
    return [name for name in verbs if not hasattr(cls, name)]


def known() -> list[Backend]:
    """Every backend this process has connected to (for housekeeping at shutdown)."""
    found: list[Backend] = []
    for name in available():
        found.extend(_factory(name).known())
    return found


def available() -> list[str]:
    """The backends' names: built in, and registered by installed packages."""
    return sorted({*BUILT_IN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


@functools.cache
def _factory(kind: str) -> Any:
    """The backend class named ``kind``, checked once per process (entry points are scanned
    once: ``connect`` runs on every poll of every kernel)."""
    found = next(
        (ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind), None
    )
    if found is None and kind in BUILT_IN:
        module, _, name = BUILT_IN[kind].partition(":")
        found = getattr(importlib.import_module(module), name)
    if found is None:
        msg = f"No backend {kind!r}: the installed ones are {', '.join(available())}."
        raise ConfigurationError(msg)
    missing = missing_verbs(found) + [m for m in ("for_url", "known") if not hasattr(found, m)]
    if missing:  # a plugin that lost a verb
        msg = f"The backend {kind!r} ({found!r}) lacks {', '.join(missing)} (see Backend)."
        raise ConfigurationError(msg)
    return found

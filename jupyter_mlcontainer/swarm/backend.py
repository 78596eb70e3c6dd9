"""Docker Swarm as a :class:`~jupyter_mlcontainer.core.backend.Backend`: each kernel is a
service of one task, placed by the swarm's scheduler (docs/backends.md, the Swarm column).

The backend is reached at a manager's API address. What is the manager's own (images and
pulls, image probes, derived images, the engine's info and version) is :class:`DockerBackend`'s,
on the manager's :class:`~jupyter_mlcontainer.docker.engine.Engine`; the container verbs are
services (``swarm/services.py``), translated from the container plan by ``swarm/spec.py`` and
read back by ``swarm/tasks.py``. Every call runs on the manager engine's executor, off the event
loop, with its errors typed (``Engine.call``).

Not on a swarm yet (``Unsupported``, each saying what to do): signals (the Swarm API has no
such verb: interrupts and stops go through the kernel's in-container supervisor), persistent
HOME volumes and the injected runtime (volumes are node-local), and a server running in a
container of the swarm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from ..core import labels
from ..core.backend import (
    Backend,
    BackendKind,
    Capabilities,
    ContainerState,
    KernelNetwork,
    Log,
    NodeInfo,
)
from ..core.exceptions import EngineError, EngineUnavailableError, Unsupported
from ..core.gpus import GPUSupport
from ..core.ledger import GPUDevice, GPUHolder
from ..core.plan import ContainerPlan
from ..core.probe import ImageProbe
from ..docker import endpoint, leases
from ..docker.backend import DockerBackend
from ..docker.engine import Engine
from . import services
from .spec import GPU_KIND, node_image, service_spec
from .tasks import node_info, task_state

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds ``start`` waits for the task to run: the node may pull the image first.
START_TIMEOUT = 300.0
#: Seconds a task may stay ``pending`` with "no suitable node" before the start gives up (the
#: scheduler decides at once; a kernel removed a moment earlier may still free its node).
PENDING_PATIENCE = 3.0
#: Seconds between two looks at a starting task.
POLL_INTERVAL = 0.5


class TaskExits:
    """Exits as ``inspect`` saw them. Swarm has no task events (docs/backends.md), so nothing
    is seen as it happens (``healthy`` is False): the provisioner asks ``inspect``."""

    healthy = False

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def exit_code(self, container_id: str) -> int | None:
        return self._codes.get(container_id)

    def saw(self, state: ContainerState) -> None:
        if state.status in ("exited", "dead"):
            self._codes[state.id] = state.exit_code

    def forget(self, container_id: str) -> None:
        self._codes.pop(container_id, None)


class SwarmBackend(DockerBackend):
    """Kernels as services on the swarm whose manager's API is at the address given."""

    capabilities = Capabilities(signals=False, scheduled=True, gpu_requests="generic")
    #: The managers' engines this process has used as swarms (for ``known``).
    #: Per manager engine: where each service's task runs (its node's address), and the exits
    #: seen (a backend is a view of its engine, as DockerBackend is).
    _hosts: ClassVar[dict[Engine, dict[str, str]]] = {}
    _exits: ClassVar[dict[Engine, TaskExits]] = {}

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.hosts = self._hosts.setdefault(engine, {})
        self.task_exits = self._exits.setdefault(engine, TaskExits())

    @classmethod
    def for_url(cls, address: str | None = None) -> SwarmBackend:
        return cls(Engine.for_url(address or None))

    @classmethod
    def known(cls) -> list[SwarmBackend]:  # type: ignore[override]  # (a list is invariant)
        """The swarms this process used (after a fork: none, as for engines)."""
        return [cls(engine) for engine in Engine.known() if engine in cls._hosts]

    def __hash__(self) -> int:
        return hash((SwarmBackend, self.engine))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SwarmBackend) and other.engine is self.engine

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(api, *args)`` on the manager, off the event loop, its errors typed."""
        return await self.engine.call(what, fn, *args)

    # --- the backend itself ------------------------------------------------------------

    @property
    def remote(self) -> bool:
        return True  # a task may land on any node

    def describe_client(self) -> str:
        return f"the swarm manager at {super().describe_client()}"

    async def kind(self) -> BackendKind:
        version = await self.engine.version()
        return BackendKind("Docker Swarm", str(version.get("Version") or ""), rootless=False)

    async def _check_manager(self) -> None:
        """A worker, or a swarm without a leader, cannot create services."""
        info = await self.engine.info(max_age=60)
        swarm = info.get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            state = swarm.get("LocalNodeState") or "inactive"
            msg = (
                f"The Docker engine at {self.address} is not a swarm manager (swarm state: "
                f"{state}), so it cannot run kernels as services. Point docker_host at a "
                'manager of the swarm, or set backend to "docker".'
            )
            raise EngineUnavailableError(msg)

    async def _nodes(self) -> list[dict[str, Any]]:
        """The ready, active nodes."""
        nodes = await self._call("list the swarm's nodes", lambda api: api.nodes())
        return [
            dict(n)
            for n in nodes
            if (n.get("Status") or {}).get("State") == "ready"
            and (n.get("Spec") or {}).get("Availability", "active") == "active"
        ]

    async def nodes(self) -> list[NodeInfo]:
        """Every node the manager knows (ready or not), with what running tasks reserved and
        hold there (two calls: ``GET /nodes``, ``GET /tasks`` of desired state running)."""

        def read(api: Any) -> list[NodeInfo]:
            tasks = api.tasks(filters={"desired-state": "running"})
            return [node_info(n, tasks) for n in api.nodes()]

        found = await self._call("list the swarm's nodes and their tasks", read)
        return sorted(found, key=lambda n: (n.role != "manager", n.name))

    async def memory_total(self, max_age: float = 60) -> int:
        """The most memory one kernel can get: the largest node's."""
        sizes = [
            int(((n.get("Description") or {}).get("Resources") or {}).get("MemoryBytes") or 0)
            for n in await self._nodes()
        ]
        return max(sizes, default=0)

    async def gpu_support(self, max_age: float = 60, try_image: str = "") -> GPUSupport:
        """GPUs as the nodes declare them (``NVIDIA-GPU`` generic resources); whether a node's
        runtime honours them is not visible from here."""
        for node in await self._nodes():
            resources = (node.get("Description") or {}).get("Resources") or {}
            for resource in resources.get("GenericResources") or []:
                spec = resource.get("NamedResourceSpec") or resource.get("DiscreteResourceSpec")
                if (spec or {}).get("Kind") == GPU_KIND:
                    return GPUSupport(device_requests=True)
        return GPUSupport()

    async def gpu_inventory(
        self, command: str, probe_image: str, max_age: float = 60, mig: bool = False
    ) -> tuple[GPUDevice, ...]:
        return ()  # the scheduler hands out GPUs: no ledger here

    async def gpu_holders(self) -> list[GPUHolder]:
        return []

    # --- place and create, files in, start ----------------------------------------------

    async def create(self, plan: ContainerPlan) -> str:
        await self._check_manager()
        version = await self.engine.version()
        reference = str(plan.create_args["image"])
        spec = service_spec(
            plan,
            api_version=str(version.get("ApiVersion") or "1.41"),
            image=node_image(reference, await self.image(reference)),
        )

        def made(api: Any) -> str:
            leases.hold()  # before anything exists that a crash could leave behind
            return services.create(api, spec)

        return str(await self._call(f"create the kernel's service {plan.name}", made))

    async def put_files(self, container_id: str, path: str, tar: bytes) -> None:
        await self._call(
            f"give the kernel's files in {path} to its service as secrets",
            services.add_files,
            container_id,
            path,
            tar,
        )

    async def start(self, container_id: str) -> None:
        """One replica; wait (bounded) until its task runs, or raise why it will not."""
        await self._call("start the kernel's service", services.scale, container_id, 1)
        deadline = time.monotonic() + START_TIMEOUT
        pending_since: float | None = None
        while True:
            tasks = await self._call("read the kernel's task", services.service_tasks, container_id)
            task = services.newest(tasks)
            state = str(((task or {}).get("Status") or {}).get("State") or "")
            now = time.monotonic()
            pending_since = (pending_since or now) if state == "pending" else None
            outcome = services.task_outcome(task, now - (pending_since or now), PENDING_PATIENCE)
            if outcome == services.GO_ON and task is not None:
                await self._learn_host(container_id, task)
                return
            if now > deadline:
                msg = (
                    f"The kernel's task did not run within {START_TIMEOUT:.0f} s (it is "
                    f"{state or 'not made yet'}): its node may still be pulling the image."
                )
                raise EngineError(msg)
            await asyncio.sleep(POLL_INTERVAL)

    async def _learn_host(self, service_id: str, task: Mapping[str, Any]) -> dict[str, Any] | None:
        node = await self._call(
            "read the kernel's node", services.inspect_node, str(task.get("NodeID") or "")
        )
        address = node_address(node) if node is not None else ""
        if address:
            self.hosts[service_id] = address
        elif node is not None and service_id not in self.hosts:
            self.hosts[service_id] = endpoint.kernel_host(self.engine.endpoint)
        return node

    # --- a running container ------------------------------------------------------------

    async def inspect(self, container_id: str) -> ContainerState | None:
        service = await self._call(
            "inspect the kernel's service", services.inspect_service, container_id
        )
        if service is None:
            return None
        tasks = await self._call("read the kernel's task", services.service_tasks, container_id)
        task = services.newest(tasks)
        if task is None:  # not started yet (no replica)
            return _not_started(service)
        node = await self._learn_host(container_id, task) if task.get("NodeID") else None
        state = task_state(task, node, service)
        self.task_exits.saw(state)
        return state

    async def signal(self, container_id: str, signal: str) -> bool:
        msg = (
            f"Docker Swarm cannot send {signal} to a kernel's task (the Swarm API has no signal "
            "verb): interrupts and stops go through the kernel's in-container supervisor "
            "(restart_in_container, with a lease), or set the kernelspec's interrupt_mode to "
            '"message".'
        )
        raise Unsupported(msg)

    async def remove(self, container_id: str) -> None:
        await self._call("remove the kernel's service", services.remove, container_id)
        self._forget(container_id)

    def _forget(self, container_id: str) -> None:
        self.hosts.pop(container_id, None)
        self.task_exits.forget(container_id)

    def remove_soon(self, container_id: str) -> None:
        def remove(api: Any) -> None:
            try:
                services.remove(api, container_id)
            finally:
                self._forget(container_id)

        self.engine.in_background(
            f"remove the kernel's service {container_id[:12]}",
            remove,
            on_error=lambda e: log.warning(
                "Could not remove kernel service %s: %s", container_id[:12], e
            ),
        )

    async def logs(self, container_id: str, tail: int = 20) -> str:
        return str(await self._call("read the kernel's log", services.logs, container_id, tail))

    async def stats(self, container_id: str) -> dict[str, Any] | None:
        return None  # not in the Swarm API (only the node's own engine knows)

    async def changes(self, container_id: str) -> list[dict[str, Any]]:
        return []  # the container's file changes are on its node's engine only

    async def containers(self, label_filter: Mapping[str, Any]) -> list[ContainerState]:
        """Our services whose labels match, each as its newest task says (three calls)."""

        def listed(api: Any) -> list[ContainerState]:
            found = [dict(s) for s in api.services(filters=dict(label_filter))]
            if not found:
                return []
            tasks = api.tasks(filters={"service": [s["ID"] for s in found]})
            nodes = {n["ID"]: dict(n) for n in api.nodes()}
            states = []
            for service in found:
                task = services.newest(t for t in tasks if t.get("ServiceID") == service["ID"])
                if task is None:
                    states.append(_not_started(service))
                else:
                    node = nodes.get(str(task.get("NodeID") or ""))
                    states.append(task_state(task, node, service))
            return states

        return list(await self._call("list the kernels' services", listed))

    def exits(self) -> TaskExits:
        return self.task_exits

    async def stopped_at(self, state: ContainerState) -> str:
        """ "": the manager never stops a kernel by itself. A kernel whose node left the swarm
        has that as its error ("node NAME left the swarm", swarm/tasks.py), which says more
        than an engine's restart would (its node's engine may well still run)."""
        return ""

    # --- address and ports --------------------------------------------------------------

    async def kernel_network(self, name: str) -> KernelNetwork:
        """No network of ours yet: each task joins its node's default bridge, and its ports
        are published in host mode on that node (CurveZMQ-encrypted). The design's encrypted
        overlay is a later step (docs/backends.md)."""
        return KernelNetwork(id="", name=name, subnet=None)

    async def routable(self, network: str) -> bool:
        return False

    def kernel_host(self, container_id: str = "") -> str:
        """The address of the node the kernel's task runs on (known once it started); before
        that, and for other callers, the manager's host."""
        return self.hosts.get(container_id) or endpoint.kernel_host(self.engine.endpoint)

    async def own_path_map(self) -> dict[str, str]:
        return {}  # a server in a container of the swarm: not yet

    # --- volumes and the injected runtime -----------------------------------------------

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        msg = (
            f"Docker Swarm cannot keep a persistent HOME ({name}) yet: volumes are node-local, "
            "and a kernel may land on any node. Set persistent_home to false in the "
            "kernelspec's config."
        )
        raise Unsupported(msg)

    async def give_home_to_user(
        self, volume: str, uid: int, gid: int, image: str, python: str
    ) -> None:
        msg = f"Docker Swarm cannot give the volume {volume} to its user (volumes are per node)."
        raise Unsupported(msg)

    async def ensure_runtime(
        self,
        image: str,
        probe: ImageProbe,
        packages: Sequence[str],
        wheelhouse: str | None,
        log: Log,
    ) -> tuple[str, str]:
        msg = (
            f"Docker Swarm cannot inject a runtime into {image} yet (its volume would be needed "
            "on every node). Use an image that has ipykernel, or set inject_runtime to never."
        )
        raise Unsupported(msg)

    async def discard_runtime(self, volume: str) -> None:
        msg = "Docker Swarm has no injected runtime to discard."
        raise Unsupported(msg)

    # --- housekeeping -------------------------------------------------------------------

    async def _our_services(self, **extra: str) -> list[dict[str, Any]]:
        wanted = labels.managed_filter(**extra)
        return [
            dict(s)
            for s in await self._call(
                "list the kernels' services", lambda api: api.services(filters=wanted)
            )
        ]

    async def _remove_all(self, found: list[dict[str, Any]]) -> list[str]:
        for service in found:
            await self.remove(str(service["ID"]))
        return [str(s["Spec"]["Name"]) for s in found]

    async def reap_orphans(self, log: logging.Logger) -> list[str]:
        """Services of processes whose lease in our runtime dir expired (as for containers)."""
        by_instance: dict[str, list[dict[str, Any]]] = {}
        for service in await self._our_services():
            instance = (service["Spec"].get("Labels") or {}).get(labels.SERVER_INSTANCE)
            if instance and instance != labels.server_instance_id():
                by_instance.setdefault(instance, []).append(service)
        removed = []
        for instance, theirs in by_instance.items():
            if leases.expired(instance):
                removed += await self._remove_all(theirs)
                leases.release(instance)
        if removed:
            log.info("Removed %d orphaned kernel service(s): %s", len(removed), ", ".join(removed))
        return removed

    async def reap_instance(self, log: logging.Logger) -> list[str]:
        await self.engine.drain()
        found = await self._our_services(**{labels.SERVER_INSTANCE: labels.server_instance_id()})
        names = await self._remove_all(found)
        if names:
            log.info(
                "Removed %d kernel service(s) left at shutdown: %s", len(names), ", ".join(names)
            )
        return names

    async def settle_networks(self, repair: bool) -> list[tuple[str, list[str]]]:
        return []  # managers refuse a second swarm network of one name


def node_address(node: Mapping[str, Any]) -> str:
    """Where a node publishes its tasks' host-mode ports: its ``Status.Addr``; a manager may
    report ``0.0.0.0`` there, and its swarm address in ``ManagerStatus.Addr`` (host:port)."""
    address = str((node.get("Status") or {}).get("Addr") or "")
    if address in ("", "0.0.0.0"):  # noqa: S104 (what a manager may report)
        manager = str((node.get("ManagerStatus") or {}).get("Addr") or "")
        address = manager.rpartition(":")[0].strip("[]") if ":" in manager else manager
    return "" if address == "0.0.0.0" else address  # noqa: S104


def _not_started(service: Mapping[str, Any]) -> ContainerState:
    spec = service.get("Spec") or {}
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return ContainerState(
        id=str(service.get("ID") or ""),
        name=str(spec.get("Name") or ""),
        image=str(container.get("Image") or ""),
        image_id="",
        running=False,
        status="created",
        created=str(service.get("CreatedAt") or ""),
        labels=dict(spec.get("Labels") or {}),
        description="no task yet",
    )


def _conforms(backend: SwarmBackend) -> Backend:
    """mypy checks here that SwarmBackend has every verb of the seam, typed alike."""
    return backend

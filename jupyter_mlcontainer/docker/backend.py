"""The Docker engine as a :class:`~jupyter_mlcontainer.core.backend.Backend`.

One engine: local, remote (``DOCKER_HOST``, a docker context, ssh, TLS) or Podman's Docker
API. Each verb is a call of the module that owns that part of the engine (containers, images,
volumes, networks, the injected runtime, the reaper), each of which goes through
:class:`~.engine.Engine` (the one door to the engine: blocking SDK calls off the event loop,
SDK errors turned into the typed ones of ``core/exceptions.py``), or of the engine itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.backend import (
    Backend,
    BackendKind,
    Capabilities,
    ContainerState,
    ExitEvents,
    KernelNetwork,
    Log,
    NodeInfo,
    OnEvent,
    ProjectVolume,
)
from ..core.exceptions import Unsupported
from ..core.gpus import GPUSupport
from ..core.ledger import GPUDevice, GPUHolder
from ..core.plan import ContainerPlan
from ..core.probe import ImageProbe
from . import (
    builds,
    containers,
    endpoint,
    gpus,
    images,
    networks,
    reaper,
    runtime,
    sibling,
    volumes,
)
from .engine import Engine
from .events import engine_stopped_at


def state_of(inspect: Mapping[str, Any]) -> ContainerState:
    """A container's inspect record as the seam's :class:`ContainerState`."""
    state = inspect.get("State") or {}
    host = inspect.get("HostConfig") or {}
    config = inspect.get("Config") or {}
    return ContainerState(
        id=str(inspect.get("Id") or ""),
        name=str(inspect.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or ""),
        image_id=str(inspect.get("Image") or ""),
        running=bool(state.get("Running")),
        status=str(state.get("Status") or ""),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        started_at=str(state.get("StartedAt") or ""),
        finished_at=str(state.get("FinishedAt") or ""),
        created=str(inspect.get("Created") or ""),
        labels=dict(config.get("Labels") or {}),
        device_requests=list(host.get("DeviceRequests") or []),
        memory_limit=int(host.get("Memory") or 0),
    )


def state_of_listed(entry: Mapping[str, Any]) -> ContainerState:
    """An entry of the engine's container list as a :class:`ContainerState` (a list gives
    no exit code: see :func:`state_of` for a container's whole record)."""
    names = entry.get("Names") or [""]
    return ContainerState(
        id=str(entry.get("Id") or ""),
        name=str(names[0]).lstrip("/"),
        image=str(entry.get("Image") or ""),
        image_id=str(entry.get("ImageID") or ""),
        running=entry.get("State") == "running",
        status=str(entry.get("State") or ""),
        labels=dict(entry.get("Labels") or {}),
        description=str(entry.get("Status") or ""),
    )


class DockerBackend:
    """Kernels' containers on one Docker engine (shared per address, like :class:`Engine`)."""

    capabilities = Capabilities(signals=True, scheduled=False, gpu_requests="device")

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def for_url(cls, address: str | None = None) -> DockerBackend:
        """The backend of the shared engine at ``address``: a view of it (equal to, and
        hashed like, every other view of that engine), so nothing more to share or to
        forget after a fork."""
        return cls(Engine.for_url(address or None))

    @classmethod
    def known(cls) -> list[DockerBackend]:
        return [cls(engine) for engine in Engine.known()]

    def __hash__(self) -> int:
        return hash(self.engine)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DockerBackend) and other.engine is self.engine

    # --- the backend itself ------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.engine.address

    @property
    def remote(self) -> bool:
        return self.engine.remote

    @property
    def encrypted(self) -> bool:
        return self.engine.endpoint.api_encrypted

    def describe_client(self) -> str:
        where = self.engine.endpoint
        return f"{where.url or endpoint.DOCKER_SOCKET} (from {where.source})"

    async def kind(self) -> BackendKind:
        return await self.engine.kind()

    async def version(self) -> dict[str, Any]:
        return await self.engine.version()

    async def info(self, max_age: float = 0) -> dict[str, Any]:
        return await self.engine.info(max_age=max_age)

    async def memory_total(self, max_age: float = 60) -> int:
        return int((await self.engine.info(max_age=max_age)).get("MemTotal") or 0)

    async def gpu_support(self, max_age: float = 60, try_image: str = "") -> GPUSupport:
        return await gpus.gpu_support(self.engine, max_age, try_image)

    async def gpu_inventory(
        self, command: str, probe_image: str, max_age: float = 60, mig: bool = False
    ) -> tuple[GPUDevice, ...]:
        return await gpus.inventory(self.engine, command, probe_image, max_age, mig)

    async def gpu_holders(self) -> list[GPUHolder]:
        return await gpus.holders(self.engine)

    # --- images -------------------------------------------------------------------------

    async def image(self, ref: str) -> dict[str, Any] | None:
        return await images.inspect(self.engine, ref)

    async def images(self) -> list[dict[str, Any]]:
        return list(await images.list_all(self.engine))

    async def pull(self, ref: str, log: Log, on_event: OnEvent | None = None) -> None:
        await images.pull(self.engine, ref, log, on_event)

    async def obtain_image(
        self, ref: str, policy: str, log: Log, on_event: OnEvent | None = None
    ) -> dict[str, Any]:
        return await images.obtain_image(self.engine, ref, policy, log, on_event=on_event)

    async def probe_image(self, ref: str) -> ImageProbe:
        return await images.probe_image(self.engine, ref)

    async def image_packages(self, ref: str) -> dict[str, str]:
        return await images.packages(self.engine, ref)

    # --- derived images ---------------------------------------------------------------

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
        return await builds.derive(
            self.engine,
            parent,
            script,
            archive=archive,
            image_labels=labels,
            network=network,
            on_line=on_line,
        )

    async def find_image(self, label: str, value: str) -> dict[str, Any] | None:
        return await builds.find(self.engine, label, value)

    async def push_image(self, image_id: str, repository: str, tag: str) -> str:
        await builds.tag(self.engine, image_id, repository, tag)
        return await builds.push(self.engine, repository, tag)

    async def remove_image(self, ref: str) -> None:
        await builds.remove(self.engine, ref)

    async def changes(self, container_id: str) -> list[dict[str, Any]]:
        return await builds.changes(self.engine, container_id)

    # --- place and create, files in, start ----------------------------------------------

    async def create(self, plan: ContainerPlan) -> str:
        if plan.placement:
            msg = (
                f"A Docker engine is one machine: it cannot place a kernel by constraints "
                f"({', '.join(plan.placement)}). Remove the placement setting, or set backend "
                'to "swarm".'
            )
            raise Unsupported(msg)
        return await containers.create(
            self.engine, plan.create_args, plan.host_config, plan.raw_host_config
        )

    async def put_files(self, container_id: str, path: str, tar: bytes) -> None:
        await containers.put_archive(self.engine, container_id, path, tar)

    async def start(self, container_id: str) -> None:
        await containers.start(self.engine, container_id)

    # --- a running container ------------------------------------------------------------

    async def inspect(self, container_id: str) -> ContainerState | None:
        found = await containers.inspect(self.engine, container_id)
        return None if found is None else state_of(found)

    async def signal(self, container_id: str, signal: str) -> bool:
        return await containers.kill(self.engine, container_id, signal=signal)

    async def remove(self, container_id: str) -> None:
        await containers.remove(self.engine, container_id)

    def remove_soon(self, container_id: str) -> None:
        self.engine.remove_soon(container_id)

    async def drain(self) -> None:
        await self.engine.drain()

    async def settle(self, timeout: float) -> list[tuple[str, float]]:
        return await self.engine.settle(timeout)

    async def logs(self, container_id: str, tail: int = 20) -> str:
        return await containers.logs(self.engine, container_id, tail=tail)

    async def stats(self, container_id: str) -> dict[str, Any] | None:
        return await containers.stats(self.engine, container_id)

    async def containers(self, label_filter: Mapping[str, Any]) -> list[ContainerState]:
        listed = await containers.list_matching(self.engine, dict(label_filter))
        return [state_of_listed(entry) for entry in listed]

    def exits(self) -> ExitEvents:
        return self.engine.exit_watcher()

    async def stopped_at(self, state: ContainerState) -> str:
        return await engine_stopped_at(self.engine, state)

    async def nodes(self) -> list[NodeInfo]:
        return []  # the engine is the place: doctor reports it as "engine"

    # --- address and ports --------------------------------------------------------------

    async def kernel_network(self, name: str) -> KernelNetwork:
        return await self.engine.kernel_networks.ensure(name)

    async def routable(self, network: str) -> bool:
        return await self.engine.kernel_networks.routable(network)

    def kernel_host(self, container_id: str = "") -> str:
        return endpoint.kernel_host(self.engine.endpoint) if self.engine.remote else ""

    async def own_path_map(self) -> dict[str, str]:
        return await sibling.own_path_map(self.engine)

    # --- volumes and the injected runtime -----------------------------------------------

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> bool:
        return await volumes.ensure(self.engine, name, dict(labels))

    async def project_volumes(self, sizes: bool = False) -> list[ProjectVolume]:
        return await volumes.project_volumes(self.engine, sizes=sizes)

    async def home_packages(self, volume: ProjectVolume) -> list[str]:
        return await volumes.home_packages(self.engine, volume)

    async def prune_volumes(
        self, needed_images: Iterable[str], everything: bool = False, dry_run: bool = False
    ) -> tuple[list[str], list[str]]:
        return await volumes.prune(self.engine, needed_images, everything, dry_run)

    async def give_home_to_user(
        self, volume: str, uid: int, gid: int, image: str, python: str
    ) -> None:
        await volumes.give_home_to_user(self.engine, volume, uid, gid, image, python)

    def runtime_volume(self, probe: ImageProbe, packages: Sequence[str]) -> str:
        return runtime.volume_name(runtime.RuntimeTarget.from_probe(probe), packages)

    async def ensure_runtime(
        self,
        image: str,
        probe: ImageProbe,
        packages: Sequence[str],
        wheelhouse: str | None,
        log: Log,
    ) -> tuple[str, str]:
        return await runtime.ensure_runtime(
            self.engine, image, probe, packages=packages, wheelhouse=wheelhouse, log=log
        )

    async def discard_runtime(self, volume: str) -> None:
        await runtime.discard_runtime(self.engine, volume)

    # --- housekeeping -------------------------------------------------------------------

    async def reap_orphans(self, log: logging.Logger) -> list[str]:
        return await reaper.reap_orphans(self.engine, log)

    async def reap_instance(self, log: logging.Logger) -> list[str]:
        return await reaper.reap_instance(self.engine, log)

    async def settle_networks(self, repair: bool) -> list[tuple[str, list[str]]]:
        return await networks.settle_duplicates(self.engine, repair=repair)


def _conforms(backend: DockerBackend) -> Backend:
    """mypy checks here that DockerBackend has every verb of the seam, typed alike."""
    return backend

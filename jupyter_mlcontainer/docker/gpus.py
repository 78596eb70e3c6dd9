"""The GPU verbs of the Docker backend: what the engine can do for GPUs (tried, not guessed
from its runtime list), the host's inventory, and who holds which GPU (the ledger's state is
our containers' GPU labels, see core/ledger.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from typing import TYPE_CHECKING

from docker.types import DeviceRequest

from ..core import labels
from ..core.backend import ENDED_STATES
from ..core.exceptions import (
    CommandNotFound,
    EngineError,
    GPUUnavailableError,
    ImageNotFoundError,
)
from ..core.gpus import GPUSupport
from ..core.ledger import (
    INVENTORY_QUERY,
    MIG_QUERY,
    GPUDevice,
    GPUHolder,
    parse_inventory,
    parse_mig_listing,
)
from . import containers

if TYPE_CHECKING:
    from .engine import Engine

#: What a try with a GPU request found, per engine address (an engine's GPU support changes
#: only when its daemon is reconfigured and restarted).
_TRIED: dict[str, bool] = {}
#: Inventories read, per (engine address, command): (when, devices).
_INVENTORIES: dict[tuple[str, str, bool], tuple[float, tuple[GPUDevice, ...]]] = {}


async def gpu_support(engine: Engine, max_age: float, try_image: str) -> GPUSupport:
    """The engine's GPU support from its ``info``; when that names none and ``try_image`` is
    given, a container with a GPU request is tried once: Docker runs one wherever the NVIDIA
    Container Toolkit's hook is installed, registered as a runtime or not."""
    kind = await engine.kind()
    if kind.podman:
        return GPUSupport.for_podman(kind.version)
    support = GPUSupport.from_info(await engine.info(max_age=max_age))
    if support.available or not try_image:
        return support
    if engine.address not in _TRIED:
        accepted = await _accepts_gpu_requests(engine, try_image)
        if accepted is None:
            return support
        _TRIED[engine.address] = accepted
    return GPUSupport(device_requests=True) if _TRIED[engine.address] else support


async def _accepts_gpu_requests(engine: Engine, image: str) -> bool | None:
    """Whether a container with a GPU request runs (None: it could not be tried, the image
    is not on the engine)."""
    try:
        await containers.run(
            engine,
            image,
            ["true"],
            labels={labels.MANAGED: "true", labels.PURPOSE: "gpu-probe"},
            timeout=60,
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])],
        )
    except GPUUnavailableError:
        return False
    except CommandNotFound:
        return True  # the device request was accepted; the image just has no `true`
    except ImageNotFoundError:
        return None
    return True


async def inventory(
    engine: Engine, command: str, probe_image: str, max_age: float, mig: bool = False
) -> tuple[GPUDevice, ...]:
    """The GPUs of the engine's host: ``command`` run here for a local engine, in a probe
    container of ``probe_image`` (with every GPU, and the driver's utilities) for a remote
    one. () when it cannot be read: no ledger then."""
    key = (engine.address, command, mig)
    cached = _INVENTORIES.get(key)
    if cached is not None and time.monotonic() - cached[0] <= max_age:
        return cached[1]
    query, parse = (MIG_QUERY, parse_mig_listing) if mig else (INVENTORY_QUERY, parse_inventory)
    if engine.remote:
        output = await _remote_inventory(engine, [command, *query], probe_image, max_age)
    else:
        output = await asyncio.to_thread(_local_inventory, [command, *query])
    devices = parse(output)
    _INVENTORIES[key] = (time.monotonic(), devices)
    return devices


def _local_inventory(command: list[str]) -> str:
    """What ``command`` prints here ("" when it is missing or fails)."""
    program = shutil.which(command[0])
    if program is None:
        return ""
    try:
        done = subprocess.run(
            [program, *command[1:]], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


async def _remote_inventory(
    engine: Engine, command: list[str], probe_image: str, max_age: float
) -> str:
    """What ``command`` prints in a probe container with every GPU ("" when it cannot)."""
    if not probe_image or not (await gpu_support(engine, max_age, probe_image)).available:
        return ""
    try:
        code, output = await containers.run(
            engine,
            probe_image,
            command,
            labels={labels.MANAGED: "true", labels.PURPOSE: "gpu-probe"},
            timeout=60,
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu", "utility"]])],
        )
    except EngineError:
        return ""
    return output if code == 0 else ""


async def holders(engine: Engine) -> list[GPUHolder]:
    """Our live containers that hold GPUs, with their exact creation times."""
    listed = await containers.list_matching(engine, labels.managed_filter_has(labels.GPUS))
    found = []
    for entry in listed:
        if entry.get("State") in ENDED_STATES:
            continue
        record = await containers.inspect(engine, str(entry["Id"]))
        if record is None or (record.get("State") or {}).get("Status") in ENDED_STATES:
            continue
        tags = (record.get("Config") or {}).get("Labels") or {}
        found.append(
            GPUHolder(
                container_id=str(record["Id"]),
                kernel_id=tags.get(labels.KERNEL_ID, ""),
                user=tags.get(labels.USER) or tags.get(labels.OWNER, ""),
                created=str(record.get("Created") or ""),
                uuids=tuple(u for u in tags.get(labels.GPUS, "").split(",") if u),
            )
        )
    return found

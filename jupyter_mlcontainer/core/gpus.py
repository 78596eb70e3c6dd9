"""GPU settings: parse what the user asked for and turn it into Docker device requests.

Pure functions; the provisioner feeds them the engine's ``info`` and applies the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from docker.types import DeviceRequest

NVIDIA_CDI_KIND = "nvidia.com/gpu"
PODMAN_CDI_VERSION = (5, 4)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.3.1"`` → (4, 3, 1); what is not a number ends it (``"5.4.0-rc1"`` → (5, 4, 0))."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.group() != part:
            break
    return tuple(numbers)


@dataclass(frozen=True)
class GPURequest:
    """A normalized ``gpus`` setting.

    ``mode`` is one of ``auto`` (every GPU if the engine has any, else CPU), ``all``,
    ``count`` (the first ``count`` GPUs), ``ids`` (device indexes or UUIDs) or ``none``.
    """

    mode: str
    count: int = 0
    ids: tuple[str, ...] = ()

    @property
    def explicit(self) -> bool:
        """True when the user asked for GPUs, so that having none is an error."""
        return self.mode in {"all", "count", "ids"}

    def describe(self) -> str:
        if self.mode == "count":
            return f"{self.count} GPU{'s' if self.count != 1 else ''}"
        if self.mode == "ids" and all(i.startswith(("GPU-", "MIG-")) for i in self.ids):
            # By UUID (the ledger's): how many, and which, by the UUIDs' first part.
            n = len(self.ids)
            short = ", ".join(i.split("-")[0] + "-" + i.split("-")[1][:8] for i in self.ids)
            return f"{n} GPU{'s' if n != 1 else ''} ({short})"
        if self.mode == "ids":
            return "GPUs " + ",".join(self.ids)
        return {"auto": "GPUs if available", "all": "all GPUs", "none": "no GPU"}[self.mode]


def parse_gpus(value: Any) -> GPURequest:
    """Parse a ``gpus`` setting; raise ValueError with the accepted forms on bad input.

    Accepted: ``"auto"``, ``"all"``, ``"none"`` (also ``0``, ``False``, ``""``), a count
    (``2`` or ``"2"``), a list of device indexes or UUIDs (``["0", "GPU-3f2…"]``) or the same
    as a comma-separated string (``"0,1"``; ``"device=0,1"`` as ``docker run --gpus`` takes it).
    """
    if value is None or value is False or value == "":
        return GPURequest("none")
    if value is True:
        return GPURequest("all")
    if isinstance(value, int):
        if value < 0:
            return GPURequest("all")
        return GPURequest("count", count=value) if value else GPURequest("none")
    if isinstance(value, str):
        text = value.strip().strip("\"'")
        lowered = text.lower()
        if lowered in {"auto", "all", "none"}:
            return GPURequest(lowered)
        if lowered.startswith("device="):
            text = text.split("=", 1)[1]
        elif text.isdigit():
            return parse_gpus(int(text))
        return _ids(text.split(","), value)
    if isinstance(value, (list, tuple)):
        return _ids([str(v) for v in value], value)
    msg = (
        f"Invalid gpus setting {value!r}: use 'auto', 'all', 'none', a count such as 2, "
        "or a list of device indexes or UUIDs such as ['0', '1']."
    )
    raise ValueError(msg)


def _ids(items: list[str], original: Any) -> GPURequest:
    ids = tuple(i.strip() for i in items if i.strip())
    bad = [i for i in ids if not (i.isdigit() or i.startswith(("GPU-", "MIG-")) or "=" in i)]
    if not ids or bad:
        msg = (
            f"Invalid gpus setting {original!r}: device ids are indexes ('0') or UUIDs "
            "('GPU-…', 'MIG-…'); other accepted values are 'auto', 'all', 'none' or a count."
        )
        raise ValueError(msg)
    return GPURequest("ids", ids=ids)


@dataclass(frozen=True)
class GPUSupport:
    """What the engine can do for GPUs, read from its ``info``."""

    nvidia_runtime: bool = False
    cdi_devices: tuple[str, ...] = field(default_factory=tuple)
    #: The engine would accept a GPU request and start the container without the GPU
    #: (Podman before 5.4: its Docker-compatible API ignores device requests): what, or "".
    ignores_requests: str = ""
    #: The engine ran a container with a GPU request although its ``info`` names no GPU
    #: runtime (the NVIDIA hook without `nvidia-ctk runtime configure`): tried, not read.
    device_requests: bool = False

    @classmethod
    def for_podman(cls, version: str) -> GPUSupport:
        """Podman lists no devices in its Docker-compatible ``info``; its API passes CDI
        device requests from 5.4 on (containers/podman#25171), the CDI spec decides the rest."""
        if version_tuple(version) >= PODMAN_CDI_VERSION:
            return cls(cdi_devices=(f"{NVIDIA_CDI_KIND}=all",))
        return cls(
            ignores_requests=(
                f"Podman {version}, whose Docker-compatible API ignores GPU requests (a kernel "
                "would start without its GPU): GPUs need Podman 5.4 or later, with a CDI spec "
                "(`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)"
            )
        )

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> GPUSupport:
        runtimes = info.get("Runtimes") or {}
        cdi = tuple(
            str(d.get("ID"))
            for d in info.get("DiscoveredDevices") or []
            if d.get("Source") == "cdi" and str(d.get("ID", "")).startswith(NVIDIA_CDI_KIND)
        )
        return cls(nvidia_runtime="nvidia" in runtimes, cdi_devices=cdi)

    @property
    def available(self) -> bool:
        return self.nvidia_runtime or bool(self.cdi_devices) or self.device_requests

    def describe(self) -> str:
        if self.ignores_requests:
            return self.ignores_requests
        if self.cdi_devices:
            return "CDI devices " + ", ".join(self.cdi_devices)
        if self.nvidia_runtime:
            return "NVIDIA runtime"
        if self.device_requests:
            return "GPU requests (the NVIDIA Container Toolkit's hook; no runtime registered)"
        return "no GPU support (no NVIDIA runtime, no CDI GPU devices)"


def resolve(request: GPURequest, support: GPUSupport) -> GPURequest:
    """Settle ``auto`` against what the engine offers."""
    if request.mode != "auto":
        return request
    return GPURequest("all") if support.available else GPURequest("none")


def device_requests(request: GPURequest, support: GPUSupport) -> list[DeviceRequest]:
    """Docker device requests for a resolved request (CDI names where the engine lists them)."""
    if request.mode in {"none", "auto"}:
        return []
    if support.cdi_devices:
        if request.mode == "all":
            names = [f"{NVIDIA_CDI_KIND}=all"]
        elif request.mode == "count":
            names = [f"{NVIDIA_CDI_KIND}={i}" for i in range(request.count)]
        else:
            names = [i if "=" in i else f"{NVIDIA_CDI_KIND}={i}" for i in request.ids]
        return [DeviceRequest(driver="cdi", device_ids=names)]
    if request.mode == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if request.mode == "count":
        return [DeviceRequest(count=request.count, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(request.ids), capabilities=[["gpu"]])]

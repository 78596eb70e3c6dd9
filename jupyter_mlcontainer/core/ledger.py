"""The GPU ledger: which GPUs a kernel gets, so that kernels on one host are handed GPUs
instead of all landing on GPU 0 (Docker turns ``--gpus 1`` into the *first* device).

Pure functions over three facts a backend gives:

- the host's inventory (``nvidia-smi --query-gpu=index,uuid,name,memory.total``), parsed by
  :func:`parse_inventory`;
- who holds which GPU now: every live container of ours carries its GPUs' UUIDs in a label,
  so the backend itself is the ledger's state, shared by every server that uses it (two
  people's own servers on one host, or a gateway) and freed when a container ends (a crashed
  server's kernels end with their lease);
- how many kernels may share a GPU (``gpu_sharing``: 1 is exclusive).

A choice is made before the container exists and confirmed after it was created
(:func:`lost_gpus`): of the containers that hold a GPU, the earliest created keep it, so two
servers that chose the same GPU at the same moment agree on which one gets it without a lock.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .exceptions import GPUUnavailableError
from .gpus import GPURequest
from .sizes import parse_bytes

#: The query the inventory answers (one line per GPU): index, UUID, name, memory.
INVENTORY_QUERY = ("--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader")
#: The listing that names MIG instances (``nvidia-smi -L``), for ``gpu_devices: mig``.
MIG_QUERY = ("-L",)
_GPU_LINE = re.compile(r"^GPU (\d+): (.*?) \(UUID: (GPU-[^)]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)")


@dataclass(frozen=True)
class GPUDevice:
    """One GPU of the host (or a MIG instance: its UUID starts with ``MIG-``)."""

    index: str
    uuid: str
    name: str = ""
    memory_total: int = 0  # bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "memory_total": self.memory_total,
        }


@dataclass(frozen=True)
class GPUHolder:
    """A live container of ours that holds GPUs."""

    container_id: str
    kernel_id: str
    user: str
    created: str  # the backend's creation time, RFC 3339 with nanoseconds (Go's form)
    uuids: tuple[str, ...]

    @property
    def rank(self) -> tuple[str, str]:
        """Earlier created first; the id settles a tie the same way for everyone."""
        return (sortable_time(self.created), self.container_id)


_TIME = re.compile(r"^(?P<seconds>[^.]*T\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?(?P<zone>.*)$")


def sortable_time(created: str) -> str:
    """``created`` with its fraction of a second padded to nine digits. Go writes times
    without a fraction's trailing zeros, so as text ``…:51.03875Z`` sorts after
    ``…:51.038754723Z``, though it is earlier; padded, text order is time order."""
    match = _TIME.match(created)
    if match is None:
        return created
    fraction = (match["fraction"] or "").ljust(9, "0")
    return f"{match['seconds']}.{fraction}{match['zone']}"


def parse_inventory(text: str) -> tuple[GPUDevice, ...]:
    """``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader``'s
    answer (``0, GPU-3f2…, NVIDIA H200, 143771 MiB``), one device per line."""
    devices = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2 or not fields[1].startswith(("GPU-", "MIG-")):
            continue
        memory = 0
        if len(fields) > 3:
            try:
                memory = int(parse_bytes(fields[3].replace(" ", "").replace("iB", "")))
            except ValueError:
                memory = 0
        name = fields[2] if len(fields) > 2 else ""
        devices.append(GPUDevice(fields[0], fields[1], name, memory))
    return tuple(devices)


def parse_mig_listing(text: str) -> tuple[GPUDevice, ...]:
    """``nvidia-smi -L``'s MIG instances as devices (``0:1``, "NVIDIA A100 MIG 1g.10gb"):
    what kernels are handed when the admin shares GPUs as MIG instances. GPUs without MIG
    instances are left out (they are whole GPUs, not instances)."""
    devices = []
    gpu, gpu_name = "", ""
    for line in text.splitlines():
        whole = _GPU_LINE.match(line)
        if whole:
            gpu, gpu_name = whole.group(1), whole.group(2)
            continue
        mig = _MIG_LINE.match(line)
        if mig and gpu:
            profile = mig.group(1)  # "1g.10gb": its memory is the part after the dot
            size = profile.split(".", 1)[-1].lower().replace("gb", "g")
            try:
                memory = int(parse_bytes(size))
            except ValueError:
                memory = 0
            name = f"{gpu_name} MIG {profile}"
            devices.append(GPUDevice(f"{gpu}:{mig.group(2)}", mig.group(3), name, memory))
    return tuple(devices)


def load(holders: Iterable[GPUHolder]) -> collections.Counter[str]:
    """How many kernels hold each GPU."""
    return collections.Counter(uuid for h in holders for uuid in h.uuids)


def describe_holders(holders: Iterable[GPUHolder]) -> str:
    """``alice ×2, bob ×1`` (GPUs held, per user)."""
    per_user: collections.Counter[str] = collections.Counter()
    for holder in holders:
        per_user[holder.user or "?"] += len(holder.uuids)
    return ", ".join(f"{user} ×{n}" for user, n in sorted(per_user.items()))


class GPUsBusyError(GPUUnavailableError):
    """Every GPU the kernel could have is held by other kernels (up to the sharing limit)."""


def _busy(
    asked: str, inventory: Sequence[GPUDevice], holders: Sequence[GPUHolder], sharing: int
) -> GPUsBusyError:
    per = "" if sharing == 1 else f" ({sharing} kernels each)"
    who = describe_holders(holders) or "nobody"
    n = len(inventory)
    noun = "MIG instance" if all(d.uuid.startswith("MIG-") for d in inventory) else "GPU"
    where = (
        f"all {n} {noun}s of this host are in use"
        if n != 1
        else f"this host's one {noun} is in use"
    )
    msg = (
        f"{asked}, but {where}{per}: {who}. "
        "Stop a GPU kernel you no longer need, wait for one to end, or start this kernel "
        "with gpus='none' (or 'auto', which falls back to the CPU)."
    )
    return GPUsBusyError(msg)


def allocate(
    request: GPURequest,
    inventory: Sequence[GPUDevice],
    holders: Sequence[GPUHolder],
    sharing: int = 1,
    prefer: Sequence[str] = (),
) -> GPURequest:
    """The concrete GPUs (by UUID) for ``request``; ``prefer``'s first (a restarted
    kernel's own, so that it keeps them), then the least used.

    ``auto`` is one free GPU (the CPU, ``none``, when none is free); a count is that many
    free GPUs; ``all`` is every GPU, when none is taken; ids (indexes or UUIDs) are those
    GPUs, when they are free. Raises :class:`GPUsBusyError` naming who holds what, or
    :class:`GPUUnavailableError` for a GPU the host does not have.
    """
    if request.mode == "none" or not inventory:
        return request
    used = load(holders)
    free = sorted(
        (d for d in inventory if used[d.uuid] < sharing),
        key=lambda d: (
            d.uuid not in prefer,
            used[d.uuid],
            int(d.index) if d.index.isdigit() else 0,
            d.uuid,
        ),
    )
    if request.mode == "auto":
        return GPURequest("ids", ids=(free[0].uuid,)) if free else GPURequest("none")
    asked = "The kernel asks for " + ("every GPU" if request.mode == "all" else request.describe())
    if request.mode == "count":
        n, have = request.count, len(inventory)
        if n > have:
            msg = f"{asked} and this host has {have}: ask for at most {have} (gpus: {have})."
            raise GPUUnavailableError(msg)
        if len(free) < n:
            raise _busy(asked, inventory, holders, sharing)
        return GPURequest("ids", ids=tuple(d.uuid for d in free[:n]))
    wanted = inventory if request.mode == "all" else [_device(i, inventory) for i in request.ids]
    taken = {d.uuid for d in wanted if used[d.uuid] >= sharing}
    if taken:
        raise _busy(asked, inventory, [h for h in holders if set(h.uuids) & taken], sharing)
    return GPURequest("ids", ids=tuple(d.uuid for d in wanted))


def _device(wanted: str, inventory: Sequence[GPUDevice]) -> GPUDevice:
    for device in inventory:
        if wanted in (device.index, device.uuid):
            return device
    have = ", ".join(f"{d.index} ({d.uuid})" for d in inventory)
    msg = f"This host has no GPU {wanted!r}; it has {have}. Ask for one of those, or a count."
    raise GPUUnavailableError(msg)


def lost_gpus(
    container_id: str, granted: Sequence[str], holders: Sequence[GPUHolder], sharing: int
) -> list[str]:
    """Of the GPUs granted to ``container_id``, those that earlier-created containers hold
    up to the sharing limit (another server chose them at the same moment): the kernel must
    choose again."""
    lost = []
    for uuid in granted:
        ranked = sorted((h for h in holders if uuid in h.uuids), key=lambda h: h.rank)
        ids = [h.container_id for h in ranked]
        if container_id in ids and ids.index(container_id) >= sharing:
            lost.append(uuid)
    return lost

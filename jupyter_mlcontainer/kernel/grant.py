"""Which GPUs a kernel gets: its ``gpus`` setting against what the backend offers, and, where
the host's GPUs can be listed, the GPU ledger's choice of concrete devices (core/ledger.py).

The ledger's choice is made before the container exists and confirmed right after it was
created (:func:`confirm_gpus`): when another server chose the same GPU at the same moment,
the container created first keeps it and this kernel chooses again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core import gpus as gpu
from ..core import ledger
from ..core.exceptions import GPUUnavailableError

if TYPE_CHECKING:
    from ..core.backend import Backend
    from .policy import MLContainerPolicy
    from .provisioner import MLContainerProvisioner

#: Seconds a backend's facts (GPUs, memory) are trusted before asking again (shared by kernels).
FACTS_MAX_AGE = 60.0


class GPUsTakenMeanwhile(Exception):
    """Another server's kernel, created a moment earlier, holds a GPU this one was given."""


def others(
    p: MLContainerProvisioner, holders: list[ledger.GPUHolder], but: str = ""
) -> list[ledger.GPUHolder]:
    """The holders that are not this kernel (a restart must not compete with the container
    it replaces, or that it restarts in), except the container ``but``."""
    kernel_id = str(p.kernel_id)
    return [h for h in holders if h.kernel_id != kernel_id or h.container_id == but]


async def ledger_facts(
    backend: Backend, policy: MLContainerPolicy, support: gpu.GPUSupport, image: str
) -> tuple[gpu.GPUSupport, tuple[ledger.GPUDevice, ...]]:
    """The host's GPUs for the ledger (none with ``gpu_sharing: 0``, or where the backend
    would ignore GPU requests), and the backend's GPU support: where the host has GPUs and
    ``support`` names none, tried with a GPU request in ``image`` (when one is given)."""
    if policy.gpu_sharing <= 0 or support.ignores_requests:
        return support, ()
    inventory = await backend.gpu_inventory(
        policy.gpu_inventory_command,
        image,
        max_age=FACTS_MAX_AGE,
        mig=policy.gpu_devices == "mig",
    )
    if inventory and not support.available and image:  # does the engine pass them on?
        support = await backend.gpu_support(max_age=FACTS_MAX_AGE, try_image=image)
    return support, inventory


async def resolve_gpus(p: MLContainerProvisioner) -> gpu.GPURequest:
    """The kernelspec's ``gpus`` against what the backend offers: with the ledger, concrete
    free GPUs by UUID (``auto``: one free GPU, else the CPU); without it (no inventory, or
    ``gpu_sharing: 0``), ``auto`` is every GPU when the backend has any."""
    request = p.gpu_request
    p.container.ledger_gpus = False
    if request.mode == "none":
        p.container.granted_gpus = request
        return request
    backend = p.container_backend
    support = await backend.gpu_support(max_age=FACTS_MAX_AGE)
    if support.ignores_requests and request.explicit:
        msg = (
            f"GPUs were requested but the engine is {support.ignores_requests}; "
            "or set gpus='none' (or 'auto') to run this kernel on the CPU."
        )
        raise GPUUnavailableError(msg)
    sharing = p.policy.gpu_sharing
    support, inventory = await ledger_facts(backend, p.policy, support, p.image)
    p.container.gpu_support = support
    if inventory and support.available:
        holders = others(p, await backend.gpu_holders())
        previous = p.container.granted_gpus
        kept = previous.ids if previous is not None and previous.mode == "ids" else ()
        resolved = ledger.allocate(request, inventory, holders, sharing, prefer=kept)
        p.container.ledger_gpus = resolved.mode == "ids"
        if request.mode == "auto" and resolved.mode == "none":
            p.log.warning(
                "Kernel %s runs on the CPU: all %d GPUs are in use (%s).",
                p.kernel_id,
                len(inventory),
                ledger.describe_holders(holders),
            )
    else:
        resolved = gpu.resolve(request, support)
        generic = backend.capabilities.gpu_requests != "device"
        if request.mode == "auto" and resolved.mode == "all" and generic:
            # A count is all a scheduler takes (Swarm's generic resources): `auto` would ask
            # for every GPU of a node, which it cannot express.
            p.log.warning(
                "Kernel %s runs on the CPU: %s takes GPUs by count only; set gpus to a number "
                "(gpus: 1) to get some.",
                p.kernel_id,
                backend.address,
            )
            resolved = gpu.GPURequest("none")
        elif request.mode == "auto" and resolved.mode == "none":
            p.log.warning(
                "Kernel %s runs on the CPU: the Docker engine has %s. Install the NVIDIA "
                "Container Toolkit for GPUs, or set gpus='none' to silence this warning.",
                p.kernel_id,
                support.describe(),
            )
    p.container.granted_gpus = resolved
    return resolved


async def confirm_gpus(
    p: MLContainerProvisioner, container_id: str, granted: gpu.GPURequest
) -> None:
    """Right after the container was created: its ledger GPUs are still its own (no
    container created earlier holds them up to the sharing limit), else
    :class:`GPUsTakenMeanwhile`."""
    if not p.container.ledger_gpus or granted.mode != "ids":
        return
    holders = others(p, await p.container_backend.gpu_holders(), but=container_id)
    if ledger.lost_gpus(container_id, granted.ids, holders, p.policy.gpu_sharing):
        raise GPUsTakenMeanwhile


async def gpu_table(
    backend: Backend, policy: MLContainerPolicy, probe_image: str = "", own: Iterable[str] = ()
) -> dict[str, Any]:
    """The host's GPUs and who holds each, for the REST API, the sidebar and ``doctor``.
    Kernel ids are shown for ``own`` kernels only (another user's ids are theirs to know)."""
    support = await backend.gpu_support(max_age=FACTS_MAX_AGE)
    support, inventory = await ledger_facts(backend, policy, support, probe_image)
    holders = await backend.gpu_holders() if inventory else []
    mine = set(own)
    gpus = []
    for device in inventory:
        held = [h for h in holders if device.uuid in h.uuids]
        gpus.append(
            {
                **device.to_dict(),
                "holders": [
                    {"user": h.user, "kernel_id": h.kernel_id if h.kernel_id in mine else None}
                    for h in held
                ],
                "free": len(held) < policy.gpu_sharing,
            }
        )
    return {
        "support": support.describe(),
        "available": support.available,
        "ledger": bool(inventory) and support.available,
        "sharing": policy.gpu_sharing,
        "gpus": gpus,
    }

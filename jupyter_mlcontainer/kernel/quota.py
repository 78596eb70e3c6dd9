"""Per-user quotas (``MLContainerPolicy.quotas``): how many kernels, GPUs and bytes of memory
one user holds at once, counted from the backend's kernel containers (their labels), so that
every server on one backend counts the same.

Checked before the container exists, and again right after it was created: of one user's
containers, the earliest created count first, so two starts at the same moment cannot both
pass a limit that only one fits under.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import labels
from ..core.backend import ENDED_STATES, ContainerState
from ..core.diagnostics import human_size
from ..core.plan import KernelLaunch
from ..core.sizes import parse_bytes
from .policy import QuotaExceededError

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


def kernel_user_name(p: MLContainerProvisioner) -> str:
    """Whom this kernel is for: the gateway's verified user, else this process's own."""
    return p.user_name or labels.process_owner()


def system_groups(user: str) -> list[str]:
    """The user's system groups (none when there is no such account)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return []
    names = []
    for gid in os.getgrouplist(user, account.pw_gid):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


@dataclass(frozen=True)
class Held:
    """What one kernel container holds."""

    container_id: str
    kernel_id: str
    created: str
    gpus: int
    memory: int

    @classmethod
    def of(cls, state: ContainerState) -> Held:
        tags = state.labels
        gpus = len([u for u in tags.get(labels.GPUS, "").split(",") if u])
        memory = int(tags.get(labels.MEMORY) or 0)
        return cls(state.id, tags.get(labels.KERNEL_ID, ""), state.created, gpus, memory)

    @classmethod
    def planned(cls, launch: KernelLaunch) -> Held:
        gpus = launch.gpus.count if launch.gpus.mode == "count" else len(launch.gpus.ids)
        memory = int(parse_bytes(launch.mem_limit)) if launch.mem_limit else 0
        return cls("", launch.kernel_id, "~", gpus, memory)  # "~" sorts last: the newest


async def _held_by(p: MLContainerProvisioner, user: str) -> list[Held]:
    """The user's live kernel containers on this backend, oldest first."""
    backend = p.container_backend
    listed = await backend.containers(labels.managed_filter())
    found = []
    for state in listed:
        tags = state.labels
        whose = tags.get(labels.USER) or tags.get(labels.OWNER)
        if whose != user or labels.KERNEL_ID not in tags or labels.POOLED in tags:
            continue
        if state.status in ENDED_STATES:
            continue
        inspected = await backend.inspect(state.id)  # its exact creation time
        if inspected is not None and inspected.status not in ENDED_STATES:
            found.append(Held.of(inspected))
    return sorted(found, key=lambda h: (h.created, h.container_id))


async def check_quota(
    p: MLContainerProvisioner, launch: KernelLaunch, container_id: str = ""
) -> None:
    """Refuse a start over the user's quota; ``container_id``: the start's container was
    created, and counts in its place among the user's containers."""
    user = launch.user or kernel_user_name(p)
    limits = p.policy.quota_for(user, system_groups(user)) if p.policy.quotas else {}
    if not limits:
        return
    # Not this kernel's other containers: a restart replaces them (or restarts in one).
    held = [
        h
        for h in await _held_by(p, user)
        if h.kernel_id != launch.kernel_id or h.container_id == container_id
    ]
    if container_id:
        mine = next((i for i, h in enumerate(held) if h.container_id == container_id), None)
        if mine is None:
            return
        counted, this = held[:mine], held[mine]
    else:
        counted, this = held, Held.planned(launch)
    totals = {
        "kernels": len(counted) + 1,
        "gpus": sum(h.gpus for h in counted) + this.gpus,
        "memory": sum(h.memory for h in counted) + this.memory,
    }
    for key, limit in limits.items():
        if (
            totals[key] > limit
            and (key != "gpus" or this.gpus)
            and (key != "memory" or this.memory)
        ):
            raise QuotaExceededError(_over(user, key, limit, counted))


def _over(user: str, key: str, limit: int, counted: list[Held]) -> str:
    kernels = len(counted)
    if key == "kernels":
        holds = f"{kernels} running"
        allowed = f"{limit} kernel{'s' if limit != 1 else ''} at once"
    elif key == "gpus":
        holds = f"{sum(h.gpus for h in counted)} held by {kernels} kernel(s)"
        allowed = f"{limit} GPU{'s' if limit != 1 else ''} at once"
    else:
        holds = f"{human_size(sum(h.memory for h in counted))} held by {kernels} kernel(s)"
        allowed = f"{human_size(limit)} of kernel memory at once"
    return (
        f"Over the admin's quota: {user} may hold {allowed} ({holds}, and this kernel would "
        "add to it). Shut down a kernel you no longer need (the sidebar, or `jupyter "
        "mlcontainer list`), or ask this kernel for less."
    )

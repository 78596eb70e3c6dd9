"""Read a Swarm task (``GET /tasks``) and its node (``GET /nodes/{id}``) as the seam's
:class:`~jupyter_mlcontainer.core.backend.ContainerState`.

Pure: no engine. A kernel is a service of one task, so the service's state is its newest
task's. What the manager reports when a node's engine stops under a running task was measured
on the test swarm (tests/test_swarm_cluster.py): the node goes ``down`` ("heartbeat failure"),
the task's ``DesiredState`` becomes ``shutdown``, but its ``Status.State`` stays the last one
the node reported (``running``) with no ``Err``; with placement constraints and reservations
the constraint enforcer marks it ``rejected`` instead. The task alone never says the node is gone:
the node's record decides, and such a kernel is dead with the reason "node NAME left the
swarm".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..core import labels
from ..core.backend import ContainerState, NodeInfo
from .spec import GPU_KIND

#: Task states before the container runs (the seam's "created").
WAITING = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
#: Task states of a container that ran and stopped (the seam's "exited").
STOPPED = frozenset({"complete", "failed", "shutdown"})
#: Task states of a task that will never run, or whose node lost it (the seam's "dead").
LOST = frozenset({"rejected", "orphaned", "remove"})
#: Task states a task reaches by itself (its process ended), whatever its node does after.
ENDED_BY_ITSELF = frozenset({"complete", "failed"})
#: Node states in which its tasks are gone with it.
NODE_GONE = frozenset({"down"})


def node_name(node: Mapping[str, Any] | None, node_id: str) -> str:
    """The node's hostname (its name in the swarm), else its id."""
    if node:
        return str(node.get("Description", {}).get("Hostname") or node.get("ID") or node_id)
    return node_id


def node_left(task: Mapping[str, Any], node: Mapping[str, Any] | None) -> bool:
    """Whether the task's node left the swarm under it: the node is ``down``, or the manager
    no longer knows it (``node`` None for a task that has a ``NodeID``), while the task had
    not ended by itself. The manager's own verdict on such a task varies (it stays
    ``running``; or, with placement constraints or generic resources, the constraint
    enforcer marks it ``rejected``, "assigned node no longer meets constraints"): the node
    decides."""
    node_id = str(task.get("NodeID") or "")
    state = str(task.get("Status", {}).get("State", ""))
    if not node_id or state in ENDED_BY_ITSELF:
        return False
    if node is None:
        return True
    return node.get("Status", {}).get("State") in NODE_GONE


def assigned_gpus(task: Mapping[str, Any]) -> list[str]:
    """The GPUs the scheduler gave the task (the Engine API calls them ``GenericResources``)."""
    return [
        str(resource["NamedResourceSpec"]["Value"])
        for resource in task.get("GenericResources") or []
        if resource.get("NamedResourceSpec", {}).get("Kind") == GPU_KIND
    ]


def seam_status(state: str) -> str:
    """A task state in the seam's (Docker's) words."""
    if state == "running":
        return "running"
    if state in STOPPED:
        return "exited"
    if state in LOST:
        return "dead"
    return "created"


def task_state(
    task: Mapping[str, Any],
    node: Mapping[str, Any] | None = None,
    service: Mapping[str, Any] | None = None,
) -> ContainerState:
    """The kernel's state from its newest ``task``, the record of the task's node (None when
    the manager does not know it: a node that left) and its ``service`` (its name, labels)."""
    status = task.get("Status", {})
    state = str(status.get("State", ""))
    spec = task.get("Spec", {})
    container = spec.get("ContainerSpec", {})
    service_spec = (service or {}).get("Spec", {})
    node_id = str(task.get("NodeID") or "")
    name = node_name(node, node_id) if node_id else ""
    error = str(status.get("Err") or "")
    seam = seam_status(state)
    if node_left(task, node):
        error, seam = f"node {name} left the swarm", "dead"
    timestamp = str(status.get("Timestamp") or "")
    gpus = assigned_gpus(task)
    image = str(container.get("Image", ""))
    # A task names its image by digest or id (swarm/spec.py node_image); its service, by
    # the name the kernelspec gave.
    asked = str((service_spec.get("Labels") or {}).get(labels.IMAGE) or "")
    image_id = image if image.startswith("sha256:") else image.partition("@")[2]
    description = f"{state} on {name}" if name else state
    if status.get("Message") and status["Message"] != state:
        description += f": {status['Message']}"
    return ContainerState(
        id=str(task.get("ServiceID", "")),
        name=str(service_spec.get("Name", "")),
        image=asked or image,
        image_id=image_id,
        running=seam == "running",
        status=seam,
        exit_code=int(status.get("ContainerStatus", {}).get("ExitCode") or 0),
        error=error,
        started_at=timestamp if seam == "running" else "",
        finished_at=timestamp if seam in ("exited", "dead") else "",
        created=str(task.get("CreatedAt", "")),
        labels=dict(service_spec.get("Labels") or container.get("Labels") or {}),
        device_requests=(
            [{"Driver": "nvidia", "DeviceIDs": gpus, "Capabilities": [["gpu"]]}] if gpus else []
        ),
        memory_limit=int(spec.get("Resources", {}).get("Limits", {}).get("MemoryBytes") or 0),
        description=f"{description} ({error})"
        if error and error not in description
        else description,
        node=name,
    )


def advertised_gpus(node: Mapping[str, Any]) -> tuple[str, ...]:
    """The GPUs a node declares (``--node-generic-resource``): named ones by their ids, a
    count (``NVIDIA-GPU=2``) as that many empty strings."""
    found: list[str] = []
    resources = (node.get("Description") or {}).get("Resources") or {}
    for resource in resources.get("GenericResources") or []:
        named = resource.get("NamedResourceSpec") or {}
        discrete = resource.get("DiscreteResourceSpec") or {}
        if named.get("Kind") == GPU_KIND:
            found.append(str(named.get("Value") or ""))
        elif discrete.get("Kind") == GPU_KIND:
            found.extend([""] * int(discrete.get("Value") or 0))
    return tuple(found)


def holds_resources(task: Mapping[str, Any]) -> bool:
    """Whether the scheduler counts the task's reservations as taken: it is meant to run and
    has not ended."""
    state = str((task.get("Status") or {}).get("State") or "")
    return task.get("DesiredState") == "running" and state not in STOPPED | LOST


def node_info(node: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]]) -> NodeInfo:
    """A node of ``GET /nodes`` with what the ``tasks`` that hold resources there reserved
    (memory) and were given (GPUs); kernels of ours are those with our managed label."""
    node_id = str(node.get("ID") or "")
    here = [t for t in tasks if t.get("NodeID") == node_id and holds_resources(t)]
    reserved = 0
    held: list[str] = []
    ours: list[str] = []
    for task in here:
        resources = ((task.get("Spec") or {}).get("Resources") or {}).get("Reservations") or {}
        reserved += int(resources.get("MemoryBytes") or 0)
        gpus = assigned_gpus(task)
        held += gpus
        container_labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels")
        if (container_labels or {}).get(labels.MANAGED) == "true":
            ours += gpus
    description = node.get("Description") or {}
    spec = node.get("Spec") or {}
    return NodeInfo(
        name=node_name(node, node_id),
        id=node_id,
        role=str(spec.get("Role") or ""),
        state=str((node.get("Status") or {}).get("State") or ""),
        availability=str(spec.get("Availability") or ""),
        memory_total=int((description.get("Resources") or {}).get("MemoryBytes") or 0),
        memory_reserved=reserved,
        gpus=advertised_gpus(node),
        gpus_ours=tuple(sorted(ours)),
        gpus_held=tuple(sorted(held)),
    )

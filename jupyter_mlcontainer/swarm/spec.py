"""Translate a container plan (``core/plan.py``, the Engine API's create vocabulary) into a
Docker Swarm service spec (the body of ``POST /services/create``).

Pure: no engine. A kernel is a service of exactly one task (``Replicated``, 1 replica) that
Swarm never restarts (``RestartPolicy.Condition: none``): a kernel that dies is reported, and
the server decides. Its ports are published in ``host`` mode, on the node the task lands on
only (the ingress mesh would publish them on every node). Its memory limit is also its
reservation, so the scheduler places it on a node with that much room; its GPUs are a count of
the ``NVIDIA-GPU`` generic resource, which each node declares (``--node-generic-resource``).

What a service cannot express (specific GPUs, ``all`` GPUs, a fixed address, a user namespace,
privileges, a host config key this module does not know) raises ``Unsupported`` before
anything is created: it is never silently dropped.

The plan's ``archive`` (files copied in before the start) is not part of the spec: Swarm has no
archive verb, and the backend carries those files another way (docs/backends.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core import labels
from ..core.exceptions import Unsupported
from ..core.reference import repository
from ..core.sizes import parse_bytes

if TYPE_CHECKING:
    from ..core.plan import ContainerPlan

#: The generic resource nodes declare their GPUs as (the tasks get
#: ``DOCKER_RESOURCE_NVIDIA-GPU`` with the UUIDs assigned).
GPU_KIND = "NVIDIA-GPU"
#: The first Engine API version whose ContainerSpec has ``Privileges.NoNewPrivileges``.
NO_NEW_PRIVILEGES_API = (1, 46)
#: The container's shared memory, as a tmpfs mount (a service has no ``ShmSize``).
SHM_PATH = "/dev/shm"
#: Host config keys translated below; any other one set in a plan is refused.
KNOWN_HOST_CONFIG = frozenset(
    {
        "init",
        "cap_drop",
        "security_opt",
        "mounts",
        "network_mode",
        "device_requests",
        "shm_size",
        "mem_limit",
        "nano_cpus",
        "pids_limit",
        "port_bindings",
    }
)
#: Create arguments translated below (or that mean nothing to a service: ``detach``).
KNOWN_CREATE_ARGS = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "name",
        "labels",
        "environment",
        "working_dir",
        "user",
        "detach",
        "ports",
        "networking_config",
    }
)
_ANY_ADDRESS = ("", "0.0.0.0")  # noqa: S104  host mode publishes on every interface of the node


def service_spec(
    plan: ContainerPlan,
    *,
    constraints: Sequence[str] = (),
    network: str | None = None,
    api_version: str = "1.41",
    image: str = "",
) -> dict[str, Any]:
    """The service spec of one kernel's ``plan`` (a ``ContainerPlan``).

    ``constraints`` are Swarm placement constraints (``node.labels.gpu==true``,
    ``node.platform.arch==x86_64``), before the plan's own (the ``placement`` setting);
    ``network`` the swarm network a bridge-mode kernel joins
    (None: none, its ports are published on its node); ``api_version`` the manager's, which
    decides whether ``no-new-privileges`` can be asked for (API 1.46); ``image`` the
    reference the nodes run (:func:`node_image`; "": the plan's).
    """
    host, create = dict(plan.host_config), dict(plan.create_args)
    _refuse_unknown(host, create, plan.raw_host_config)
    container = _container_spec(create, host, api_version)
    labels_: dict[str, str] = dict(create.get("labels") or {})
    if image and image != create["image"]:
        container["Image"] = image
        labels_[labels.IMAGE] = str(create["image"])  # what the kernel details show
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": _resources(host, plan.reserve_memory),
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
    }
    placement = [*constraints, *plan.placement]
    if placement:
        task["Placement"] = {"Constraints": placement}
    networks = _networks(host, create, network)
    if networks:
        task["Networks"] = networks
    spec: dict[str, Any] = {
        "Name": plan.name,
        "Labels": labels_,
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    ports = _ports(host)
    if ports:
        spec["EndpointSpec"] = {"Ports": ports}
    return spec


def _refuse_unknown(
    host: Mapping[str, Any], create: Mapping[str, Any], raw: Mapping[str, Any]
) -> None:
    if raw:
        keys = ", ".join(sorted(raw))
        msg = (
            f"Docker Swarm cannot run this kernel: its host config sets {keys} (a user "
            "namespace), which a Swarm service cannot express."
        )
        raise Unsupported(msg)
    unknown = sorted(k for k, v in host.items() if k not in KNOWN_HOST_CONFIG and v)
    unknown += sorted(k for k, v in create.items() if k not in KNOWN_CREATE_ARGS and v)
    if unknown:
        msg = (
            f"Docker Swarm cannot run this kernel: {', '.join(unknown)} cannot be expressed in a "
            "Swarm service (use a Docker engine backend for it)."
        )
        raise Unsupported(msg)


def node_image(reference: str, record: Mapping[str, Any] | None) -> str:
    """The image reference a kernel's task names, from the manager's record of it (None:
    the manager lacks it). A node pulls a tag at every start, to find the newest (with no
    registry reachable it waits for the pull to fail, 20 s here, and then runs what it has);
    a digest it skips where the image is present, and pulls where missing; an image id it
    never pulls. So: the reference itself when it has a digest; else the record's digest of
    the same repository (an image from a registry); else the image's id (one loaded on every
    node: ids are the same everywhere); else the reference as it is."""
    if "@" in reference or record is None:
        return reference
    wanted = repository(reference)
    for pinned in record.get("RepoDigests") or []:
        if repository(pinned) == wanted:
            return str(pinned)
    return str(record.get("Id") or reference)


def _container_spec(
    create: Mapping[str, Any], host: Mapping[str, Any], api_version: str
) -> dict[str, Any]:
    command = list(create.get("command") or [])
    container: dict[str, Any] = {"Image": create["image"]}
    if "entrypoint" in create and not create["entrypoint"]:
        # Docker's empty entrypoint: the command runs as is. A service's Command replaces
        # the image's entrypoint, so the whole command goes there.
        if command:
            container["Command"] = command
    else:
        if create.get("entrypoint"):
            container["Command"] = list(create["entrypoint"])
        if command:
            container["Args"] = command
    env = create.get("environment") or {}
    if env:
        container["Env"] = [literal(f"{k}={v}") for k, v in env.items()]
    for key, field in (("working_dir", "Dir"), ("user", "User")):
        if create.get(key):
            container[field] = str(create[key])
    if create.get("labels"):
        container["Labels"] = dict(create["labels"])
    if host.get("init"):
        container["Init"] = True
    if host.get("cap_drop"):
        container["CapabilityDrop"] = list(host["cap_drop"])
    mounts = [
        {**m, **{k: literal(str(m[k])) for k in ("Source", "Target") if m.get(k)}}
        for m in host.get("mounts") or []
    ]
    if host.get("shm_size") is not None:
        size = int(parse_bytes(host["shm_size"]))
        mounts.append({"Target": SHM_PATH, "Type": "tmpfs", "TmpfsOptions": {"SizeBytes": size}})
    if mounts:
        container["Mounts"] = mounts
    _security(container, host.get("security_opt") or (), api_version)
    return container


def literal(text: str) -> str:
    """``text`` as a Swarm template's literal text. A task's environment and mounts are Go
    templates (``{{.Node.Hostname}}``): a kernel's connection info, whose CurveZMQ keys are
    Z85 and may hold ``{{``, was refused ("function … not defined"). ``{{"{{"}}`` is a
    literal ``{{``; ``}}`` outside an action is literal already."""
    return text.replace("{{", '{{"{{"}}')


def _security(container: dict[str, Any], options: Iterable[str], api_version: str) -> None:
    """``no-new-privileges`` where the manager knows it. Older managers ignore the field, and
    the kernel keeps the protection that matters: with every capability dropped
    (``CapabilityDrop: ALL``), a setuid program gains none."""
    for option in options:
        if option.replace("=", ":") not in ("no-new-privileges:true", "no-new-privileges"):
            msg = (
                f"Docker Swarm cannot run this kernel: security option {option!r} has no "
                "Swarm form."
            )
            raise Unsupported(msg)
        if _version(api_version) >= NO_NEW_PRIVILEGES_API:
            container["Privileges"] = {"NoNewPrivileges": True}


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _resources(host: Mapping[str, Any], reserve_memory: int | None) -> dict[str, Any]:
    """Limits as the plan sets them; reservations (what the scheduler places by): the
    memory the kernelspec asked for, and GPUs."""
    limits: dict[str, Any] = {}
    reservations: dict[str, Any] = {}
    if host.get("mem_limit") is not None:
        limits["MemoryBytes"] = int(parse_bytes(host["mem_limit"]))
    if reserve_memory:
        reservations["MemoryBytes"] = reserve_memory
    if host.get("nano_cpus"):
        limits["NanoCPUs"] = int(host["nano_cpus"])
    if host.get("pids_limit"):
        limits["Pids"] = int(host["pids_limit"])
    gpus = gpu_count(host.get("device_requests") or ())
    if gpus:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": GPU_KIND, "Value": gpus}}
        ]
    resources: dict[str, Any] = {}
    if limits:
        resources["Limits"] = limits
    if reservations:
        resources["Reservations"] = reservations
    return resources


def gpu_count(requests: Iterable[Mapping[str, Any]]) -> int:
    """The number of GPUs that Docker device requests ask for; ``Unsupported`` for what a
    count cannot say (all GPUs, specific devices, CDI names)."""
    total = 0
    for request in requests:
        if request.get("Driver") == "cdi" or request.get("DeviceIDs"):
            ids = ", ".join(request.get("DeviceIDs") or [])
            msg = (
                f"Docker Swarm cannot give a kernel specific GPUs ({ids}): the scheduler assigns "
                "them. Ask for a number of GPUs (gpus: 1)."
            )
            raise Unsupported(msg)
        count = int(request.get("Count") or 0)
        if count < 0:
            msg = (
                "Docker Swarm cannot give a kernel all of a node's GPUs (gpus: all): ask for a "
                "number of GPUs (gpus: 2)."
            )
            raise Unsupported(msg)
        total += count
    return total


def _networks(
    host: Mapping[str, Any], create: Mapping[str, Any], network: str | None
) -> list[dict[str, Any]]:
    if create.get("networking_config"):
        msg = (
            "Docker Swarm cannot give a kernel a fixed address: tasks get theirs from the "
            "swarm network."
        )
        raise Unsupported(msg)
    mode = host.get("network_mode") or "bridge"
    if mode in ("host", "none"):
        return [{"Target": mode}]
    return [{"Target": network}] if network else []


def _ports(host: Mapping[str, Any]) -> list[dict[str, Any]]:
    ports = []
    for container_port, binding in sorted((host.get("port_bindings") or {}).items()):
        address, published = binding if isinstance(binding, tuple) else ("", binding)
        if address not in _ANY_ADDRESS:
            msg = (
                f"Docker Swarm cannot publish a port on {address} only: host-mode ports are "
                "published on every interface of the task's node. Publish on 0.0.0.0 (a remote "
                "kernel's traffic is CurveZMQ-encrypted)."
            )
            raise Unsupported(msg)
        ports.append(
            {
                "Protocol": "tcp",
                "TargetPort": int(container_port),
                "PublishedPort": int(published),
                "PublishMode": "host",
            }
        )
    return ports

"""A kernel's service on a Swarm manager: blocking calls of the Docker SDK's ``APIClient``,
each run on the manager's :class:`~jupyter_mlcontainer.docker.engine.Engine` executor (off the
event loop, its errors typed) by ``swarm/backend.py``.

A kernel is a service of one task: created with no replica (``Replicas: 0``), given its files
as Swarm secrets while it has no task, then scaled to one replica. Every object is labelled
(``core/labels.py``): the service with the plan's labels, its secrets with ours and the
service's id, so that removing the service removes them too.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

import docker
import docker.errors

from ..core import labels
from ..core.diagnostics import human_size
from ..core.exceptions import EngineError, ImageNotFoundError, PortTaken, Unschedulable
from .spec import GPU_KIND

#: Task errors of a task the scheduler cannot place (``Status.Err`` while ``pending``).
NO_NODE = ("no suitable node",)
#: Task errors of a node that lacks the image (``rejected``).
NO_IMAGE = ("No such image", "No such image:")
#: What a node says when a host-mode port is taken there.
PORT_TAKEN = ("port is already allocated", "address already in use")
#: Task states of a container that ran and stopped by itself.
ENDED = frozenset({"complete", "failed"})
#: A secret's file: readable by the kernel's user only.
SECRET_MODE = 0o400
#: Secrets' names are at most 64 characters.
SECRET_NAME_MAX = 64


def newest(tasks: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest of a service's tasks (one replica: its only live one), None when none."""
    found = sorted(tasks, key=lambda t: str(t.get("CreatedAt") or ""))
    return dict(found[-1]) if found else None


def inspect_service(api: docker.APIClient, service_id: str) -> dict[str, Any] | None:
    try:
        return dict(api.inspect_service(service_id))
    except docker.errors.NotFound:
        return None


def inspect_node(api: docker.APIClient, node_id: str) -> dict[str, Any] | None:
    """The node's record; None when the manager no longer knows it (it left the swarm)."""
    if not node_id:
        return None
    try:
        return dict(api.inspect_node(node_id))
    except docker.errors.NotFound:
        return None


def service_tasks(api: docker.APIClient, service_id: str) -> list[dict[str, Any]]:
    return [dict(t) for t in api.tasks(filters={"service": service_id})]


def create(api: docker.APIClient, spec: Mapping[str, Any]) -> str:
    """Create the service of ``spec`` (swarm/spec.py) with no replica yet; its id."""
    created = api.create_service(
        spec["TaskTemplate"],
        name=spec["Name"],
        labels=dict(spec.get("Labels") or {}),
        mode={"Replicated": {"Replicas": 0}},
        endpoint_spec=spec.get("EndpointSpec"),
    )
    return str(created["ID"])


#: Tries of an update the manager refuses as "update out of sequence".
UPDATE_TRIES = 5


def _update(api: docker.APIClient, service: Mapping[str, Any], **changes: Any) -> None:
    """``POST /services/{id}/update`` at the service's current version, the rest of its spec
    as it is. A manager may answer "update out of sequence" though nothing else writes the
    kernel's service (seen in CI, right after the previous update): the version is read
    again and the same change tried again, a few times."""
    for attempt in range(UPDATE_TRIES):
        try:
            api.update_service(
                service["ID"],
                service["Version"]["Index"],
                fetch_current_spec=True,
                **changes,
            )
            return
        except docker.errors.APIError as e:
            if "out of sequence" not in str(e) or attempt == UPDATE_TRIES - 1:
                raise
        time.sleep(0.1 * (attempt + 1))
        current = inspect_service(api, str(service["ID"]))
        if current is None:
            msg = f"The kernel's service {str(service['ID'])[:12]} is gone"
            raise docker.errors.NotFound(msg)
        service = current


def secret_name(service_name: str, path: str, index: int) -> str:
    """A secret's name: the service's, the file's and a counter, within Swarm's limit."""
    base = posixpath.basename(path).replace("/", "-") or "file"
    suffix = f"-{index}-{base}"
    return (service_name[: SECRET_NAME_MAX - len(suffix)] + suffix)[:SECRET_NAME_MAX]


def tar_files(path: str, tar: bytes) -> list[tuple[str, bytes, int, int]]:
    """The regular files of ``tar`` unpacked at ``path``: (target path, content, uid, gid).
    Directories are not carried: a secret's mount makes its parent directories, and the
    bootstrap makes HOME (agent/bootstrap.py)."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            data = archive.extractfile(member)
            content = data.read() if data is not None else b""
            target = posixpath.normpath(posixpath.join(path, member.name))
            found.append((target, content, member.uid, member.gid))
    return found


def add_files(api: docker.APIClient, service_id: str, path: str, tar: bytes) -> list[str]:
    """The tar's files as secrets of the service (made now, mode 0400, owned as in the tar),
    attached before it has a task; the secrets' ids."""
    service = inspect_service(api, service_id)
    if service is None:
        msg = f"The kernel's service {service_id[:12]} is gone"
        raise docker.errors.NotFound(msg)
    spec = service["Spec"]
    own = {**labels.owner_labels(), labels.SERVICE: service_id}
    kernel = {k: v for k, v in (spec.get("Labels") or {}).items() if k.startswith(labels.PREFIX)}
    attached, made = [], []
    for index, (target, content, uid, gid) in enumerate(tar_files(path, tar)):
        name = secret_name(str(spec["Name"]), target, index)
        secret = str(api.create_secret(name, content, labels={**kernel, **own})["ID"])
        made.append(secret)
        attached.append(
            {
                "SecretID": secret,
                "SecretName": name,
                "File": {"Name": target, "UID": str(uid), "GID": str(gid), "Mode": SECRET_MODE},
            }
        )
    if attached:
        task = dict(spec["TaskTemplate"])
        container = dict(task["ContainerSpec"])
        container["Secrets"] = [*(container.get("Secrets") or []), *attached]
        task["ContainerSpec"] = container
        _update(api, service, task_template=task)
    return made


def scale(api: docker.APIClient, service_id: str, replicas: int) -> None:
    service = inspect_service(api, service_id)
    if service is None:
        msg = f"The kernel's service {service_id[:12]} is gone"
        raise docker.errors.NotFound(msg)
    _update(api, service, mode={"Replicated": {"Replicas": replicas}})


#: What ``start`` does about a task: wait for it, or go on (it runs, or it ran and ended:
#: its exit is read like any other, with its code and log).
WAIT, GO_ON = "wait", "go on"


def task_outcome(task: Mapping[str, Any] | None, pending_for: float, patience: float) -> str:
    """:data:`WAIT` or :data:`GO_ON` for a starting kernel's task; raises why it will never
    run: no node can take it (``pending`` with a reason for ``patience`` seconds), no node
    has its image, or its node refused its ports."""
    status = (task or {}).get("Status") or {}
    state, err = str(status.get("State") or ""), str(status.get("Err") or "")
    if task is None or state in ("new", "allocated", "assigned", "accepted", "preparing"):
        return WAIT
    if state in ("ready", "starting"):
        return WAIT
    if state == "pending":
        if err and "port" in err.lower() and pending_for >= patience:
            # The scheduler avoids nodes where a host-mode port it publishes is taken
            # ("host-mode port already in use on 3 nodes"): fresh ports, as on an engine.
            msg = f"The kernel's ports are taken on every node: {err}"
            raise PortTaken(msg)
        if err and pending_for >= patience:
            raise Unschedulable(unschedulable_message(err, reservations(task)))
        return WAIT
    if state == "running":
        return GO_ON
    text = err or str(status.get("Message") or state)
    if any(m in text for m in NO_IMAGE):
        msg = (
            f"A swarm node could not start the kernel: {text}. Pull the image on every node "
            "(or push it to a registry the nodes reach, and pin it by digest)."
        )
        raise ImageNotFoundError(msg)
    if any(m in text.lower() for m in PORT_TAKEN):
        msg = f"The kernel's node refused its ports: {text}"
        raise PortTaken(msg)
    if (status.get("ContainerStatus") or {}).get("ContainerID") and state in ENDED:
        return GO_ON  # it ran: its exit code and log say why it ended
    msg = f"The swarm could not start the kernel's task ({state}): {text}"
    raise EngineError(msg)


def reservations(task: Mapping[str, Any] | None) -> str:
    """What the task reserves, in words: "1 GPU and 512 MiB of memory" ("" for nothing)."""
    reserved = (((task or {}).get("Spec") or {}).get("Resources") or {}).get("Reservations") or {}
    parts = []
    gpus = sum(
        int((r.get("DiscreteResourceSpec") or {}).get("Value") or 0)
        for r in reserved.get("GenericResources") or []
        if (r.get("DiscreteResourceSpec") or {}).get("Kind") == GPU_KIND
    )
    if gpus:
        parts.append(f"{gpus} GPU{'s' if gpus > 1 else ''} ({GPU_KIND})")
    if reserved.get("MemoryBytes"):
        parts.append(f"{human_size(int(reserved['MemoryBytes']))} of memory")
    return " and ".join(parts)


def unschedulable_message(err: str, asked: str = "") -> str:
    """Why no node takes the kernel, what it asks for (``asked``), and what to do."""
    reason = err.strip() or "no suitable node"
    if asked:
        reason += f"; it asks for {asked}"
    advice = (
        "Free what other kernels hold (stop one that uses a GPU or much memory), or ask for "
        "less: fewer GPUs (gpus), a smaller mem_limit or fewer cpus"
    )
    if "constraint" in reason or "platform" in reason:
        advice = (
            "Check the kernel's placement: no node meets its constraints (a node label, or the "
            "image's platform)"
        )
    return f"No node of the swarm can run this kernel now ({reason}). {advice}."


def remove(api: docker.APIClient, service_id: str, attempts: int = 10) -> None:
    """Remove the service and its secrets; gone already is fine. A secret still held by the
    service's task for a moment is tried again (bounded)."""
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_service(service_id)
    secrets = api.secrets(filters={"label": f"{labels.SERVICE}={service_id}"})
    for secret in secrets:
        for attempt in range(attempts):
            try:
                api.remove_secret(secret["ID"])
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError as e:
                if e.status_code != 409 or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))


def logs(api: docker.APIClient, service_id: str, tail: int) -> str:
    """The service's last ``tail`` lines of output ('' when it is gone)."""
    try:
        chunks = api.service_logs(service_id, stdout=True, stderr=True, tail=tail)
    except docker.errors.NotFound:
        return ""
    if isinstance(chunks, bytes | str):
        chunks = [chunks]
    text = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    return text.decode(errors="replace")

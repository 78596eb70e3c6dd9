"""Labels stamped on every container this package creates.

Everything under :data:`PREFIX` is ours: the reaper, the REST API and the tests find our
containers by these labels and never by name.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from functools import cache

from .._version import __version__

PREFIX = "org.jupyter-mlcontainer"

MANAGED = f"{PREFIX}.managed"
KERNEL_ID = f"{PREFIX}.kernel-id"
KERNEL_NAME = f"{PREFIX}.kernel-name"
SERVER_INSTANCE = f"{PREFIX}.server-instance"
SERVER_HOST = f"{PREFIX}.server-host"
SERVER_PID = f"{PREFIX}.server-pid"
OWNER = f"{PREFIX}.owner"
VERSION = f"{PREFIX}.version"
NETWORK_MODE = f"{PREFIX}.network"
#: Started ready for a warm pool (kernel/pool.py); the kernel id is the pool's, not the
#: Jupyter kernel's that claims it later.
POOLED = f"{PREFIX}.pooled"
RUNTIME = f"{PREFIX}.runtime"
RUNTIME_SEAL = f"{PREFIX}.runtime-sealed"
#: The digest of a runtime's files when it was sealed (on the seal volume).
RUNTIME_DIGEST = f"{PREFIX}.runtime-digest"
PURPOSE = f"{PREFIX}.purpose"
#: The image a kernel asked for, on a Swarm service whose task names it by digest or id.
IMAGE = f"{PREFIX}.image"
#: The GPUs a kernel's container holds (UUIDs, comma-separated): the GPU ledger's state
#: (core/ledger.py) is the set of live containers with this label.
GPUS = f"{PREFIX}.gpus"
#: Whom a kernel is for, as the ledger names holders and quotas count (else OWNER: this
#: process's own user).
USER = f"{PREFIX}.user"
#: A kernel's memory limit in bytes (quotas add them up).
MEMORY = f"{PREFIX}.memory"
#: The fixed subnet of the kernels' network (kernels pick their addresses on it).
SUBNET = f"{PREFIX}.subnet"
#: A Swarm secret (a kernel's files): the id of the service it belongs to, removed with it.
SERVICE = f"{PREFIX}.service"
#: A user's HOME volume: whose (uid) and for which image (the reference it was made for).
PURPOSE_HOME = "home"
HOME_UID = f"{PREFIX}.home-uid"
HOME_IMAGE = f"{PREFIX}.home-image"


@cache
def server_instance_id() -> str:
    """A random id for this process, the same for every kernel it starts."""
    return uuid.uuid4().hex


def process_owner() -> str:
    """The user this process runs as (its uid when it has no name)."""
    return _owner()


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def owner_labels() -> dict[str, str]:
    """The labels of every container this process creates: ours, and whose (the instance id
    names its lease, see docker/leases.py)."""
    return {
        MANAGED: "true",
        SERVER_INSTANCE: server_instance_id(),
        SERVER_HOST: socket.gethostname(),
        SERVER_PID: str(os.getpid()),
        OWNER: _owner(),
        VERSION: __version__,
    }


def kernel_labels(
    kernel_id: str, kernel_name: str, network: str, pooled: bool = False
) -> dict[str, str]:
    """The labels of one kernel's container."""
    found = {
        **owner_labels(),
        KERNEL_ID: kernel_id,
        KERNEL_NAME: kernel_name,
        NETWORK_MODE: network,
    }
    if pooled:
        found[POOLED] = "true"
    return found


def managed_filter(**extra: str) -> dict[str, list[str]]:
    """A ``filters`` argument for the engine's container list: our containers only."""
    wanted = [f"{MANAGED}=true"] + [f"{key}={value}" for key, value in extra.items()]
    return {"label": wanted}


def managed_filter_has(label: str) -> dict[str, list[str]]:
    """Our containers that carry ``label`` (with any value)."""
    return {"label": [f"{MANAGED}=true", label]}

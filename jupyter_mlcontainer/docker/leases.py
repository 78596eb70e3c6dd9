"""Who still owns a container: a lease file per process that starts containers.

Each process (a Jupyter server, nbconvert, papermill, `jupyter mlcontainer`) that starts a
container takes a lease: a file named after its instance id in its Jupyter runtime dir, locked
(``flock``) for as long as the process lives. The kernel must die with its process, however
it dies (SIGKILL included): the kernel itself watches the lease's renewals (see
:mod:`jupyter_mlcontainer.core.plan`), and a later process reaps what is left. A lease whose
file can be locked belongs to a dead process; one that is locked belongs to a live one; a
container whose instance has no lease file in *our* runtime dir belongs to another runtime
dir (another user or server setup) and is never ours to judge.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from ..core import labels

_lock = threading.Lock()
#: (instance id, open locked file) of this process's lease, once taken.
_held: tuple[str, int] | None = None


def lease_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / "mlcontainer-leases"


def hold() -> str:
    """Take this process's lease (once); return its instance id."""
    global _held
    with _lock:
        instance = labels.server_instance_id()
        if _held is not None and _held[0] == instance:
            return instance
        folder = lease_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / f"{instance}.lease", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.write(fd, json.dumps(record).encode())
        _held = (instance, fd)
        return instance


def forget_after_fork() -> None:
    """In a forked child: the parent's lease stays the parent's (closing our copy of the
    descriptor does not unlock it); the child takes its own on first use."""
    global _held, _lock
    _lock = threading.Lock()
    if _held is not None:
        os.close(_held[1])
        _held = None


def expired(instance: str) -> bool | None:
    """True: the lease's process is gone. False: it lives (the file is locked). None: no
    lease of that instance here (another runtime dir's, or reaped already)."""
    path = lease_dir() / f"{instance}.lease"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock we may have taken
    return True


def release(instance: str) -> None:
    """Forget an expired lease once nothing of its process is left."""
    (lease_dir() / f"{instance}.lease").unlink(missing_ok=True)

"""Who a container kernel runs as (one rule, for the provisioner and the server's views)."""

from __future__ import annotations

import os


def kernel_user(folder: str, uid: int | None = None, gid: int | None = None) -> tuple[int, int]:
    """The uid and gid of a kernel that starts in ``folder``: ``uid``/``gid`` when set (the
    kernelspec or the server's config); else this process's own; else, for a process run as
    root, the owner of ``folder`` (a notebook's folder belongs to its user), root when it
    cannot be read."""
    if uid is not None:
        if gid is None:
            gid = os.getgid() if uid == os.getuid() else uid
        return uid, gid
    if os.getuid() != 0:
        return os.getuid(), gid if gid is not None else os.getgid()
    try:
        st = os.stat(folder)
    except OSError:
        return 0, 0 if gid is None else gid
    return st.st_uid, gid if gid is not None else st.st_gid

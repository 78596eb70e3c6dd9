"""Whose HOME volumes a single-user server shows: the uids its container kernels run as."""

from __future__ import annotations

import os
from typing import Any

from ..core import kernelspec as ks
from ..kernel.identity import kernel_user


def kernel_uids(config: Any, root_dir: str | None) -> set[str]:
    """The uids this server's container kernels run as, as the provisioner picks them.

    ``MLContainerProvisioner.uid`` when the server's config or an installed kernelspec sets
    it; otherwise the server's own uid, or, for a server run as root, the owner of its root
    directory (kernels of root's server run as the owner of the notebook's folder).
    """
    uids: set[str] = set()
    section = config.get("MLContainerProvisioner") if config is not None else None
    configured = section.get("uid") if section is not None else None
    for spec in ks.installed_specs():
        if spec.is_container:
            own = ks.provisioner_config(spec.spec).get("uid")
            if own is not None:
                uids.add(str(own))
    uid = int(configured) if configured is not None else None
    uids.add(str(kernel_user(root_dir or os.getcwd(), uid)[0]))
    return uids

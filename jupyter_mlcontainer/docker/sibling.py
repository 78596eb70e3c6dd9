"""A server that runs in a container itself (Jupyter in Compose): its kernels are sibling
containers on the same engine, and the folders it sees are mounted from the engine's host at
other paths. Its own container's bind mounts give the translation (``path_map``), so that a
kernel mounts the host's folder where the server has its notebooks.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from . import containers

if TYPE_CHECKING:
    from .engine import Engine

#: Docker mounts each container's hostname, hosts and resolv.conf files from
#: /var/lib/docker/containers/<id>/: the id in this process's mount table names its container.
_CONTAINER_FILE = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)")


def own_container_id(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """This process's container id, or None outside a Docker container."""
    try:
        text = Path(mountinfo).read_text()
    except OSError:
        return None
    found = _CONTAINER_FILE.search(text)
    return found.group(1) if found else None


_discovered: dict[str, dict[str, str]] = {}


@functools.cache
def _this_process_container() -> str | None:
    return own_container_id()  # a process does not move between containers


async def own_path_map(engine: Engine) -> dict[str, str]:
    """{path in this container: path on the engine's host} of this container's bind mounts;
    {} outside a container, or when the engine does not know it (another engine's)."""
    container_id = _this_process_container()
    if container_id is None:
        return {}
    key = f"{engine.base_url}:{container_id}"
    if key not in _discovered:
        state = await containers.inspect(engine, container_id)
        mounts = (state or {}).get("Mounts") or []
        _discovered[key] = {
            str(m["Destination"]): str(m["Source"])
            for m in mounts
            if m.get("Type") == "bind" and m.get("Destination") and m.get("Source")
        }
    return dict(_discovered[key])

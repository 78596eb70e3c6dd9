"""The kernels' network on an engine: made once, found by its labels, never by its name.

Docker allows several networks of one name, and its ``CheckDuplicate`` is best effort: starts
at once on a new engine (a pool's prefill, a user opening several notebooks, a team's gateway)
each made one, and from then on every container that named the network was refused ("network
mlc-kernels is ambiguous"). So: one creation at a time per process, the network referred to
by its id, and when several of ours share the name anyway (made by other processes at the same
moment), every process agrees on the oldest and removes the others that no container uses.

Blocking functions of a ``docker.APIClient``, which :class:`~.engine.Engine` runs off the
loop; :class:`KernelNetworks` is what one engine's kernels ask (each network looked up once).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.types

from ..core import labels
from ..core.backend import KernelNetwork
from ..core.exceptions import EngineError

if TYPE_CHECKING:
    from .engine import Engine

#: The purpose label of the kernels' network (and of the short-lived one that picks a subnet).
PURPOSE_NETWORK = "kernel-network"
PURPOSE_PROBE = "kernel-network-probe"
#: After making the network: how long until one made by another process at the same moment
#: shows in the engine's list (once per engine, at its first kernel start).
SETTLE_SECONDS = 0.3


@dataclass(frozen=True)
class Duplicates:
    """Networks of ours that share a name: the one every process uses, and the others."""

    name: str
    kept: str
    others: tuple[str, ...]


def _ours(network: dict[str, Any]) -> bool:
    return (network.get("Labels") or {}).get(labels.MANAGED) == "true"


def _named(api: docker.APIClient, name: str) -> list[dict[str, Any]]:
    """Every network called exactly ``name`` (the engine's name filter matches substrings),
    oldest first: the order every process agrees on."""
    found = [n for n in api.networks(names=[name]) if n.get("Name") == name]
    return sorted(found, key=lambda n: (str(n.get("Created") or ""), str(n.get("Id"))))


def _remove_unused(api: docker.APIClient, network_id: str) -> bool:
    """Remove a network no container uses; False when one does (or it is gone already)."""
    try:
        api.remove_network(network_id)
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as e:
        if e.status_code in (403, 409) or "active endpoints" in str(e.explanation or e):
            return False
        raise
    return True


def _as_kernel_network(found: dict[str, Any]) -> KernelNetwork:
    subnet = (found.get("Labels") or {}).get(labels.SUBNET) or None
    return KernelNetwork(str(found["Id"]), str(found["Name"]), subnet)


def _resolve(api: docker.APIClient, name: str) -> KernelNetwork | None:
    """The network called ``name`` that kernels use, removing unused duplicates of ours; None
    when there is none (or only an unused one of an older version, removed here)."""
    found = _named(api, name)
    ours = [n for n in found if _ours(n)]
    if not ours:
        if len(found) > 1:
            msg = (
                f"{len(found)} networks on the Docker engine are called {name!r} and none was "
                f"made by jupyter-mlcontainer: remove the extra ones (`docker network ls "
                f"--filter name={name}`, then `docker network rm ID`) or set "
                "MLContainerProvisioner.bridge_network to another name."
            )
            raise EngineError(msg)
        return _as_kernel_network(found[0]) if found else None
    with_subnet = [n for n in ours if (n.get("Labels") or {}).get(labels.SUBNET)]
    for older in (n for n in ours if n not in with_subnet):
        # Of an older version (no fixed subnet): made again once no container uses it.
        if not _remove_unused(api, str(older["Id"])) and not with_subnet:
            return _as_kernel_network(older)
    if not with_subnet:
        return None
    kept, *others = with_subnet
    for other in others:
        _remove_unused(api, str(other["Id"]))
    return _as_kernel_network(kept)


def _free_subnet(api: docker.APIClient, name: str) -> dict[str, Any]:
    """A subnet the engine considers free (it picks one for a short-lived network)."""
    probe = api.create_network(
        f"{name}-probe-{os.getpid()}-{os.urandom(3).hex()}",
        driver="bridge",
        labels={labels.MANAGED: "true", labels.PURPOSE: PURPOSE_PROBE},
    )
    try:
        return dict(api.inspect_network(probe["Id"])["IPAM"]["Config"][0])
    finally:
        api.remove_network(probe["Id"])


def ensure(api: docker.APIClient, name: str) -> KernelNetwork:
    """The kernels' network ``name``, made (inter-container traffic off, a fixed subnet) when
    there is none. The caller makes sure one process creates one at a time."""
    existing = _resolve(api, name)
    if existing is not None:
        return existing
    config = _free_subnet(api, name)
    try:
        _create(api, name, config)
    except docker.errors.APIError as e:
        if e.status_code != 409:  # 409: another process made it meanwhile
            raise
    # Another process may have made one at the same moment, visible a moment later: look
    # again after that moment, so that every process settles on the same (oldest) network.
    time.sleep(SETTLE_SECONDS)
    made = _resolve(api, name)
    if made is None:  # removed by someone else in between
        msg = f"The kernels' network {name!r} disappeared right after it was made; try again."
        raise EngineError(msg)
    return made


def _create(api: docker.APIClient, name: str, config: dict[str, Any]) -> None:
    api.create_network(
        name,
        driver="bridge",
        options={"com.docker.network.bridge.enable_icc": "false"},
        ipam=docker.types.IPAMConfig(
            pool_configs=[
                docker.types.IPAMPool(subnet=config["Subnet"], gateway=config.get("Gateway"))
            ]
        ),
        labels={
            labels.MANAGED: "true",
            labels.PURPOSE: PURPOSE_NETWORK,
            labels.SUBNET: config["Subnet"],
        },
        check_duplicate=True,  # best effort only: _resolve settles what slips through
    )


def duplicates(api: docker.APIClient) -> list[Duplicates]:
    """Names that several of our networks share (what ``doctor`` reports and repairs)."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for network in api.networks(filters={"label": [f"{labels.MANAGED}=true"]}):
        by_name.setdefault(str(network["Name"]), []).append(network)
    found = []
    for name, group in sorted(by_name.items()):
        if len(group) > 1:
            group.sort(key=lambda n: (str(n.get("Created") or ""), str(n.get("Id"))))
            found.append(
                Duplicates(name, str(group[0]["Id"]), tuple(str(n["Id"]) for n in group[1:]))
            )
    return found


def _repair(api: docker.APIClient, found: Duplicates) -> list[str]:
    """Remove the duplicates that no container uses; returns the ids still in use."""
    return [other for other in found.others if not _remove_unused(api, other)]


async def settle_duplicates(engine: Engine, repair: bool = False) -> list[tuple[str, list[str]]]:
    """Names that several of this project's networks share on ``engine``, each with the ids
    still in use after ``repair`` removed the unused copies (all copies without ``repair``)."""

    def check(api: docker.APIClient) -> list[tuple[str, list[str]]]:
        found = duplicates(api)
        if not repair:
            return [(d.name, list(d.others)) for d in found]
        return [(d.name, _repair(api, d)) for d in found]

    result = await engine.call("list the project's networks", check)
    if repair:
        engine.kernel_networks.forget()
    return result


class KernelNetworks:
    """One engine's kernels' networks as this process found them: each looked up (and made)
    once, and whether this process reaches containers on it by their own address."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._found: dict[str, KernelNetwork] = {}
        self._lock = threading.Lock()
        self._routable: dict[str, bool] = {}

    async def ensure(self, name: str) -> KernelNetwork:
        """The bridge network ``name`` kernels join, made (inter-container traffic off, a
        fixed subnet) unless it exists; see :func:`ensure`.

        Kept between kernels and servers (like an image): later starts only look it up. Its
        subnet is fixed at creation (one the engine picked as free), which is what lets a
        kernel keep its address across restarts. Containers name it by its id.
        """
        cached = self._found.get(name)
        if cached is not None:
            return cached

        def made(api: docker.APIClient) -> KernelNetwork:
            with self._lock:  # this process's concurrent first starts make one
                return ensure(api, name)

        found = await self._engine.call(f"create the kernels' network {name!r}", made)
        self._found[name] = found
        return found

    def forget(self, name: str | None = None) -> None:
        """Look ``name`` (None: every network) up again at the next start: it was removed or
        repaired."""
        if name is None:
            self._found.clear()
        else:
            self._found.pop(name, None)
        self._routable.clear()

    async def routable(self, network: str) -> bool:
        """Whether this process reaches containers on ``network`` by their own address: the
        engine is on this machine (a local socket, not Docker Desktop's VM) and the network's
        gateway is one of this machine's addresses. Cached per network."""
        if network in self._routable:
            return self._routable[network]
        scheme = self._engine.endpoint.scheme
        reachable = False
        if scheme in ("unix", "http+unix", "") and sys.platform.startswith("linux"):

            def gateways(api: docker.APIClient) -> list[str]:
                if "Docker Desktop" in str(api.info().get("OperatingSystem", "")):
                    return []
                configs = (api.inspect_network(network).get("IPAM") or {}).get("Config") or []
                return [str(c["Gateway"]) for c in configs if c.get("Gateway")]

            found = await self._engine.call(f"inspect the kernels' network {network!r}", gateways)
            reachable = any(_local_address(gateway) for gateway in found)
        self._routable[network] = reachable
        return reachable


def _local_address(address: str) -> bool:
    """Whether ``address`` is one of this machine's own (binding to it works)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((address.split("/")[0], 0))
    except OSError:
        return False
    return True

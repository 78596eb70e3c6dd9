"""Containers on an engine: the kernel's (create, files in, start, inspect, signal, remove,
log, resource use), the project's list, and short-lived helper containers.

Each verb is one :meth:`~.engine.Engine.call`: the blocking SDK call runs off the event loop
and the engine's refusals arrive as the typed errors of ``core/exceptions.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions

from ..core.exceptions import EngineError
from ..core.labels import owner_labels
from . import leases

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)


async def create(
    engine: Engine,
    create_args: dict[str, Any],
    host_config: dict[str, Any],
    raw_host_config: dict[str, Any] | None = None,
) -> str:
    """Create a container (the SDK's ``create_container`` arguments and host config, plus
    host config keys the SDK does not know); its id. A creation cancelled meanwhile still
    removes the container once the engine has made it."""

    def made(api: docker.APIClient) -> str:
        leases.hold()  # before anything exists that a crash could leave behind
        hc = api.create_host_config(**host_config)
        hc.update(raw_host_config or {})
        created = api.create_container(host_config=hc, **create_args)
        for warning in created.get("Warnings") or []:
            log.warning("Docker: %s", warning)
        return str(created["Id"])

    creating = asyncio.ensure_future(
        engine.call(f"create a container of image {create_args.get('image')!r}", made)
    )
    try:
        return await asyncio.shield(creating)
    except asyncio.CancelledError:
        # The engine goes on creating it: remove it once it exists, or nobody would.
        with contextlib.suppress(Exception):
            await remove(engine, await creating)
        raise


async def put_archive(engine: Engine, container_id: str, path: str, data: bytes) -> None:
    """Unpack the tar ``data`` at ``path`` in the (not yet started) container."""

    def put(api: docker.APIClient) -> None:
        if not api.put_archive(container_id, path, io.BytesIO(data).getvalue()):
            msg = f"The engine did not accept files for {path} in container {container_id[:12]}"
            raise EngineError(msg)

    await engine.call(f"copy the kernel's files to {path} in the container", put)


async def start(engine: Engine, container_id: str) -> None:
    """Start it: ``PortTaken`` / ``AddressTaken`` when a host port or its address is in use."""
    await engine.call("start the kernel's container", lambda api: api.start(container_id))


async def inspect(engine: Engine, container_id: str) -> dict[str, Any] | None:
    """The container's inspect data, or None when it is gone."""

    def inspected(api: docker.APIClient) -> dict[str, Any] | None:
        try:
            return api.inspect_container(container_id)  # type: ignore[no-any-return]
        except docker.errors.NotFound:
            return None

    return await engine.call("inspect the kernel's container", inspected)


async def kill(engine: Engine, container_id: str, signal: str = "SIGKILL") -> bool:
    """Send ``signal``; False when the container is gone or not running (not an error)."""

    def killed(api: docker.APIClient) -> bool:
        try:
            api.kill(container_id, signal=signal)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as e:
            if e.status_code == 409:  # not running
                return False
            raise
        return True

    return await engine.call(f"send {signal} to the kernel's container", killed)


async def remove(engine: Engine, container_id: str) -> None:
    """Remove the container, running or not; already gone is fine."""
    await engine.call("remove the kernel's container", remove_now, container_id)
    engine.forget_exit(container_id)


def remove_now(api: docker.APIClient, container_id: str) -> None:
    """Remove the container (blocking, on an engine thread); already gone, or being removed by
    another request, is fine."""
    try:
        api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        if e.status_code == 409 and "already in progress" in str(e.explanation):
            return
        raise


async def logs(engine: Engine, container_id: str, tail: int = 20) -> str:
    """The last ``tail`` lines of the container's output ('' when it is gone)."""

    def read(api: docker.APIClient) -> str:
        try:
            raw = api.logs(container_id, stdout=True, stderr=True, tail=tail)
        except docker.errors.APIError as e:
            if _gone(e):
                return ""
            raise
        return bytes(raw).decode("utf-8", errors="replace")

    return await engine.call("read the kernel container's log", read)


async def stats(engine: Engine, container_id: str) -> dict[str, Any] | None:
    """One sample of the container's resource use (None when it is gone)."""

    def sample(api: docker.APIClient) -> dict[str, Any] | None:
        try:
            return api.stats(container_id, stream=False, one_shot=True)  # type: ignore[no-any-return]
        except docker.errors.APIError as e:
            if _gone(e):
                return None
            raise
        except ValueError:  # an empty body: the engine tore the container down meanwhile
            return None

    return await engine.call("read the kernel container's resource use", sample)


async def list_matching(engine: Engine, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container (running or not) that matches the engine's list ``filters``."""
    return await engine.call(
        "list containers", lambda api: list(api.containers(all=True, filters=filters))
    )


async def run(
    engine: Engine,
    image: str,
    command: list[str],
    *,
    labels: dict[str, str],
    mounts: list[Any] | None = None,
    user: str | None = None,
    archive: tuple[str, bytes] | None = None,
    timeout: float = 300,
    cap_add: list[str] | None = None,
    device_requests: list[Any] | None = None,
) -> tuple[int, str]:
    """Run a short-lived helper container to completion; return (exit code, output).

    No network; the image's entrypoint is bypassed; ``archive`` (path, tar) is unpacked
    into the container before it starts; the container is always removed.
    """

    def ran(api: docker.APIClient) -> tuple[int, str]:
        host_config = api.create_host_config(
            network_mode="none",
            mounts=mounts or [],
            init=True,
            cap_drop=["ALL"],
            cap_add=cap_add or None,
            security_opt=["no-new-privileges:true"],
            device_requests=device_requests or None,
        )
        leases.hold()
        created = api.create_container(
            image,
            command=command,
            entrypoint=[],
            user=user,
            labels={**owner_labels(), **labels},
            host_config=host_config,
            detach=True,
        )
        container_id = created["Id"]
        try:
            if archive is not None:
                api.put_archive(container_id, archive[0], archive[1])
            api.start(container_id)
            try:
                result = api.wait(container_id, timeout=timeout)
            except requests.exceptions.ReadTimeout as e:
                msg = f"The helper container of image {image!r} ran longer than {timeout:.0f} s"
                raise EngineError(msg) from e
            output = bytes(api.logs(container_id, stdout=True, stderr=True)).decode(
                errors="replace"
            )
            return int(result.get("StatusCode", -1)), output
        finally:
            remove_now(api, container_id)

    return await engine.call(f"run a helper container of image {image!r}", ran)


def _gone(error: docker.errors.APIError) -> bool:
    """The container no longer exists, or the engine is removing it (409 "marked for
    removal", "removal in progress", "dead"): either way there is nothing to read."""
    if isinstance(error, docker.errors.NotFound):
        return True
    return bool(error.status_code == 409)

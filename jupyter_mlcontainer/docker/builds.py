"""Derived images on an engine (``jupyter mlcontainer extend``): a build container of the
parent image runs an install and is committed; images found by label, tagged, pushed,
removed; a running container's file changes (what a kernel installed into itself).

No Dockerfile and no build context: the parent is used exactly as pinned (its digest), the
files the install needs go into the build container as a tar, and the commit keeps the
parent's entrypoint, command, user and labels, adding ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions

from ..core import labels
from ..core.exceptions import EngineError, ImagePullError, without_repeats
from . import leases
from .containers import remove_now

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)


async def derive(
    engine: Engine,
    parent: str,
    script: str,
    *,
    archive: tuple[str, Path],
    image_labels: Mapping[str, str],
    network: bool,
    timeout: float = 900,
    on_line: Callable[[str], None] | None = None,
) -> tuple[str | None, str]:
    """Run ``sh -c script`` as root in a container of ``parent`` (``archive`` unpacked into it
    first; no network unless ``network``) and commit it with ``image_labels``: (the new
    image's id, or None when the script failed; its output). The container is always
    removed."""

    def built(api: docker.APIClient) -> tuple[str | None, str]:
        config = (api.inspect_image(parent).get("Config")) or {}
        leases.hold()
        created = api.create_container(
            parent,
            command=["sh", "-c", script],
            entrypoint=[],
            user="0",
            labels={**labels.owner_labels(), labels.MANAGED: "true", labels.PURPOSE: "extend"},
            host_config=api.create_host_config(
                network_mode="bridge" if network else "none",
                security_opt=["no-new-privileges:true"],
            ),
            detach=True,
        )
        container_id = created["Id"]
        try:
            with open(archive[1], "rb") as tar:  # streamed, never read into memory whole
                api.put_archive(container_id, archive[0], tar)
            api.start(container_id)
            lines: list[str] = []
            # A streamed log has no read timeout: a build that hangs is killed at the limit.
            expired = threading.Event()
            timer = threading.Timer(timeout, _kill, (api, container_id, expired))
            timer.daemon = True
            timer.start()
            try:
                for chunk in api.logs(container_id, stream=True, follow=True):
                    for line in bytes(chunk).decode(errors="replace").splitlines():
                        lines.append(line)
                        if on_line is not None:
                            on_line(line)
                code = int(api.wait(container_id, timeout=30).get("StatusCode", -1))
            except requests.exceptions.ReadTimeout:
                expired.set()
            finally:
                timer.cancel()
            if expired.is_set():
                msg = (
                    f"The build of an image FROM {parent!r} ran longer than {timeout:.0f} s "
                    "and was stopped (nothing was changed)"
                )
                raise EngineError(msg)
            output = "\n".join(lines)
            if code != 0:
                return None, output
            committed = api.commit(
                container_id,
                changes=_restore(config),
                conf={"Labels": {**(config.get("Labels") or {}), **image_labels}},
            )
            return str(committed["Id"]), output
        finally:
            remove_now(api, container_id)

    return await engine.call(f"build an image FROM {parent!r}", built)


def _kill(api: docker.APIClient, container_id: str, expired: threading.Event) -> None:
    expired.set()
    with contextlib.suppress(docker.errors.APIError):
        api.kill(container_id)


def _restore(config: Mapping[str, Any]) -> list[str]:
    """Dockerfile instructions that give the committed image its parent's entrypoint,
    command, user and working directory back (the build container had its own)."""
    entrypoint = config.get("Entrypoint") or []
    changes = [f"ENTRYPOINT {json.dumps(list(entrypoint))}", f"USER {config.get('User') or 'root'}"]
    if config.get("Cmd"):
        changes.append(f"CMD {json.dumps(list(config['Cmd']))}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    return changes


async def find(engine: Engine, label: str, value: str) -> dict[str, Any] | None:
    """The newest image labelled ``label=value``, inspected (None: none)."""

    def found(api: docker.APIClient) -> dict[str, Any] | None:
        listed = api.images(filters={"label": f"{label}={value}"})
        if not listed:
            return None
        newest = max(listed, key=lambda image: image.get("Created") or 0)
        return api.inspect_image(newest["Id"])  # type: ignore[no-any-return]

    return await engine.call(f"find the image labelled {label}={value}", found)


async def tag(engine: Engine, image_id: str, repository: str, tag_name: str) -> None:
    await engine.call(
        f"tag {image_id} as {repository}:{tag_name}",
        lambda api: api.tag(image_id, repository, tag_name),
    )


async def push(engine: Engine, repository: str, tag_name: str) -> str:
    """Push ``repository:tag``; the digest the registry answered (``sha256:…``)."""

    def pushed(api: docker.APIClient) -> str:
        digest = ""
        try:
            for event in api.push(repository, tag=tag_name, stream=True, decode=True):
                if "error" in event:
                    raise ImagePullError(_push_failed(repository, str(event["error"])))
                aux = event.get("aux") or {}
                digest = str(aux.get("Digest") or digest)
        except docker.errors.APIError as e:
            raise ImagePullError(_push_failed(repository, str(e.explanation or e))) from e
        if not digest:
            raise ImagePullError(_push_failed(repository, "the registry answered no digest"))
        return digest

    return await engine.call(f"push {repository}:{tag_name}", pushed, executor=engine.pull_executor)


def _push_failed(repository: str, reason: str) -> str:
    return (
        f"Could not push the new image to {repository!r}: {without_repeats(reason).strip()}. "
        "Run 'docker login REGISTRY' if the registry needs it."
    )


async def remove(engine: Engine, ref: str) -> None:
    """Remove an image reference (a tag, or an image with no other tags); gone is fine."""

    def removed(api: docker.APIClient) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_image(ref, noprune=False)

    await engine.call(f"remove image {ref!r}", removed)


async def changes(engine: Engine, container_id: str) -> list[dict[str, Any]]:
    """The container's file changes against its image ([] when it is gone)."""

    def changed(api: docker.APIClient) -> list[dict[str, Any]]:
        try:
            return list(api.diff(container_id) or [])
        except docker.errors.NotFound:
            return []

    return await engine.call("list a container's changes", changed)

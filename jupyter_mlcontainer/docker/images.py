"""Images on an engine: inspect, list, pull (on the engine's own pull threads), obtain as a
pull policy says, and probe (what Python an image has)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import docker.utils

from ..agent import program
from ..agent.protocol import PROBE_MARKER
from ..core import labels
from ..core.exceptions import (
    ImageNotFoundError,
    ImageProbeError,
    ImagePullError,
    InvalidReferenceError,
    without_repeats,
)
from ..core.probe import ImageProbe
from ..core.progress import PullProgress
from ..core.reference import check_reference
from . import containers

if TYPE_CHECKING:
    from .engine import Engine

    Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: Exit codes of a command that could not be executed (tini/sh: not found, not executable).
_NOT_RUNNABLE = {126, 127}
log = logging.getLogger(__name__)


async def inspect(engine: Engine, ref: str) -> dict[str, Any] | None:
    """The image's inspect data, or None when the engine does not have it."""

    def inspected(api: docker.APIClient) -> dict[str, Any] | None:
        try:
            return api.inspect_image(ref)  # type: ignore[no-any-return]
        except docker.errors.ImageNotFound:
            return None

    return await engine.call(f"inspect image {ref!r}", inspected)


async def list_all(engine: Engine) -> list[dict[str, Any]]:
    """The engine's images (its list entries)."""
    return await engine.call("list images", lambda api: list(api.images()))


async def pull(
    engine: Engine,
    ref: str,
    logger: Logger = log,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Pull ``ref``, logging progress every few seconds; return the image's inspect data.
    Runs on the engine's pull threads, so that a long pull never holds up a kernel."""
    try:
        check_reference(ref)
    except ValueError as e:
        raise InvalidReferenceError(str(e)) from None
    progress = PullProgress(ref)

    def pulled(api: docker.APIClient) -> dict[str, Any]:
        repository, tag = docker.utils.parse_repository_tag(ref)
        logger.info("Pulling image %s", ref)
        try:
            stream = api.pull(repository, tag=tag or "latest", stream=True, decode=True)
            for event in stream:
                if "error" in event:
                    raise ImagePullError(_pull_failed(ref, str(event["error"])))
                if on_event is not None:
                    on_event(event)
                line = progress.feed(event)
                if line:
                    logger.info("%s", line)
        except docker.errors.APIError as e:
            raise ImagePullError(_pull_failed(ref, str(e.explanation or e))) from e
        logger.info("Pulled image %s (%s)", ref, progress.digest or "no digest reported")
        return api.inspect_image(ref)  # type: ignore[no-any-return]

    return await engine.call(f"pull image {ref!r}", pulled, executor=engine.pull_executor)


def _pull_failed(ref: str, reason: str) -> str:
    # Plain text: it is read in terminals and in JupyterLab's error dialogs alike.
    return (
        f"Could not pull image {ref!r}: {without_repeats(reason).strip().rstrip('.')}. Check the "
        "image name and tag ('docker images' lists the engine's own), run 'docker login "
        "REGISTRY' if the registry is private, or build or load the image onto the engine first."
    )


async def probe_image(engine: Engine, image: str) -> ImageProbe:
    """Run the probe in a throw-away container of ``image`` (``python3``, then ``python``)."""
    outputs = []
    for python in ("python3", "python"):
        code, output = await containers.run(
            engine,
            image,
            [python, "-c", program("probe")],
            labels={labels.MANAGED: "true", labels.PURPOSE: "probe"},
            timeout=180,
        )
        if code == 0:
            try:
                return ImageProbe.from_output(output)
            except ValueError as e:
                msg = f"Could not probe image {image!r}: {e}"
                raise ImageProbeError(msg) from e
        outputs.append(output.strip())
        if code not in _NOT_RUNNABLE:
            msg = (
                f"The probe of image {image!r} failed (exit code {code}):\n{output.strip()[-2000:]}"
            )
            raise ImageProbeError(msg)
    msg = (
        f"Image {image!r} has no Python: neither `python3` nor `python` runs in it "
        f"({outputs[-1][-300:] if outputs else 'no output'}). Kernels need Python 3 in the "
        "image; choose an image that has it (for example python:3.11-slim)."
    )
    raise ImageProbeError(msg)


async def packages(engine: Engine, image: str) -> dict[str, str]:
    """Every Python distribution in ``image`` (the probe's package list)."""
    probe = await probe_image(engine, image)  # which Python the image runs, and that it has one
    code, output = await containers.run(
        engine,
        image,
        [probe.python, "-c", program("probe"), "packages"],
        labels={labels.MANAGED: "true", labels.PURPOSE: "probe"},
        timeout=180,
    )
    if code != 0:
        msg = (
            f"Could not list the packages of image {image!r} (exit code {code}):\n{output[-2000:]}"
        )
        raise ImageProbeError(msg)
    for line in output.splitlines():
        if line.startswith(PROBE_MARKER):
            return {str(k): str(v) for k, v in json.loads(line[len(PROBE_MARKER) :]).items()}
    msg = f"Listing the packages of image {image!r} printed nothing:\n{output[-2000:]}"
    raise ImageProbeError(msg)


async def obtain_image(
    engine: Engine,
    image: str,
    policy: str,
    log: Logger,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The image's inspect data, pulling it as ``policy`` (missing/always/never) says."""
    if policy == "always":
        return await pull(engine, image, log, on_event)
    data = await inspect(engine, image)
    if data is not None:
        return data
    if policy == "never":
        msg = (
            f"Image {image!r} is not on the Docker engine ({engine.address}) and "
            f"pull_policy is 'never'. Get it with `docker pull {image}` (or build/load it "
            "there), or set pull_policy to 'missing'."
        )
        raise ImageNotFoundError(msg)
    log.info("Image %s is not on the engine: pulling it", image)
    return await pull(engine, image, log, on_event)

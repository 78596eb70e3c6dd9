"""Image operations shared by the CLI, the provisioner and the server extension."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..agent import program
from ..core import labels
from ..core.exceptions import ImageNotFoundError, ImageProbeError
from ..core.probe import ImageProbe
from .engine import Engine

#: Exit codes of a command that could not be executed (tini/sh: not found, not executable).
_NOT_RUNNABLE = {126, 127}


async def probe_image(engine: Engine, image: str) -> ImageProbe:
    """Run the probe in a throw-away container of ``image`` (``python3``, then ``python``)."""
    outputs = []
    for python in ("python3", "python"):
        code, output = await engine.run(
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


async def obtain_image(
    engine: Engine,
    image: str,
    policy: str,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The image's inspect data, pulling it as ``policy`` (missing/always/never) says."""
    if policy == "always":
        return await engine.pull(image, log, on_event)
    data = await engine.image_inspect(image)
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
    return await engine.pull(image, log, on_event)

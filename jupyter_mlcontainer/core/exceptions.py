"""The project's exceptions: each message says what went wrong and what to do about it.

They are also tornado ``HTTPError``s: Jupyter Server answers any other exception raised while
starting a kernel with a bare "Unhandled error", so this is what carries our message to the
user's error dialog in JupyterLab. Outside a server they behave like ``RuntimeError``.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado.web import HTTPError


class MLContainerError(HTTPError, RuntimeError):
    """Base class of every error this package raises on purpose."""

    status_code_default = 500
    reason_default = "Container kernel error"

    def __init__(self, message: str):
        # Jupyter Server's API handlers show log_message as is (never formatted with args).
        super().__init__(self.status_code_default, message, reason=self.reason_default)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))


class EngineUnavailableError(MLContainerError):
    """The Docker engine cannot be reached."""

    status_code_default = 503
    reason_default = "Docker engine unavailable"


class EngineError(MLContainerError):
    """The Docker engine refused a request (disk full, bad argument, ...)."""


class ImageNotFoundError(MLContainerError):
    """The image is not on the engine and may not or could not be pulled."""

    reason_default = "Kernel image not found"


class ImagePullError(MLContainerError):
    """A pull was attempted and failed."""

    reason_default = "Kernel image pull failed"


class GPUUnavailableError(MLContainerError):
    """GPUs were requested explicitly but the engine cannot provide them."""

    reason_default = "No GPU support on the Docker engine"


class KernelStartError(MLContainerError):
    """The kernel's container was created but the kernel did not come up."""

    reason_default = "Container kernel did not start"


class ImageProbeError(MLContainerError):
    """The image could not be probed (no Python in it, or the probe failed)."""

    reason_default = "Kernel image unusable"


class InvalidReferenceError(MLContainerError, ValueError):
    """An image reference that no registry accepts; refused before the engine is asked."""

    status_code_default = 400
    reason_default = "Invalid image reference"


def without_repeats(text: str) -> str:
    """``text`` without a ``: ``-separated fragment that repeats the one before it.

    Engines and registries nest their errors, and each layer may say the same again:
    ``manifest for x:1 not found: manifest unknown: manifest unknown`` becomes
    ``manifest for x:1 not found: manifest unknown``. Fragments compare without case,
    surrounding blanks or a final full stop.
    """
    kept: list[str] = []
    for fragment in text.split(": "):
        key = fragment.strip().rstrip(".").casefold()
        if kept and key and key == kept[-1].strip().rstrip(".").casefold():
            if fragment.rstrip().endswith(".") and not kept[-1].rstrip().endswith("."):
                kept[-1] = kept[-1].rstrip() + "."  # keep the sentence's end
            continue
        kept.append(fragment)
    return ": ".join(kept)


class OneLineErrors(logging.Filter):
    """Log our own errors as their message alone, unless the logger is at DEBUG level.

    Their messages already say what happened and what to do; the traceback is noise for a
    command-line user (``jupyter execute``, nbconvert, papermill, ``jupyter mlcontainer``).
    The server keeps full tracebacks in its log: this filter is only installed outside it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, MLContainerError) and not shows_debug(logging.getLogger(record.name)):
            record.exc_info = None
            record.exc_text = None
        return True


def shows_debug(logger: logging.Logger) -> bool:
    """Whether DEBUG records reach the user (traitlets apps filter by handler level)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return False
    handlers = logger.handlers or logging.getLogger().handlers
    return not handlers or any(h.level <= logging.DEBUG for h in handlers)


def one_line_errors(log: Any) -> None:
    """Install :class:`OneLineErrors` once on ``log`` (a Logger or a LoggerAdapter)."""
    logger = getattr(log, "logger", log)
    if isinstance(logger, logging.Logger) and not any(
        isinstance(f, OneLineErrors) for f in logger.filters
    ):
        logger.addFilter(OneLineErrors())

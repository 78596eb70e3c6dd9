"""The project's exceptions: each message says what went wrong and what to do about it.

Rooted in Python's own types (``RuntimeError``; ``ValueError`` for bad settings), so that any
layer and any tool may raise and catch them. How a Jupyter server answers them (status and
reason) is decided in ``kernel/answers.py``, not here.
"""

from __future__ import annotations

import logging
from typing import Any


class MLContainerError(RuntimeError):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.message,))


class EngineUnavailableError(MLContainerError, ConnectionError):
    """The backend (a Docker engine, a Swarm manager) cannot be reached."""


class EngineError(MLContainerError):
    """The backend refused a request (disk full, bad argument, ...)."""


class NotFound(EngineError, LookupError):
    """What a request names (a container, an image, a network, a volume) is not there."""


class Conflict(EngineError):
    """What a request makes is in the way of something that exists (a name, a port)."""


class PortTaken(Conflict):
    """A host port the kernel's plan chose was taken meanwhile (pick fresh ports, try again)."""


class AddressTaken(Conflict):
    """The container address the kernel's plan chose is in use on its network."""


class CommandNotFound(EngineError):
    """The container's command cannot run: its program is not in the image."""


class Unsupported(EngineError):
    """The backend has no such verb (a Swarm task takes no signal): use another way."""


class Unschedulable(EngineError):
    """No node of a scheduled backend (a swarm) can take the kernel now: not enough free
    memory, CPUs or GPUs anywhere, or no node meets its constraints."""


class NetworkGoneError(NotFound):
    """The network a container was to join is gone (removed by a prune meanwhile)."""


class ImageNotFoundError(NotFound):
    """The image is not on the engine and may not or could not be pulled."""


#: The seam's names for the two errors every layer meets (core/backend.py).
Unavailable = EngineUnavailableError
NetworkGone = NetworkGoneError


class ImagePullError(MLContainerError):
    """A pull was attempted and failed."""


class GPUUnavailableError(MLContainerError):
    """GPUs were requested explicitly but the engine cannot provide them."""


class KernelStartError(MLContainerError):
    """The kernel's container was created but the kernel did not come up."""


class ConfigurationError(MLContainerError, ValueError):
    """A kernelspec's or the server's settings cannot work (refused before anything starts)."""


class ImageProbeError(MLContainerError):
    """The image could not be probed (no Python in it, or the probe failed)."""


class InvalidReferenceError(ConfigurationError):
    """An image reference that no registry accepts; refused before the engine is asked."""


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

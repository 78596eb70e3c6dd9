"""How a Jupyter server answers this package's errors: an HTTP status and reason for each.

Our exceptions are plain Python ones (core/exceptions.py). Jupyter Server answers any
exception that is not a tornado ``HTTPError`` with a bare "Unhandled error", so the message
that says what to do would never reach JupyterLab's error dialog: kernel starts and restarts
(whether through ``/api/kernels`` or ``/api/sessions``) and our own handlers turn them into
``HTTPError``s here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_core.utils import ensure_async
from tornado import web

from ..core import exceptions as ex
from ..kernel.policy import PolicyError

#: Status and reason per error class; the most specific class in an error's MRO wins.
ANSWERS: dict[type[ex.MLContainerError], tuple[int, str]] = {
    ex.MLContainerError: (500, "Container kernel error"),
    ex.EngineUnavailableError: (503, "Docker engine unavailable"),
    ex.EngineError: (500, "Docker engine error"),
    ex.ImageNotFoundError: (500, "Kernel image not found"),
    ex.ImagePullError: (500, "Kernel image pull failed"),
    ex.GPUUnavailableError: (500, "No GPU support on the Docker engine"),
    ex.KernelStartError: (500, "Container kernel did not start"),
    ex.ConfigurationError: (500, "Container kernel misconfigured"),
    ex.ImageProbeError: (500, "Kernel image unusable"),
    ex.InvalidReferenceError: (400, "Invalid image reference"),
    PolicyError: (500, "Not allowed by the admin policy"),
}
#: The kernel manager's methods whose errors reach a REST client.
ANSWERED_METHODS = ("start_kernel", "restart_kernel")
_WRAPPED = "_mlc_answers_in_http"


def as_http_error(error: ex.MLContainerError) -> web.HTTPError:
    """The ``HTTPError`` a server answers ``error`` with (its message shown as is)."""
    status, reason = next(ANSWERS[k] for k in type(error).__mro__ if k in ANSWERS)
    # No args: neither tornado nor Jupyter Server %-formats the message.
    return web.HTTPError(status, str(error), reason=reason)


def answer_in_http(kernel_manager: Any) -> None:
    """Make the server's kernel manager raise ``HTTPError``s for our errors (idempotent)."""
    for name in ANSWERED_METHODS:
        original = getattr(kernel_manager, name, None)
        if original is None or getattr(original, _WRAPPED, False):
            continue
        setattr(kernel_manager, name, _answering(original))


def _answering(method: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def answering(*args: Any, **kwargs: Any) -> Any:
        try:
            return await ensure_async(method(*args, **kwargs))
        except ex.MLContainerError as e:
            raise as_http_error(e) from e

    setattr(answering, _WRAPPED, True)
    return answering

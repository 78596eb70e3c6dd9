"""How a Jupyter server answers this package's errors: an HTTP status and reason for each.

Our exceptions are plain Python ones (core/exceptions.py). Jupyter Server answers any
exception that is not a tornado ``HTTPError`` with a bare "Unhandled error", so the message
that says what to do would never reach JupyterLab's error dialog. The provisioner runs inside
a server's kernel manager whether or not this package's server extension is enabled, so the
answer is given at the provisioner's own boundary (:func:`answered`), only inside a server;
the extension's handlers use the same table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tornado import web

from ..core import exceptions as ex
from ..core.ledger import GPUsBusyError
from .policy import PolicyError, QuotaExceededError

#: Status and reason per error class; the most specific class in an error's MRO wins.
ANSWERS: dict[type[ex.MLContainerError], tuple[int, str]] = {
    ex.MLContainerError: (500, "Container kernel error"),
    ex.EngineUnavailableError: (503, "Docker engine unavailable"),
    ex.EngineError: (500, "Docker engine error"),
    ex.ImageNotFoundError: (500, "Kernel image not found"),
    ex.ImagePullError: (500, "Kernel image pull failed"),
    ex.GPUUnavailableError: (500, "No GPU support on the Docker engine"),
    ex.KernelStartError: (500, "Container kernel did not start"),
    ex.Unschedulable: (503, "No node can take the kernel now"),
    ex.ConfigurationError: (500, "Container kernel misconfigured"),
    ex.ImageProbeError: (500, "Kernel image unusable"),
    ex.InvalidReferenceError: (400, "Invalid image reference"),
    PolicyError: (500, "Not allowed by the admin policy"),
    QuotaExceededError: (500, "Over the admin's quota"),
    GPUsBusyError: (500, "All GPUs are in use"),
}


def as_http_error(error: ex.MLContainerError) -> web.HTTPError:
    """The ``HTTPError`` a server answers ``error`` with (its message shown as is)."""
    status, reason = next(ANSWERS[k] for k in type(error).__mro__ if k in ANSWERS)
    # No args: neither tornado nor Jupyter Server %-formats the message.
    return web.HTTPError(status, str(error), reason=reason)


@contextlib.contextmanager
def answered(in_a_server: bool) -> Iterator[None]:
    """Around a provisioner's methods that a server's kernel manager calls: inside a server,
    our errors leave as the ``HTTPError`` the server answers with; elsewhere, as they are."""
    try:
        yield
    except ex.MLContainerError as e:
        if not in_a_server:
            raise
        raise as_http_error(e) from e

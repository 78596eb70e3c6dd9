"""The project's exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class MLContainerError(RuntimeError):
    """Base class of every error this package raises on purpose."""


class EngineUnavailableError(MLContainerError):
    """The Docker engine cannot be reached."""


class EngineError(MLContainerError):
    """The Docker engine refused a request (disk full, bad argument, ...)."""


class ImageNotFoundError(MLContainerError):
    """The image is not on the engine and may not or could not be pulled."""


class ImagePullError(MLContainerError):
    """A pull was attempted and failed."""


class GPUUnavailableError(MLContainerError):
    """GPUs were requested explicitly but the engine cannot provide them."""


class KernelStartError(MLContainerError):
    """The kernel's container was created but the kernel did not come up."""

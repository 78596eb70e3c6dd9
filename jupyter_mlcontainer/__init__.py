"""Run Jupyter kernels inside pinned ML containers through the Docker Engine API."""

from ._version import __version__

__all__ = ["__version__"]

"""Run Jupyter kernels inside pinned ML containers through the Docker Engine API."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.extension import MLContainerExtension

    return [{"module": "jupyter_mlcontainer", "app": MLContainerExtension}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    # Every wheel has it (the build fails otherwise); a source checkout gets it from
    # `scripts/dev setup`.
    return [{"src": "labextension", "dest": "jupyter-mlcontainer"}]

"""Notebooks to be run as recorded: the image a notebook's next kernel starts with.

JupyterLab's "Run as recorded" (``POST /mlcontainer/as-recorded``) chooses, for one notebook
and one kernelspec, an earlier version's image; the next kernel of that kernelspec started for
that notebook (``JPY_SESSION_NAME``) runs it instead of the current version's
(kernel/launch.py). Kept in this server process's memory only: a restarted server starts
notebooks with their kernelspec's current version again.
"""

from __future__ import annotations

import os

#: (notebook's path on disk, kernelspec name) -> the image its kernels start with.
_chosen: dict[tuple[str, str], str] = {}


def _key(path: str, kernel_name: str) -> tuple[str, str]:
    return os.path.normpath(path), kernel_name


def choose(path: str, kernel_name: str, image: str) -> None:
    """Start ``kernel_name``'s kernels for the notebook at ``path`` with ``image``."""
    _chosen[_key(path, kernel_name)] = image


def forget(path: str, kernel_name: str) -> bool:
    """Start them with the kernelspec's current version again; whether one was chosen."""
    return _chosen.pop(_key(path, kernel_name), None) is not None


def chosen(path: str | None, kernel_name: str) -> str | None:
    """The image chosen for ``kernel_name``'s kernels of the notebook at ``path``, if any."""
    if not path or not kernel_name:
        return None
    return _chosen.get(_key(path, kernel_name))

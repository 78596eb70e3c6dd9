"""The ``jupyter mlcontainer`` command line."""

from .app import MLContainerApp, main

__all__ = ["MLContainerApp", "main"]

"""The package's version: labextension/package.json's, as the build recorded it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jupyter-mlcontainer")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+source"

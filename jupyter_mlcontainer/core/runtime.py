"""What an injected kernel runtime (``docker/runtime.py``) installs by default: a setting's
default (``runtime_packages``), so it lives here, where the settings can read it without the
Docker layer."""

from __future__ import annotations

#: The pinned ipykernel of injected runtimes (the same as the shipped images').
DEFAULT_PACKAGES = ("ipykernel==7.4.0",)

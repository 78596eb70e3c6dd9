"""What an image brings: run once in a throw-away container of the image (no network, no
mounts, the image's own Python, any Python 3.6+); prints one line, PROBE_MARKER and JSON,
that ``core/probe.py`` reads. Imports nothing heavy unless the package is present."""

import json
import os
import platform
import sys
from typing import Any, Dict, Optional

# <host-only> (the shipped program has the protocol inline, before this)
from .protocol import PROBE_MARKER

# </host-only>


def version(name: str) -> Optional[str]:
    """The installed distribution's version, or None."""
    try:
        from importlib import metadata

        return str(metadata.version(name))
    except Exception:
        try:
            import pkg_resources

            return str(pkg_resources.get_distribution(name).version)
        except Exception:
            return None


def packages() -> Dict[str, str]:
    """Every installed distribution of this Python, ``{name: version}`` (the image's package
    list, for ``diff``); the user's site is left out, as kernels leave it out."""
    found: Dict[str, str] = {}
    try:
        from importlib import metadata

        for dist in metadata.distributions():
            name = dist.metadata["Name"]
            if name and dist.version:
                found[str(name)] = str(dist.version)
    except Exception:
        import pkg_resources

        for d in pkg_resources.working_set:  # Python 3.6/3.7
            found[str(d.project_name)] = str(d.version)
    return found


def os_name() -> Optional[str]:
    try:
        with open("/etc/os-release") as f:
            info = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return info.get("PRETTY_NAME", "").strip('"') or None
    except Exception:
        return None


def findings() -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "python": sys.executable,
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "implementation": platform.python_implementation().lower(),
        "machine": platform.machine(),
        "libc": "-".join(x for x in platform.libc_ver() if x) or None,
        "ipykernel": version("ipykernel"),
        "numpy": version("numpy"),
        "torch": version("torch"),
        "tensorflow": version("tensorflow") or version("tensorflow-cpu") or version("tf-nightly"),
        "jax": version("jax"),
        "cuda": os.environ.get("CUDA_VERSION"),
        "cudnn": os.environ.get("CUDNN_VERSION") or os.environ.get("NV_CUDNN_VERSION"),
    }
    if out["torch"]:
        try:
            import torch

            out["torch_cuda"] = torch.version.cuda
            if not out["cudnn"] and torch.backends.cudnn.is_available():
                out["cudnn"] = str(torch.backends.cudnn.version())
        except Exception as e:
            out["torch_error"] = repr(e)[:200]
    out["os"] = os_name()
    return out


if __name__ == "__main__":
    # ``python -c PROGRAM packages``: the package list; else the findings.
    print(PROBE_MARKER + json.dumps(packages() if sys.argv[1:] == ["packages"] else findings()))

"""The agent: the code that runs inside kernel containers, beside the kernel.

Its modules are ordinary Python (linted, type-checked, unit-tested on the host) that the
server ships as source: ``python -c PROGRAM …`` in the container's command, so images need
nothing of this package. Each program is standard library only and runs on the image's own
Python (3.6+).

- :mod:`.protocol`: every name and number the server and the agent agree on (environment
  variables, exit codes, the lease port's bytes): the wire protocol, in one place;
- :mod:`.bootstrap`: how a kernel starts (runtime seal, HOME check, connection file, lease
  watchdog, the supervisor that restarts a kernel in place);
- :mod:`.digest`: the digest of an injected runtime's files (the builder seals it, the
  bootstrap checks it);
- :mod:`.probe`: what an image brings (Python, ipykernel, frameworks, CUDA).

The host-side halves: ``kernel/supervisor.py`` and ``kernel/renewal.py`` (the lease port),
``docker/runtime.py`` (the seal), ``core/probe.py`` (the probe's findings).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

#: The lines between these markers import the protocol for the host's tools (linters, type
#: checker, tests); the shipped program has the protocol's text inline instead.
_HOST_ONLY = re.compile(r"^# <host-only>.*?^# </host-only>\n", re.DOTALL | re.MULTILINE)
#: What each program is made of, in order.
_PARTS = {
    "bootstrap": ("protocol", "digest", "bootstrap"),
    "probe": ("protocol", "probe"),
    "digest": ("digest",),
}


@cache
def program(name: str) -> str:
    """The source of agent program ``name`` as the container runs it (``python -c``)."""
    folder = Path(__file__).parent
    texts = [_HOST_ONLY.sub("", (folder / f"{part}.py").read_text()) for part in _PARTS[name]]
    return "\n".join(texts)

"""Why a kernel container stopped, in words a user can act on.

Pure: built from the engine's inspect data and the container's last log lines.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import ContainerState

_NO_IPYKERNEL = ("No module named ipykernel_launcher", "No module named ipykernel")
_NO_PYTHON = ("executable file not found", "no such file or directory")


def human_size(n: int) -> str:
    """``1.5 GiB``, ``300 MiB``, ``12 bytes``."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def engine_time(text: str) -> float | None:
    """The engine's RFC 3339 time (``2026-11-29T08:44:23.218096405Z``) as Unix seconds, or
    None (unset, ``0001-01-01T00:00:00Z``, or unreadable)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.year > 1 else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class ContainerExit:
    """The end of one kernel container."""

    name: str
    image: str
    exit_code: int
    oom_killed: bool = False
    mem_limit: int = 0
    error: str = ""
    log_tail: str = ""
    #: Jupyter asked for this stop (shutdown or restart): an end, not a death.
    requested: bool = False
    #: When the Docker engine stopped or restarted, taking the container with it ("08:44:23").
    engine_stopped_at: str = ""

    @classmethod
    def from_state(cls, state: ContainerState, log_tail: str = "") -> ContainerExit:
        return cls(
            name=state.name,
            image=state.image,
            exit_code=state.exit_code,
            oom_killed=state.oom_killed,
            mem_limit=state.memory_limit,
            error=state.error,
            log_tail=log_tail,
        )

    @property
    def reason(self) -> str:
        """One sentence: how it ended."""
        if self.engine_stopped_at:
            return (
                f"was stopped by the Docker engine, which shut down or restarted at "
                f"{self.engine_stopped_at} (exit code {self.exit_code})"
            )
        if self.oom_killed:
            limit = (
                f"its memory limit of {human_size(self.mem_limit)} (mem_limit)"
                if self.mem_limit
                else "the memory available to the engine"
            )
            return f"killed by the out-of-memory killer: the kernel used more than {limit}"
        if self.exit_code > 128:
            name = _signal_name(self.exit_code - 128)
            if name == "SIGKILL":
                return (
                    f"killed with SIGKILL (exit code {self.exit_code}), from outside the "
                    "kernel: `docker kill`, `docker rm -f`, the engine or the host"
                )
            if name == "SIGTERM":
                return (
                    f"terminated by SIGTERM (exit code {self.exit_code}): `docker stop`, or the "
                    "Docker engine stopping"
                )
            return f"terminated by {name} (exit code {self.exit_code})"
        if self.error:
            return f"failed: {self.error}"
        return f"exited with code {self.exit_code}"

    @property
    def missing_ipykernel(self) -> bool:
        text = f"{self.log_tail}\n{self.error}"
        return any(marker in text for marker in _NO_IPYKERNEL)

    @property
    def hint(self) -> str:
        """What to do about it, when we can tell."""
        if self.missing_ipykernel:
            return (
                f"The image {self.image!r} has no ipykernel: install it in the image "
                "(`pip install ipykernel`) or choose an image that has it."
            )
        if self.exit_code == 127 or any(m in self.error for m in _NO_PYTHON):
            return (
                f"The image {self.image!r} has no Python at the configured path: set the "
                "provisioner's `python` to the image's interpreter, or choose an image with Python."
            )
        if self.engine_stopped_at:
            return (
                "The kernel's variables are lost; Jupyter restarts it once the engine answers "
                "again. To keep kernels running while the engine restarts, enable the engine's "
                '"live-restore" option (daemon.json).'
            )
        if self.oom_killed:
            return (
                "Raise mem_limit for this kernel or use less memory; "
                "the kernel's variables are lost."
            )
        return ""

    def message(self) -> str:
        """The full text for logs and error dialogs."""
        lines = [f"Kernel container {self.name} (image {self.image}) {self.reason}."]
        if self.hint:
            lines.append(self.hint)
        tail = self.log_tail.strip()
        if tail:
            lines.append("Last lines of the container's log:")
            lines.extend("    " + line for line in tail.splitlines())
        return "\n".join(lines)

"""What every ``jupyter mlcontainer`` command shares: running a coroutine, turning our errors
into one line and exit status 1, and a pull progress bar."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from jupyter_core.application import JupyterApp

from .._version import __version__
from ..core import backend as backends
from ..core.exceptions import MLContainerError
from ..core.progress import PullProgress

T = TypeVar("T")


def summary(description: str) -> str:
    """The first paragraph of a command's description, on one line: what ``jupyter mlcontainer
    --help`` shows for it (traitlets prints a subcommand's help as given, so it must be whole)."""
    paragraph = description.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


class ProgressBar:
    """Pull progress on stderr: a redrawn bar on a terminal, a line every few seconds else."""

    def __init__(self, image: str, stream: Any = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.progress = PullProgress(image, interval=0.2 if self.tty else 3.0)
        self.drawn = False

    def __call__(self, event: dict[str, Any]) -> None:
        line = self.progress.feed(event)
        if line is None:
            return
        if self.tty:
            fraction = self.progress.fraction or 0.0
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r[{bar}] {line[:90]:<90}")
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class Command(JupyterApp):
    """Shared plumbing: run a coroutine, turn our errors into a message and exit status 1."""

    version = __version__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A command's own ``flags`` add to Jupyter's (--debug, --show-config…), never replace
        them: ``--debug`` shows tracebacks on every command."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("flags")
        if own is not None:
            cls.flags = {**JupyterApp.flags, **own}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run(coro)
        except MLContainerError as e:
            self.fail(str(e))
        except (ValueError, FileExistsError) as e:  # invalid settings or names, name taken
            self.fail(str(e))
        msg = "unreachable: fail() exits"
        raise AssertionError(msg)

    def fail(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.exit(1)

    def backend(self, address: str | None = None) -> backends.Backend:
        """The backend at ``address`` (an engine's URL or docker context), or the default."""
        return backends.connect(address or None)

"""Image pulls started from the REST API, their progress on Jupyter Server's event bus."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.backend import Backend
from ..core.exceptions import MLContainerError
from ..core.progress import PullProgress

SCHEMA_ID = "https://events.jupyter-mlcontainer.org/image_pull/v1"
SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "image_pull" / "v1.yaml"


@dataclass
class PullState:
    image: str
    status: str = "pulling"
    fraction: float | None = None
    message: str = ""
    digest: str | None = None


class PullTracker:
    """At most one pull per image at a time; every state change is emitted as an event."""

    def __init__(self, backend: Backend, event_logger: Any, log: logging.Logger):
        self.backend = backend
        self.event_logger = event_logger
        self.log = log
        self.pulls: dict[str, PullState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, image: str) -> PullState:
        """Start pulling ``image`` (or return the pull already under way)."""
        task = self._tasks.get(image)
        if task is not None and not task.done():
            return self.pulls[image]
        state = PullState(image, message=f"pulling {image}: waiting for the registry")
        self.pulls[image] = state
        self._emit(state)
        self._tasks[image] = asyncio.ensure_future(self._pull(state))
        return state

    async def _pull(self, state: PullState) -> None:
        loop = asyncio.get_running_loop()
        progress = PullProgress(state.image, interval=0.5)

        def on_event(event: dict[str, Any]) -> None:  # on the engine's executor thread
            line = progress.feed(event)
            if line is not None:
                loop.call_soon_threadsafe(self._update, state, line, progress.fraction)

        try:
            await self.backend.pull(state.image, self.log, on_event)
        except MLContainerError as e:
            state.status, state.message = "error", str(e)
        else:
            state.status, state.fraction = "done", 1.0
            state.digest = progress.digest
            state.message = f"pulled {state.image}"
        self._emit(state)

    def _update(self, state: PullState, line: str, fraction: float | None) -> None:
        if state.status != "pulling":
            return
        state.message, state.fraction = line, fraction
        self._emit(state)

    def _emit(self, state: PullState) -> None:
        if self.event_logger is not None:
            self.event_logger.emit(schema_id=SCHEMA_ID, data=asdict(state))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()

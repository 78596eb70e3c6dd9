"""Learn of container exits from the engine's event stream, as they happen.

Why: when a bridge-networked container's process exits, the engine holds the container's
lock while it tears down published ports and the network (about 0.3–0.5 s here); an
``inspect`` issued meanwhile waits for all of it. The ``die`` event is sent before that
teardown, so a provisioner that was told to stop can learn the exit code at once.

One watcher per engine, on its own thread and connection (the stream never ends); if the
stream breaks it is opened again, and until it is, callers fall back to ``inspect``.

A broken stream is also evidence: an engine that stops (or restarts) stops its containers
first and closes its API a moment later, so a kernel whose container died just before the
stream broke died with the engine (see ``dropped_near``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.backend import ContainerState
    from .engine import Engine

from ..core import labels
from ..core.diagnostics import engine_time

log = logging.getLogger(__name__)

_MAX_REMEMBERED = 1024


class ExitWatcher:
    """Collects ``die`` events of this package's containers: container id → exit code."""

    def __init__(self, make_client: Callable[[], Any]):
        self._make_client = make_client
        self._exits: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        #: When the stream broke (wall-clock seconds), newest last.
        self._drops: deque[float] = deque(maxlen=16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlc-docker-events", daemon=True)
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """True while the event stream is open (exits are then seen as they happen)."""
        return self._connected.is_set()

    def exit_code(self, container_id: str) -> int | None:
        with self._lock:
            return self._exits.get(container_id)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._exits.pop(container_id, None)

    def close(self) -> None:
        self._stop.set()

    def dropped_near(self, when: float, before: float = 2.0, after: float = 30.0) -> float | None:
        """When the stream broke between ``before`` seconds before ``when`` (wall clock) and
        ``after`` seconds after it, else None: an engine stopping closes its API once its
        containers are stopped (up to their stop timeout)."""
        with self._lock:
            for dropped in reversed(self._drops):
                if when - before <= dropped <= when + after:
                    return dropped
        return None

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client = self._make_client()
                stream = client.events(
                    filters={
                        "type": ["container"],
                        "event": ["die"],
                        "label": [f"{labels.MANAGED}=true"],
                    },
                    decode=True,
                )
                self._connected.set()
                delay = 0.5
                for event in stream:
                    self._record(event)
                    if self._stop.is_set():
                        return
            except Exception as e:  # the engine went away or restarted: reopen later
                log.debug("Docker event stream closed: %s", e)
            if self._connected.is_set() and not self._stop.is_set():
                with self._lock:
                    self._drops.append(time.time())
            self._connected.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 30.0)

    def _record(self, event: dict[str, Any]) -> None:
        container_id = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        try:
            code = int(attributes.get("exitCode", -1))
        except (TypeError, ValueError):
            code = -1
        if not container_id:
            return
        with self._lock:
            self._exits[container_id] = code
            while len(self._exits) > _MAX_REMEMBERED:
                self._exits.popitem(last=False)


#: How long a signal death waits to be explained by the engine's own stop (see poll).
ENGINE_STOP_GRACE = 3.0


async def engine_stopped_at(engine: Engine, state: ContainerState) -> str:
    """When the Docker engine stopped and took this container with it ("08:44:23"), or ''.

    An engine that stops sends its containers their stop signal and closes its API a
    moment later, which breaks the event stream: a signal death followed (or just
    preceded) by a break is the engine's doing. A death seen while the stream still runs
    waits up to ``ENGINE_STOP_GRACE`` seconds for the break.
    """
    if state.oom_killed or state.exit_code <= 128:
        return ""
    finished = engine_time(state.finished_at) or time.time()
    watcher = engine.exit_watcher()
    deadline = time.monotonic() + ENGINE_STOP_GRACE
    while (dropped := watcher.dropped_near(finished)) is None:
        if time.monotonic() > deadline:
            return ""
        await asyncio.sleep(0.1)
    return time.strftime("%H:%M:%S", time.localtime(dropped))

"""Turn the engine's pull event stream into a few readable progress lines.

Pure: feed it the decoded JSON events of ``POST /images/create``; it says when a line is
worth logging and what it reads. The engine façade logs those lines; the server extension
can forward the same summaries to browsers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_DONE = {"Pull complete", "Already exists", "Download complete"}


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n < 10e9 else f"{n / 1e9:.1f} GB"


@dataclass
class PullProgress:
    """Aggregates per-layer pull events for one image."""

    image: str
    interval: float = 2.0
    clock: Callable[[], float] = time.monotonic
    layers_total: dict[str, int] = field(default_factory=dict)
    layers_current: dict[str, int] = field(default_factory=dict)
    layers_done: set[str] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)
    digest: str | None = None
    _last: float = field(default=float("-inf"))

    def feed(self, event: dict[str, Any]) -> str | None:
        """Take one event; return a line to log when one is due, else None."""
        status = str(event.get("status", ""))
        layer = event.get("id")
        detail = event.get("progressDetail") or {}
        if status.startswith("Digest:"):
            self.digest = status.split(":", 1)[1].strip()
        if layer and status in {"Pulling fs layer", "Waiting", "Downloading", *_DONE}:
            self.layers.add(layer)
        if layer and status == "Downloading" and detail.get("total"):
            self.layers_total[layer] = int(detail["total"])
            self.layers_current[layer] = int(detail.get("current", 0))
        if layer and status in _DONE:
            self.layers_done.add(layer)
            if layer in self.layers_total:
                self.layers_current[layer] = self.layers_total[layer]
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            return self.summary()
        return None

    @property
    def fraction(self) -> float | None:
        """Downloaded share of the bytes known so far, or None before any size is known."""
        total = sum(self.layers_total.values())
        if not total:
            return None
        return sum(self.layers_current.values()) / total

    def summary(self) -> str:
        parts = [f"pulling {self.image}:"]
        if self.layers:
            parts.append(f"{len(self.layers_done)}/{len(self.layers)} layers")
        total = sum(self.layers_total.values())
        if total:
            done = sum(self.layers_current.values())
            parts.append(f"{_mb(done)} of {_mb(total)} downloaded ({100 * done / total:.0f}%)")
        if len(parts) == 1:
            parts.append("waiting for the registry")
        return " ".join(parts)

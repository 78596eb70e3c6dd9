"""Renew a kernel's lease while this process lives (the other half of the kernel's watchdog,
see agent/bootstrap.py).

A thread, not an asyncio task: a kernel started by a synchronous KernelManager (jupyter
console, a script) runs while that manager's event loop sits idle. When this process dies,
however it dies, the renewals stop, and the kernel stops itself ``lease_timeout`` seconds
later.
"""

from __future__ import annotations

import contextlib
import socket
import threading

#: Renewals per lease timeout: a few lost ones do not stop a kernel.
RENEWALS_PER_TIMEOUT = 6


class LeaseRenewal:
    """Send a byte to the kernel's watchdog every ``timeout / 6`` seconds, reconnecting when
    the connection drops (an engine or its port proxy restarted)."""

    def __init__(self, target: tuple[str, int] | str, timeout: float, name: str):
        self.target = target
        self.interval = max(timeout / RENEWALS_PER_TIMEOUT, 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mlc-lease-{name}", daemon=True)
        self._thread.start()

    def _connect(self) -> socket.socket:
        family = socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET
        conn = socket.socket(family)
        conn.settimeout(5)
        conn.connect(self.target)
        return conn

    def _run(self) -> None:
        conn: socket.socket | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                conn.sendall(b".")
            except OSError:
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def stop(self) -> None:
        """Stop renewing (the kernel is being stopped anyway); idempotent."""
        self._stop.set()

"""Know when a freshly started kernel listens: a heartbeat ping over ZMQ.

The kernel's heartbeat channel echoes whatever it receives, and ipykernel starts it right
after binding its sockets, so one echo proves the kernel process is up and reachable through
whatever lies between (published ports, host network, ipc sockets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio


def heartbeat_url(info: Mapping[str, Any]) -> str:
    """The client-side URL of the heartbeat channel (as jupyter_client builds it)."""
    transport = info.get("transport", "tcp")
    ip, port = info["ip"], int(info["hb_port"])
    return f"tcp://{ip}:{port}" if transport == "tcp" else f"{transport}://{ip}-{port}"


class Heartbeat:
    """One REQ socket that sends a single ping and waits for its echo.

    A message sent before the kernel binds stays queued in ZMQ and goes out once the
    connection is made, so waiting in slices on the same socket loses nothing.
    """

    def __init__(self, info: Mapping[str, Any]):
        self._socket = zmq.asyncio.Context.instance().socket(zmq.REQ)
        self._socket.linger = 0
        self._socket.setsockopt(zmq.RECONNECT_IVL, 20)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 200)
        public, secret = info.get("curve_publickey"), info.get("curve_secretkey")
        if public and secret:
            # The kernel's keypair doubles as the client's, exactly as jupyter_client does.
            self._socket.curve_secretkey = _bytes(secret)
            self._socket.curve_publickey = _bytes(public)
            self._socket.curve_serverkey = _bytes(public)
        self._socket.connect(heartbeat_url(info))
        self._sent = False

    async def answered(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the echo."""
        if not self._sent:
            await self._socket.send(b"ping")
            self._sent = True
        events = await self._socket.poll(timeout=int(timeout * 1000))
        if events:
            await self._socket.recv()
            return True
        return False

    def close(self) -> None:
        self._socket.close(linger=0)


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value

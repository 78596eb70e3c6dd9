"""Restart a kernel inside its own container: the other half of the bootstrap's supervisor
(agent/bootstrap.py; its bytes are in agent/protocol.py).

A container kernel started with ``supervise`` runs as a child of a small supervisor process,
which listens on the kernel's lease port. A control connection proves that it knows the
kernel's key (HMAC-SHA256 of a nonce the supervisor sends), then sends one-byte commands:

- ``H``: the kernel's next exit is a restart: report it (``x<code>\\n``) and keep the
  container, instead of ending it with the kernel's exit code;
- ``K`` / ``T``: SIGKILL / SIGTERM the kernel (``now=True`` restarts);
- ``I``: SIGINT the kernel (an interrupt, where the backend cannot signal: Swarm);
- ``S``: start a fresh kernel process with the same connection file (answered ``s``).

The restart thus keeps the container, its address, ports, mounts and limits, and skips the
engine's container teardown and creation; the kernel's state is gone as with any restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from ..agent.protocol import (
    CONTROL,
    CONTROL_OK,
    EXITED,
    HOLD,
    INTERRUPT,
    KILL,
    NONCE_BYTES,
    START,
    STARTED,
    TERMINATE,
)
from ..core.exceptions import MLContainerError

#: Seconds to connect and prove the key, or to get an answer to ``S`` (a supervisor that does
#: not answer in time is passed over: the container is then stopped or replaced as a whole).
TIMEOUT = 3.0


class SupervisorError(MLContainerError):
    """The supervisor could not be reached or did not answer as expected."""


class Supervisor:
    """One authenticated control connection to a kernel container's supervisor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._exit: asyncio.Future[int] | None = None

    @classmethod
    async def connect(cls, target: tuple[str, int] | str, key: bytes) -> Supervisor:
        async def handshake() -> Supervisor:
            if isinstance(target, str):
                reader, writer = await asyncio.open_unix_connection(target)
            else:
                reader, writer = await asyncio.open_connection(*target)
            try:
                writer.write(CONTROL)
                nonce = await reader.readexactly(NONCE_BYTES)
                writer.write(hmac.new(key, nonce, hashlib.sha256).digest())
                if await reader.readexactly(1) != CONTROL_OK:
                    msg = "the supervisor refused the kernel's key"
                    raise SupervisorError(msg)
            except BaseException:
                writer.close()
                raise
            return cls(reader, writer)

        try:
            return await asyncio.wait_for(handshake(), TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            msg = f"no supervisor answered at {target}: {e or type(e).__name__}"
            raise SupervisorError(msg) from None

    async def hold(self) -> None:
        """Keep the container when the kernel exits next; learn its exit code."""
        self._writer.write(HOLD)
        await self._writer.drain()
        self._exit = asyncio.ensure_future(self._read_exit())

    async def _read_exit(self) -> int:
        line = await self._reader.readline()
        if not line.startswith(EXITED):
            msg = "the supervisor's connection closed"
            raise SupervisorError(msg)
        return int(line[1:])

    def exit_code(self) -> int | None:
        """The held kernel's exit code once it has exited, else None."""
        if self._exit is None or not self._exit.done() or self._exit.exception():
            return None
        return self._exit.result()

    @property
    def lost(self) -> bool:
        """The supervisor went away (its container stopped) before the kernel's exit."""
        return self._exit is not None and self._exit.done() and bool(self._exit.exception())

    async def signal(self, kill: bool) -> None:
        self._writer.write(KILL if kill else TERMINATE)
        await self._writer.drain()

    async def interrupt(self) -> None:
        """SIGINT the kernel (not its supervisor)."""
        self._writer.write(INTERRUPT)
        await self._writer.drain()

    async def start(self) -> None:
        """Start a fresh kernel process."""
        self._writer.write(START)

        async def answer() -> bytes:
            await self._writer.drain()
            return await self._reader.readexactly(1)

        try:
            started = await asyncio.wait_for(answer(), TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            msg = f"the supervisor did not start the kernel: {e}"
            raise SupervisorError(msg) from None
        if started != STARTED:
            msg = "the supervisor did not start the kernel"
            raise SupervisorError(msg)

    def close(self) -> None:
        if self._exit is not None:
            self._exit.cancel()
        self._writer.close()

"""A real `jupyter server` as a subprocess, for tests that need a process of its own (signals,
crashes, a second server, fuzzed HTTP requests)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.session import Session

TOKEN = "server-process-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`jupyter server` as a subprocess with its own runtime dir and log."""

    def __init__(self, root: Path, runtime: Path, log: Path, *options: str):
        self.runtime, self.log = runtime, log
        # A port found free can be taken before the server binds it (a kernel's socket):
        # the server then exits (no port retries, so it never answers on another one), and
        # it is started again on a new port.
        for _ in range(3):
            if self._started(root, options):
                return
        pytest.fail(f"the server did not answer:\n{self.text()[-3000:]}")

    def _started(self, root: Path, options: tuple[str, ...]) -> bool:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-m", "jupyter_server", f"--port={self.port}",
                 "--ServerApp.port_retries=0", "--ip=127.0.0.1",
                 f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
                 "--allow-root", "--no-browser", *options],
                env={**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        for _ in range(120):
            try:
                self.call("GET", "/api/status")
                return True
            except (OSError, http.client.HTTPException):  # not up yet
                if self.process.poll() is not None:
                    return False  # its port was taken meanwhile
                time.sleep(0.25)
        self.close()  # the test never gets this server to close: not left running
        return False

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            text = reply.read()
        return json.loads(text) if text else {}

    def start_kernel(self, name: str) -> tuple[str, BlockingKernelClient]:
        kernel = self.call("POST", "/api/kernels", {"name": name})
        kc = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel['id']}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return kernel["id"], kc

    def text(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Send ``sig`` and wait for the server to exit; the seconds it took. A server still
        there after ``timeout`` seconds is sent SIGABRT, so that faulthandler writes every
        thread's stack into its log, and the test fails with the log's end."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            pytest.fail(
                f"the server did not stop within {timeout:.0f} s of signal {sig}; its log "
                f"(with every thread's stack, from SIGABRT):\n{self.text()[-6000:]}"
            )
        return time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def run_code(ws: Any, code: str, timeout: float = 60) -> str:
    """Execute ``code`` over a kernel's channels websocket; its printed text."""
    msg = Session().msg("execute_request", content={"code": code, "silent": False})
    msg["channel"], msg["buffers"] = "shell", []
    await ws.write_message(json.dumps(msg, default=str))
    out: list[str] = []

    async def read() -> str:
        while True:
            reply = json.loads(await ws.read_message())
            if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                continue
            if reply["msg_type"] == "stream":
                out.append(reply["content"]["text"])
            elif reply["msg_type"] == "error":
                out.append("\n".join(reply["content"]["traceback"]))
            elif reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                return "".join(out)

    return await asyncio.wait_for(read(), timeout)

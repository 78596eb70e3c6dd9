"""What a JupyterLab user waits for when a kernel starts, measured through a real server.

One ``jupyter server`` (this venv's, with this package's extension and its warm pool as
configured by default), and for each kernel: ``POST /api/kernels`` until the first
``kernel_info_reply`` on the kernel's websocket, which is what JupyterLab waits for before it
shows the kernel as idle. Kernels measured, in the same run:

- ``local``: the server's own ipykernel (``python3``), the baseline;
- ``default``: the default kernel as ``scripts/dev lab`` makes it (``jupyter mlcontainer add``
  of the default image: ``gpus: auto``, CurveZMQ): its first start in the server (cold, nothing
  pooled yet), then later starts, each ``--gap`` seconds after the previous kernel's (the pool
  refills meanwhile, as it does while a user opens the next notebook).

Prints medians and ratios against ``local``, and the target (issue 17): a later start of the
default kernel ≤ 0.3× a local ipykernel's start.

    python benchmarks/server_start.py                 # 5 later starts
    python benchmarks/server_start.py --rounds 1      # the CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

TARGET_LATER = 0.3
DEFAULT_KERNEL = "mlc-bench-default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``jupyter server`` subprocess with its own Jupyter paths; stopped by its PID."""

    def __init__(self, image: str, work: Path):
        self.work = work
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "JUPYTER_DATA_DIR": str(work / "data"),
            "JUPYTER_CONFIG_DIR": str(work / "config"),
            "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        }
        self.image = image
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / "server.log"

    def add_default_kernel(self) -> None:
        """As scripts/dev lab does: `add` pins, probes and names it (gpus auto)."""
        jupyter = Path(sys.executable).parent / "jupyter"
        subprocess.run(
            [str(jupyter), "mlcontainer", "add", self.image, "--name", DEFAULT_KERNEL, "--user"],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        root = self.work / "notebooks"
        root.mkdir()
        extra = ["--allow-root", "--MLContainerPolicy.allow_root=True"] if os.getuid() == 0 else []
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyter_server",
                    f"--port={self.port}",
                    "--ip=127.0.0.1",
                    f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={root}",
                    "--ServerApp.open_browser=False",
                    *extra,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                await self.request("GET", "/api/status")
                return
            except OSError:
                await asyncio.sleep(0.2)
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the server did not answer within 60 s; see {self.log}")

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        request = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=180,
        )
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body) if response.body else None

    async def start_kernel(self, name: str) -> tuple[str, float]:
        """POST /api/kernels until the first kernel_info_reply on its websocket (seconds)."""
        t0 = time.perf_counter()
        kernel = await self.request("POST", "/api/kernels", {"name": name})
        ws_url = self.url.replace("http", "ws") + f"/api/kernels/{kernel['id']}/channels"
        ws = await websocket_connect(
            HTTPRequest(ws_url, headers={"Authorization": f"token {self.token}"})
        )
        try:
            msg_id = uuid.uuid4().hex
            while True:  # JupyterLab asks again until the kernel answers
                ws.write_message(json.dumps(kernel_info_request(msg_id)))
                try:
                    reply = await asyncio.wait_for(self._reply(ws, msg_id), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if reply:
                    break
        finally:
            ws.close()
        return kernel["id"], time.perf_counter() - t0

    @staticmethod
    async def _reply(ws: Any, msg_id: str) -> bool:
        while True:
            message = await ws.read_message()
            if message is None:
                raise RuntimeError("the kernel's websocket closed")
            if isinstance(message, bytes):
                continue
            data = json.loads(message)
            if (
                data.get("msg_type") == "kernel_info_reply"
                and data.get("parent_header", {}).get("msg_id") == msg_id
            ):
                return True

    async def stop_kernel(self, kernel_id: str) -> None:
        await self.request("DELETE", f"/api/kernels/{kernel_id}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise


def kernel_info_request(msg_id: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "kernel_info_request",
            "username": "bench",
            "session": uuid.uuid4().hex,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {},
        "channel": "shell",
        "buffers": [],
    }


async def measure(server: Server, rounds: int, gap: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local": [], "default, first start": [], "default, later": []}
    kernel_id, elapsed = await server.start_kernel(DEFAULT_KERNEL)
    times["default, first start"].append(elapsed)
    await server.stop_kernel(kernel_id)
    for _ in range(rounds):
        await asyncio.sleep(gap)  # the user opens the next notebook; the pool refills
        kernel_id, elapsed = await server.start_kernel("python3")
        times["local"].append(elapsed)
        await server.stop_kernel(kernel_id)
        kernel_id, elapsed = await server.start_kernel(DEFAULT_KERNEL)
        times["default, later"].append(elapsed)
        await server.stop_kernel(kernel_id)
    return times


def table(times: dict[str, list[float]]) -> str:
    local = statistics.median(times["local"])
    lines = [
        "| kernel | start → first kernel_info_reply | × local | target |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / local
        target = ""
        if name == "default, later":
            target = f"≤ {TARGET_LATER} ({'met' if ratio <= TARGET_LATER else 'MISSED'})"
        lines.append(
            f"| {name} | {median * 1000:.0f} ms (n={len(values)}) | {ratio:.2f} | {target} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-server-"))
    server = Server(args.image, work)
    server.add_default_kernel()
    server.start()
    try:
        await server.wait_until_up()
        times = await measure(server, args.rounds, args.gap)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(times))
    if args.json:
        medians = {name: statistics.median(values) for name, values in times.items()}
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="later starts to measure")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between starts")
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument("--json", type=Path, help="also write the medians (seconds) here")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

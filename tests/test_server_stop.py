"""A real `jupyter server` process: stopped cleanly, it shuts container kernels down
gracefully (their atexit handlers run) and quickly, and leaves no container."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

from jupyter_mlcontainer.core import labels

pytestmark = pytest.mark.engine
TOKEN = "server-stop-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = reply.read()
    return json.loads(text) if text else {}


def test_sigterm_shuts_kernels_down_gracefully(kernelspec, notebook_dir, tmp_path, docker_api):
    name = kernelspec()
    runtime = tmp_path / "runtime"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={notebook_dir}",
             "--allow-root", "--no-browser"],
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for _ in range(120):
            try:
                call(base, "GET", "/api/status")
                break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail(f"the server did not answer:\n{log_path.read_text()[-3000:]}")
        kernel = call(base, "POST", "/api/kernels", {"name": name})
        kc = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        marker = Path(notebook_dir) / "shut-down-gracefully"
        reply = kc.execute_interactive(
            "import atexit, pathlib\n"
            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')",
            timeout=30,
        )
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()

        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        server.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    text = log_path.read_text()
    assert took < 10, f"the server took {took:.1f} s to stop\n{text[-3000:]}"
    assert marker.read_text() == "yes", text[-3000:]  # the kernel exited on its own terms
    assert "Traceback" not in text[text.find("received signal 15") :], text[-3000:]
    mine = [
        c
        for c in docker_api.containers(all=True, filters=labels.managed_filter())
        if (c.get("Labels") or {}).get(labels.SERVER_PID) == str(server.pid)
    ]
    assert mine == []

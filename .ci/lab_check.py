"""The README's `scripts/dev lab`, checked the way a newcomer uses it.

Usage: python .ci/lab_check.py CLONE (a fresh clone, set up or not).

Starts `bash scripts/dev lab` in CLONE under a clean environment (env -i: HOME, a minimal
PATH, CI, and the CA/pip variables this machine needs) on a free port with a token; waits for
/api/status; starts the default container kernel through the REST API and runs `1+1` over its
websocket; deletes it; adds a kernel that asks for GPUs through the REST API and starts it
(this engine has none: the start must fail with the message that says what to do); stops
the server by its PID (SIGTERM) and requires it gone within 10 s, with no traceback in its
shutdown log and no container of this project left behind.
Only the standard library and tornado (a dependency of Jupyter Server) are used.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

KEEP = (
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)
MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_KERNEL = "mlc-python-3.11"
TOKEN = uuid.uuid4().hex
SETUP_TIMEOUT = 1200  # a first run builds images and the lab extension
STOP_WITHIN = 10.0


def newcomer_env(home: str) -> dict[str, str]:
    env = {"HOME": home, "PATH": MINIMAL_PATH, "CI": "true"}
    env.update({k: v for k, v in os.environ.items() if k in KEEP or k.startswith("PIP_")})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            text = reply.read().decode()
            return reply.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def our_containers() -> list[str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            "label=org.jupyter-mlcontainer.managed=true",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


async def execute(ws_url: str, code: str) -> str:
    """Run ``code`` over the kernel's websocket; return its execute_result text."""
    request = HTTPRequest(
        f"{ws_url}?session_id={uuid.uuid4().hex}",
        headers={"Authorization": f"token {TOKEN}"},
        connect_timeout=30,
    )
    conn = await websocket_connect(request, subprotocols=[])
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "ci",
        "session": uuid.uuid4().hex,
        "date": "",
        "version": "5.3",
    }
    await conn.write_message(
        json.dumps(
            {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    result = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), timeout=60)
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "execute_result":
            result = msg["content"]["data"]["text/plain"]
        if kind == "status" and msg["content"]["execution_state"] == "idle" and result:
            break
    conn.close()
    if result is None:
        raise SystemExit("no execute_result came back over the websocket")
    return str(result)


def main(clone: Path) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="mlc-newcomer-home-")
    notebooks = Path(home) / "mlcontainer-notebooks"
    log_path = clone / ".build" / "lab-check.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before = set(our_containers())
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                "bash",
                "scripts/dev",
                "lab",
                "--no-browser",
                f"--port={port}",
                "--ip=127.0.0.1",
                f"--IdentityProvider.token={TOKEN}",
            ],
            cwd=clone,
            env=newcomer_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return check(server, base, notebooks, log_path, before)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)


def check(
    server: subprocess.Popen[bytes], base: str, notebooks: Path, log_path: Path, before: set[str]
) -> int:
    started = time.monotonic()
    while True:
        if server.poll() is not None:
            print(log_path.read_text()[-4000:])
            raise SystemExit(f"`scripts/dev lab` exited with status {server.returncode}")
        try:
            if api(base, "GET", "/api/status")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() - started > SETUP_TIMEOUT:
            raise SystemExit("`scripts/dev lab` did not serve /api/status in time")
        time.sleep(1)
    print(f"lab: serving after {time.monotonic() - started:.0f} s (setup included)")
    served = api(base, "GET", "/api/contents")[1]
    assert {item["name"] for item in served["content"]} >= {"welcome.ipynb"}, served
    assert notebooks.is_dir(), f"lab does not serve {notebooks}"

    status, specs = api(base, "GET", "/api/kernelspecs")
    spec = specs["kernelspecs"].get(DEFAULT_KERNEL)
    assert spec is not None, f"no {DEFAULT_KERNEL} kernelspec: {sorted(specs['kernelspecs'])}"
    metadata = spec["spec"]["metadata"]
    assert metadata["jupyter_mlcontainer"]["probe"]["python_version"], metadata
    shown = spec["spec"]["display_name"]
    print(f"lab: default kernel {shown!r}, made by add (probed, pinned)")
    # What the command tells a newcomer to pick is what the launcher shows.
    assert f'start "{shown}" from the launcher' in log_path.read_text(), "no pointer to the kernel"

    status, kernel = api(base, "POST", "/api/kernels", {"name": DEFAULT_KERNEL})
    assert status == 201, (status, kernel)
    ws = base.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels"
    answer = asyncio.run(execute(ws, "1+1"))
    assert answer == "2", answer
    print("lab: 1+1 == 2 in the container kernel")
    status, details = api(base, "GET", f"/mlcontainer/kernels/{kernel['id']}")
    assert status == 200 and details["state"] == "running", details

    status, reply = api(base, "DELETE", f"/api/kernels/{kernel['id']}")
    assert status == 204, (status, reply)

    # A kernel that cannot start (GPUs on an engine without them) must not hold up the stop.
    body = {"image": "mlcontainer/python:3.11", "name": "ci-gpus-all", "gpus": "all"}
    status, reply = api(base, "POST", "/mlcontainer/kernelspecs", body)
    assert status == 201, (status, reply)
    status, reply = api(base, "POST", "/api/kernels", {"name": "ci-gpus-all"})
    assert status >= 400 and "NVIDIA Container Toolkit" in reply["message"], (status, reply)
    print(f"lab: a GPU kernel on this GPU-less engine fails clearly ({status})")

    pid = server.pid
    os.kill(pid, signal.SIGTERM)
    stopping = time.monotonic()
    while server.poll() is None and time.monotonic() - stopping < STOP_WITHIN:
        time.sleep(0.1)
    took = time.monotonic() - stopping
    if server.poll() is None:
        print(log_path.read_text()[-4000:])
        raise SystemExit(f"the server (pid {pid}) still runs {STOP_WITHIN:.0f} s after SIGTERM")
    print(f"lab: stopped {took:.1f} s after SIGTERM")
    text = log_path.read_text()
    shutdown = text[text.find("received signal 15") :]
    assert "Traceback" not in shutdown, shutdown[-3000:]
    left = set(our_containers()) - before
    assert not left, f"containers left behind: {left}"
    print("lab: no container left behind")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))

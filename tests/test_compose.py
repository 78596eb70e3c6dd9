"""Jupyter in Compose: `docker-compose up` of the shipped compose.yaml runs JupyterLab in a
container, whose kernels are sibling containers on the host's engine."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import docker.errors
import pytest
import tomllib
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_mlcontainer.agent.protocol import CONTAINER_CONNECTION_FILE, ENV_CONNECTION
from jupyter_mlcontainer.core import labels

from .conftest import IMAGE, TEST_GID, TEST_UID, eventually

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".build" / "compose-wheels"


def compose_binary() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]  # the v2 plugin, where there is one


def offline_wheelhouse() -> None:
    """What the image installs, downloaded here (no registry reaches a build on this
    machine: its TLS proxy's CA is not in the base image)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [
        *project["project"]["dependencies"],
        *project["build-system"]["requires"],
        "hatch-jupyter-builder>=0.9",
        "jupyterlab>=4.2",
    ]
    python = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python3", IMAGE, "-c",
         "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(WHEELS),
         "--only-binary=:all:", "--python-version", python, *wanted],
        check=True, timeout=900,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def compose(docker_api, tmp_path_factory):
    offline_wheelhouse()
    notebooks = tmp_path_factory.mktemp("compose") / "notebooks"
    notebooks.mkdir()
    os.chown(notebooks, TEST_UID, TEST_GID)  # a user's folder: kernels run as its owner
    project = f"mlc-compose-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "MLC_BASE_IMAGE": IMAGE,  # a local Debian + Python image (no registry here)
        "MLC_KERNEL_IMAGE": IMAGE,
        "MLC_KERNEL_GPUS": "none",  # a CPU kernelspec: the warm pool keeps one ready
        "MLC_NOTEBOOKS": str(notebooks),
        "MLC_PORT": str(free_port()),
        "MLC_TOKEN": secrets.token_hex(16),
        "MLC_KERNEL_NETWORK": f"{project}-kernels",
        "MLC_KERNEL_SUBNET": "10.231.97.0/24",
    }
    cmd = [*compose_binary(), "--project-name", project, "--file", str(ROOT / "compose.yaml")]
    log = tmp_path_factory.mktemp("compose-log") / "compose.log"

    def run(*args: str, timeout: float = 900) -> None:
        with log.open("a") as out:
            done = subprocess.run(
                [*cmd, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                check=False,
            )  # fmt: skip
        if done.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            pytest.fail(f"`{' '.join(args)}` failed:\n{tail}")

    server_image = "jupyter-mlcontainer/lab:local"  # compose.yaml's image
    try:
        docker_api.inspect_image(server_image)
        built_here = False
    except docker.errors.ImageNotFound:
        built_here = True
    try:
        run("build", "--force-rm")  # a failed build leaves no container either
        run("up", "--detach")
        yield env, notebooks, docker_api, run
    finally:
        server_log = subprocess.run(
            [*cmd, "logs", "--no-color", "--tail", "150"], env=env, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        print(server_log.stdout, file=sys.stderr)  # shown when a test failed
        run("down", "--volumes", "--timeout", "30")
        if built_here:  # what the test built goes with it
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_api.remove_image(server_image)


def api(env, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['MLC_PORT']}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {env['MLC_TOKEN']}"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        text = reply.read()
    return json.loads(text) if text else None


async def execute(env, kernel_id, code):
    """Run ``code`` over the kernel's websocket, as JupyterLab does; its result's text."""
    request = HTTPRequest(
        f"ws://127.0.0.1:{env['MLC_PORT']}/api/kernels/{kernel_id}/channels"
        f"?session_id={uuid.uuid4().hex}",
        headers={"Authorization": f"token {env['MLC_TOKEN']}"},
    )
    conn = await websocket_connect(request, subprotocols=[])
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
              "session": uuid.uuid4().hex, "date": "", "version": "5.3"}  # fmt: skip
    await conn.write_message(json.dumps({
        "header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False}, "buffers": []}))  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            msg = json.loads(await conn.read_message())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["header"]["msg_type"] == "execute_result":
                return msg["content"]["data"]["text/plain"]
            if msg["header"]["msg_type"] == "error":
                pytest.fail("\n".join(msg["content"]["traceback"]))
    finally:
        conn.close()
    pytest.fail("no result over the websocket")


def encrypted(docker_api, container: dict) -> bool:
    """The kernel's connection carries CurveZMQ keys: in its environment, or in the file
    copied in before its start (its HOME volume was new: the file gives it its owner)."""
    for variable in container["Config"]["Env"]:
        name, _, value = variable.partition("=")
        if name == ENV_CONNECTION:
            return bool(json.loads(value).get("curve_secretkey"))
    run = docker_api.exec_create(container["Id"], ["cat", CONTAINER_CONNECTION_FILE])
    return bool(json.loads(docker_api.exec_start(run)).get("curve_secretkey"))


async def test_jupyterlab_in_compose_runs_kernels_as_sibling_containers(compose):
    env, notebooks, docker_api, _ = compose

    def answering():
        try:
            return api(env, "GET", "/api/kernelspecs")
        except (urllib.error.URLError, ConnectionError):
            return None

    specs = await eventually(answering, "JupyterLab in its container answers", timeout=300)
    assert "python-container" in specs["kernelspecs"]
    kernel = api(env, "POST", "/api/kernels", {"name": "python-container"})
    kernels, used = [kernel], []  # used: their containers
    try:
        code = "import os; open('from-the-kernel.txt', 'w').write('hi'); (os.getcwd(), os.getuid())"
        assert await execute(env, kernel["id"], code) == f"('/home/jovyan/work', {TEST_UID})"
        written = notebooks / "from-the-kernel.txt"  # the host's folder, the user's file
        assert written.read_text() == "hi"
        assert (written.stat().st_uid, written.stat().st_gid) == (TEST_UID, TEST_GID)

        [container] = docker_api.containers(filters={"label": f"{labels.KERNEL_ID}={kernel['id']}"})
        details = docker_api.inspect_container(container["Id"])
        used.append(container["Id"])
        assert container["Ports"] == []  # nothing published on the host
        assert list(details["NetworkSettings"]["Networks"]) == [env["MLC_KERNEL_NETWORK"]]
        sources = {m["Source"] for m in details["Mounts"] if m["Type"] == "bind"}
        assert str(notebooks) in sources  # translated from the server's /home/jovyan/work
        assert not any(s.endswith("docker.sock") for s in sources)
        assert not details["HostConfig"]["DeviceRequests"]

        [server] = docker_api.containers(
            filters={"label": "com.docker.compose.service=jupyterlab",
                     "network": env["MLC_KERNEL_NETWORK"]})  # fmt: skip
        server_details = docker_api.inspect_container(server["Id"])
        assert any(m["Destination"] == "/var/run/docker.sock" for m in server_details["Mounts"])
        assert not server_details["HostConfig"]["DeviceRequests"]  # GPUs go to kernels only
        published = {p["IP"] for p in server["Ports"] if p.get("PublicPort")}
        assert published == {"127.0.0.1"}
        assert encrypted(docker_api, details)  # other kernels share the network: CurveZMQ

        # The server's warm pool: the next start claims a ready kernel, encrypted as well.
        def ready():
            return api(env, "GET", "/mlcontainer/pool")["kernels"]

        [waiting] = await eventually(ready, "a ready kernel in the pool", timeout=120)
        used.append(waiting["container_id"])
        second = api(env, "POST", "/api/kernels", {"name": "python-container"})
        kernels.append(second)
        assert await execute(env, second["id"], "6 * 7") == "42"
        behind = api(env, "GET", f"/mlcontainer/kernels/{second['id']}")
        assert behind["container_id"] == waiting["container_id"]  # claimed, not started
        assert encrypted(docker_api, docker_api.inspect_container(waiting["container_id"]))
    finally:
        for each in kernels:
            api(env, "DELETE", f"/api/kernels/{each['id']}")

    def gone():
        return not {c["Id"] for c in docker_api.containers(all=True)} & set(used)

    await eventually(gone, "the kernels' containers are removed", timeout=60)

"""Real `jupyter server` processes: stopped cleanly, a server shuts its container kernels down
gracefully and quickly; killed (SIGKILL), its kernels stop themselves once their lease is no
longer renewed, and the next server in the same runtime dir removes them, while a server with
another runtime dir never touches them."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_mlcontainer.core import labels

from .servers import Server

pytestmark = pytest.mark.engine


def containers_of_kernel(api, kernel_id: str) -> list[dict]:
    return api.containers(all=True, filters={"label": [f"{labels.KERNEL_ID}={kernel_id}"]})


def test_sigterm_shuts_kernels_down_gracefully(kernelspec, notebook_dir, tmp_path, docker_api):
    server = Server(notebook_dir, tmp_path / "runtime", tmp_path / "server.log")
    try:
        _, kc = server.start_kernel(kernelspec())
        marker = Path(notebook_dir) / "shut-down-gracefully"
        reply = kc.execute_interactive(
            "import atexit, pathlib\n"
            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')",
            timeout=30,
        )
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()
        took = server.stop()
    finally:
        server.close()
    text = server.text()
    assert took < 10, f"the server took {took:.1f} s to stop\n{text[-3000:]}"
    assert marker.read_text() == "yes", text[-3000:]  # the kernel exited on its own terms
    assert "Traceback" not in text[text.find("received signal 15") :], text[-3000:]
    mine = [
        c
        for c in docker_api.containers(all=True, filters=labels.managed_filter())
        if (c.get("Labels") or {}).get(labels.SERVER_PID) == str(server.process.pid)
    ]
    assert mine == []


def test_a_failed_start_does_not_hold_up_the_stop(kernelspec, notebook_dir, tmp_path):
    server = Server(notebook_dir, tmp_path / "runtime", tmp_path / "server.log")
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            server.call("POST", "/api/kernels", {"name": kernelspec(gpus="all")})
        assert "NVIDIA Container Toolkit" in info.value.read().decode()
        took = server.stop()
    finally:
        server.close()
    text = server.text()
    assert took < 10, f"the server took {took:.1f} s to stop\n{text[-3000:]}"
    assert "Traceback" not in text[text.find("received signal 15") :], text[-3000:]


def test_killed_servers_kernels_stop_themselves_and_are_reaped_by_the_next(
    kernelspec, notebook_dir, tmp_path, docker_api
):
    name = kernelspec()
    runtime = tmp_path / "runtime"
    lease = "--MLContainerProvisioner.lease_timeout=3"
    first = Server(notebook_dir, runtime, tmp_path / "first.log", lease)
    other = Server(notebook_dir, tmp_path / "other-runtime", tmp_path / "other.log", lease)
    try:
        kernel_id, kc = first.start_kernel(name)
        kc.stop_channels()
        others_kernel, okc = other.start_kernel(name)
        okc.stop_channels()
        first.stop(signal.SIGKILL)  # no cleanup at all: the kernel is on its own

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = containers_of_kernel(docker_api, kernel_id)[0]["State"]
            if state != "running":
                break
            time.sleep(0.5)
        container = containers_of_kernel(docker_api, kernel_id)[0]
        assert container["State"] == "exited", "the orphaned kernel kept running"
        log = docker_api.logs(container["Id"]).decode()
        assert "no Jupyter process renewed this kernel's lease" in log

        # A server with its own runtime dir, alive all along: its kernel runs on, untouched.
        time.sleep(4)  # longer than the lease: its renewals keep it alive
        assert containers_of_kernel(docker_api, others_kernel)[0]["State"] == "running"

        # The next server in the first one's runtime dir removes what the killed one left.
        second = Server(notebook_dir, runtime, tmp_path / "second.log")
        try:
            for _ in range(40):
                if not containers_of_kernel(docker_api, kernel_id):
                    break
                time.sleep(0.25)
            assert containers_of_kernel(docker_api, kernel_id) == []
            # Its kernel, and the ready kernel its warm pool may have started meanwhile.
            killed = {labels.SERVER_PID: str(first.process.pid)}
            assert not docker_api.containers(all=True, filters=labels.managed_filter(**killed))
            assert re.search(r"Removed [12] orphaned container\(s\)", second.text())
            assert containers_of_kernel(docker_api, others_kernel)[0]["State"] == "running"
        finally:
            second.stop()
            second.close()
    finally:
        first.close()
        other.stop()
        other.close()
    assert containers_of_kernel(docker_api, others_kernel) == []

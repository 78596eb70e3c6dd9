"""Kernels on Podman, through its Docker-compatible API socket: rootless (run by an
unprivileged user, whose files the kernel writes as that user: ``keep-id``) and rootful."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import GPUUnavailableError
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import TEST_GID, TEST_UID, execute, running_kernel, serving, start_fails
from .engines import RootfulPodman, RootlessPodman
from .test_cli import cli

pytestmark = pytest.mark.engine


def podman_version() -> str:
    """``podman --version`` says "podman version 4.3.1"."""
    out = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout.split() or ["?"])[-1]


PODMAN_VERSION = podman_version() if shutil.which("podman") else "?"


@pytest.fixture(scope="session")
def rootless_podman(docker_api):
    yield from serving(RootlessPodman())


@pytest.fixture(scope="session")
def rootful_podman(docker_api):
    yield from serving(RootfulPodman())


@pytest.fixture(params=["rootless", "rootful"])
def podman(request):
    engine = request.getfixturevalue(f"{request.param}_podman")
    engine.mode = request.param
    return engine


@pytest.fixture
def users_notebooks(podman, tmp_path):
    """The user's notebook folder: rootless, in the Podman user's home (the server runs as
    that user); rootful, any user's."""
    if podman.mode == "rootless":
        folder = Path(tempfile.mkdtemp(prefix="work-", dir=podman.home))
        owner = (podman.uid, podman.gid)
    else:
        folder = tmp_path / "work"
        folder.mkdir()
        owner = (TEST_UID, TEST_GID)
    os.chown(folder, *owner)
    yield folder, owner
    shutil.rmtree(folder, ignore_errors=True)


def on_podman(podman, kernel_id):
    return podman.api().containers(all=True, filters={"label": [f"{labels.KERNEL_ID}={kernel_id}"]})


@pytest.fixture
def podman_is_the_engine(podman, monkeypatch):
    """What Podman's docs tell a user: DOCKER_HOST at the user's socket."""
    monkeypatch.setenv("DOCKER_HOST", podman.url)
    docker = Engine._instances.pop(None, None)  # the suite's default engine, Docker's
    yield podman
    engine = Engine._instances.pop(None, None)
    if engine is not None:
        engine.drain_blocking()
    if docker is not None:
        Engine._instances[None] = docker


async def test_a_kernel_on_podman_writes_the_users_files(
    podman_is_the_engine, kernelspec, users_notebooks
):
    podman = podman_is_the_engine
    users_notebooks, (uid, gid) = users_notebooks
    name = kernelspec("podman")
    async with running_kernel(name, users_notebooks) as (km, kc):
        [container] = on_podman(podman, km.kernel_id)
        out, _ = await execute(
            kc, "import os; open('by-the-kernel.txt', 'w').write('hi'); print(os.getuid())"
        )
        assert int(out) == uid
        written = users_notebooks / "by-the-kernel.txt"
        assert (written.stat().st_uid, written.stat().st_gid) == (uid, gid)
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        out, _ = await execute(kc, "print(1 + 1)")
        assert out.strip() == "2"
        kernel_id = km.kernel_id
    await Engine.for_url(podman.url).drain()
    assert on_podman(podman, kernel_id) == []


async def test_gpus_on_podman_without_cdi_requests_are_refused_not_ignored(
    podman_is_the_engine, kernelspec, users_notebooks
):
    """Podman before 5.4 accepts a GPU request through the Docker API and starts the
    container without the GPU: the kernel is refused instead, saying why."""
    podman = podman_is_the_engine
    users_notebooks, _ = users_notebooks
    km, message = await start_fails(kernelspec("podman-gpu", gpus="all"), users_notebooks,
                                    GPUUnavailableError)  # fmt: skip
    assert f"Podman {PODMAN_VERSION}" in message and "Podman 5.4 or later" in message
    assert "nvidia-ctk cdi generate" in message
    assert on_podman(podman, km.kernel_id) == []


def test_doctor_names_podman_and_its_mode(podman_is_the_engine, kernelspec):
    kernelspec("podman-doctor")
    kernelspec("podman-doctor-gpu", gpus="all")
    doctor = cli("doctor")
    rows = {line.split()[0]: line for line in doctor.stdout.splitlines() if line.strip()}
    mode = podman_is_the_engine.mode
    assert f"Podman {PODMAN_VERSION}, {mode}" in rows["engine"], doctor.stdout
    assert "(from DOCKER_HOST)" in rows["client"]
    assert "ok" in rows["podman-doctor"].split()
    assert "NO GPU" in rows["podman-doctor-gpu"] and "Podman 5.4" in rows["podman-doctor-gpu"]
    assert doctor.returncode == 1  # the GPU kernelspec cannot start here


def test_podmans_socket_is_found_without_docker(tmp_path):
    """No DOCKER_HOST, no context, no Docker socket: the user's rootless Podman socket
    (XDG_RUNTIME_DIR), as `podman system service` makes it."""
    from jupyter_mlcontainer.docker.endpoint import _default_socket

    runtime = tmp_path / "run"
    (runtime / "podman").mkdir(parents=True)
    (runtime / "podman" / "podman.sock").touch()
    found = _default_socket({"XDG_RUNTIME_DIR": str(runtime)}, str(tmp_path / "no-docker.sock"))
    assert found.url == f"unix://{runtime}/podman/podman.sock"
    assert found.source == "rootless Podman's socket"
    docker = _default_socket({"XDG_RUNTIME_DIR": str(runtime)}, str(runtime / "podman/podman.sock"))
    assert docker.url == ""  # Docker's socket, when there is one, comes first

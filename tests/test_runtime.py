"""Images without ipykernel run unmodified: the kernel runtime comes from outside."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from pathlib import Path
from unittest import mock

import docker.errors
import pytest

from jupyter_mlcontainer.docker.engine import Engine
from jupyter_mlcontainer.docker.images import probe_image
from jupyter_mlcontainer.docker.runtime import RuntimeTarget, volume_name

from .conftest import BARE_IMAGE, execute, running_kernel
from .test_cli import cli

pytestmark = pytest.mark.engine

NUMPY_IMAGE = "mlc-test/numpy-no-ipykernel:2.4.6"
PLATFORMS = [
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]


def download(into: Path, *requirements: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--dest", str(into), "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", *PLATFORMS, *requirements],
        check=True,
    )  # fmt: skip


@pytest.fixture(scope="session")
def numpy_image(docker_api, tmp_path_factory):
    """Python + numpy 2.4.6 in a venv, no ipykernel; built for the session and removed."""
    try:
        docker_api.inspect_image(NUMPY_IMAGE)
        yield NUMPY_IMAGE  # made by someone else: theirs to keep
        return
    except docker.errors.ImageNotFound:
        pass  # build it below
    ctx = tmp_path_factory.mktemp("numpy-image")
    (ctx / "Dockerfile").write_text(
        (Path(__file__).parent.parent / "images" / "Dockerfile").read_text()
    )
    (ctx / "requirements.txt").write_text("numpy==2.4.6\n")
    (ctx / "constraints.txt").write_text("")
    download(ctx / "wheels", "numpy==2.4.6")
    for _ in docker_api.build(
        path=str(ctx), tag=NUMPY_IMAGE, buildargs={"BASE": BARE_IMAGE}, rm=True, decode=True
    ):
        pass
    yield NUMPY_IMAGE
    docker_api.remove_image(NUMPY_IMAGE)


CHECK = """
import sys, numpy, ipykernel, os
print(numpy.__version__, numpy.__file__)
print(ipykernel.__version__, ipykernel.__file__)
print(sys.path.index('/opt/mlcontainer/runtime') == len(sys.path) - 1)
try:
    open('/opt/mlcontainer/runtime/x', 'w')
    print('writable')
except OSError as e:
    print('read-only' if e.errno == 30 else repr(e))
"""


async def test_image_without_ipykernel_runs_and_keeps_its_own_packages(
    kernelspec, notebook_dir, numpy_image, docker_api, caplog, policy
):
    caplog.set_level(logging.INFO)
    policy(allow_runtime_packages=True)
    image_id = docker_api.inspect_image(numpy_image)["Id"]
    # The runtime carries another numpy on purpose: the image's own must still win.
    name = kernelspec(image=numpy_image, runtime_packages=["ipykernel==7.4.0", "numpy==2.3.5"])
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, CHECK)
        assert reply["status"] == "ok", out
        numpy_line, ipykernel_line, last, writable = out.strip().splitlines()
        assert numpy_line.split()[0] == "2.4.6"
        assert numpy_line.split()[1].startswith("/opt/venv/")
        assert ipykernel_line.split()[0] == "7.4.0"
        assert ipykernel_line.split()[1].startswith("/opt/mlcontainer/runtime/")
        assert last == "True"
        assert writable == "read-only"
    assert "has no ipykernel; starting it with an injected runtime" in caplog.text
    assert docker_api.inspect_image(numpy_image)["Id"] == image_id  # the image is untouched

    # The next kernel of that image goes straight to the runtime, which is reused.
    caplog.clear()
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "import numpy; print(numpy.__version__)")
        assert out.strip() == "2.4.6"
    assert "has no ipykernel" not in caplog.text
    assert "Building a kernel runtime" not in caplog.text


async def test_runtime_builds_offline_from_a_wheelhouse(
    kernelspec, notebook_dir, tmp_path, caplog, docker_api, policy
):
    caplog.set_level(logging.INFO)
    # Start from nothing, so that this run really builds the runtime from the wheelhouse.
    probe = await probe_image(Engine.for_url(None), BARE_IMAGE)
    volume = volume_name(RuntimeTarget.from_probe(probe), ["ipykernel==7.3.0"])
    for name in (volume, volume + "-sealed"):
        with contextlib.suppress(docker.errors.NotFound):
            docker_api.remove_volume(name, force=True)
    policy(allow_runtime_packages=True)
    wheelhouse = tmp_path / "wheelhouse"
    download(wheelhouse, "ipykernel==7.3.0")
    name = kernelspec(
        image=BARE_IMAGE,
        inject_runtime="always",
        runtime_packages=["ipykernel==7.3.0"],
        wheelhouse=str(wheelhouse),
    )
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(
            kc, "import ipykernel; print(ipykernel.__version__, ipykernel.__file__)"
        )
        version, path = out.split()
        assert version == "7.3.0"
        assert path.startswith("/opt/mlcontainer/runtime/")
    assert (
        f"Building a kernel runtime (ipykernel==7.3.0) for Python 3.11 on x86_64: offline from {wheelhouse}"
        in caplog.text
    )
    assert (
        docker_api.inspect_volume(volume + "-sealed")["Labels"]["org.jupyter-mlcontainer.runtime"]
        == volume
    )


async def test_kernelspec_from_add_uses_the_recorded_probe(
    jp_environ, jp_data_dir, notebook_dir, caplog
):
    caplog.set_level(logging.INFO)
    result = cli("add", BARE_IMAGE, "--name", "bare", "--gpus", "none")
    assert result.returncode == 0, result.stderr
    assert "a runtime is provided at start" in result.stdout
    async with running_kernel("bare", notebook_dir) as (km, kc):
        out, _ = await execute(
            kc, "import ipykernel, sys; print(ipykernel.__file__, sys.executable)"
        )
        path, executable = out.split()
        assert path.startswith("/opt/mlcontainer/runtime/")
        assert executable == "/usr/bin/python3"
    assert "has no ipykernel; starting it" not in caplog.text  # no failed first attempt


async def test_a_poisoned_runtime_is_detected_and_rebuilt(
    kernelspec, notebook_dir, docker_api, caplog
):
    caplog.set_level(logging.WARNING)
    name = kernelspec(image=BARE_IMAGE, inject_runtime="always")
    async with running_kernel(name, notebook_dir) as (km, kc):
        mounts = docker_api.inspect_container(km.provisioner.container_id)["Mounts"]
        volume = next(m["Name"] for m in mounts if m["Destination"] == "/opt/mlcontainer/runtime")
        out, _ = await execute(
            kc, "import os; print(os.stat('/opt/mlcontainer/runtime/ipykernel/__init__.py').st_uid)"
        )
        assert out.strip() == "65534"  # built by nobody, not root
    seal = docker_api.inspect_volume(volume + "-sealed")["Labels"]
    assert len(seal["org.jupyter-mlcontainer.runtime-digest"]) == 64
    # Someone with access to the engine changes a file of the sealed runtime.
    poison = docker_api.create_container(
        BARE_IMAGE,
        ["sh", "-c", "echo 'POISONED = True' >> /rt/ipykernel/__init__.py"],
        host_config=docker_api.create_host_config(binds=[f"{volume}:/rt"]),
    )
    docker_api.start(poison["Id"])
    assert docker_api.wait(poison["Id"])["StatusCode"] == 0
    docker_api.remove_container(poison["Id"])
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "import ipykernel; print(hasattr(ipykernel, 'POISONED'))")
        assert out.strip() == "False"  # the poisoned runtime was refused and rebuilt
    assert "changed after it was sealed; rebuilding it" in caplog.text


def test_the_default_runtime_installs_only_hash_pinned_wheels(tmp_path):
    from jupyter_mlcontainer.docker import runtime

    target = runtime.RuntimeTarget("3.11", "cpython", "x86_64", "glibc-2.36")
    cmd = runtime.pip_command(target, runtime.DEFAULT_PACKAGES, str(tmp_path / "ok"), None)
    assert "--require-hashes" in cmd and cmd[-1].endswith("cp311-x86_64-manylinux.lock")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ok" / "ipykernel" / "__init__.py").is_file()
    # A wheel whose hash the lock does not pin is refused.
    tampered = tmp_path / "locks"
    tampered.mkdir()
    lock = (runtime.locks_dir() / "cp311-x86_64-manylinux.lock").read_text()
    (tampered / "cp311-x86_64-manylinux.lock").write_text(
        lock.replace("ipykernel==7.4.0 --hash=sha256:", "ipykernel==7.4.0 --hash=sha256:0")
    )
    with mock.patch.object(runtime, "locks_dir", return_value=tampered):
        cmd = runtime.pip_command(target, runtime.DEFAULT_PACKAGES, str(tmp_path / "bad"), None)
    refused = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "HASHES" in (refused.stdout + refused.stderr).upper()


@pytest.mark.parametrize(
    ("python", "machine", "libc", "lock"),
    [
        ("3.12", "aarch64", "glibc-2.36", "cp312-aarch64-manylinux.lock"),
        ("3.13", "x86_64", "musl-1.2.5", "cp313-x86_64-musllinux.lock"),
        ("3.14", "arm64", "glibc-2.41", "cp314-aarch64-manylinux.lock"),
        ("3.11", "x86_64", "glibc-2.17", None),  # older than the locks' manylinux_2_28
        ("3.10", "x86_64", "glibc-2.36", None),  # ipykernel 7 needs 3.11
        ("3.12", "x86_64", None, None),  # an unknown libc
    ],
)
def test_each_runtime_target_with_a_lock_installs_from_it(python, machine, libc, lock, tmp_path):
    from jupyter_mlcontainer.docker import runtime

    target = runtime.RuntimeTarget(python, "cpython", machine, libc)
    cmd = runtime.pip_command(target, runtime.DEFAULT_PACKAGES, str(tmp_path), None)
    if lock is None:
        assert "--require-hashes" not in cmd and cmd[-1] == "ipykernel==7.4.0"
        return
    assert cmd[-1].endswith(lock) and "--require-hashes" in cmd
    # pip resolves the target's wheels against the lock: every hash it needs is there.
    done = subprocess.run(
        [*cmd[:4], "--dry-run", *cmd[4:]], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Other packages than the default are pinned by version (no lock resolved them).
    assert runtime.hash_pinned(target, ("ipykernel==7.4.0", "numpy")) is None

"""Kernels on a remote engine: another host (a network namespace) reached over TCP with TLS
(a docker context with client certificates) and over ssh, with kernel traffic encrypted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from jupyter_mlcontainer.agent.protocol import CONTAINER_HOME
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import (
    ConfigurationError,
    GPUUnavailableError,
)
from jupyter_mlcontainer.docker import containers, leases
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import (
    IMAGE,
    TEST_GID,
    TEST_UID,
    eventually,
    execute,
    running_kernel,
    serving,
    start_fails,
    wait_for_stream,
)
from .engines import RemoteEngine

pytestmark = pytest.mark.engine

TLS_CONTEXT = "gpu-tls"
SSH_URL = "ssh://gpu-box"


@pytest.fixture(scope="session")
def remote_engine(docker_api):
    yield from serving(RemoteEngine())


@pytest.fixture
def remote(remote_engine, jp_environ, policy, monkeypatch):
    """This machine as a user's laptop: ~/.ssh knows ``gpu-box``, and a docker context names
    the engine's TLS endpoint with the user's client certificate (made with the docker CLI,
    as a user would)."""
    home = Path(os.environ["HOME"])
    remote_engine.client_home(home)
    config = home / ".docker"
    certs = remote_engine.client_certs
    subprocess.run(
        ["docker", "--config", str(config), "context", "create", TLS_CONTEXT, "--docker",
         f"host={remote_engine.tcp_url},ca={certs / 'ca.pem'},cert={certs / 'cert.pem'},"
         f"key={certs / 'key.pem'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    policy(allowed_engines=[TLS_CONTEXT, SSH_URL])
    yield remote_engine
    for address in (TLS_CONTEXT, SSH_URL):
        engine = Engine._instances.pop(address, None)
        if engine is not None:
            engine.drain_blocking()


@pytest.fixture
def remote_dir(tmp_path):
    """The notebook folder as the remote host has it (a share, synced or mounted there)."""
    folder = tmp_path / "on-the-gpu-box"
    folder.mkdir()
    if os.getuid() == 0:
        os.chown(folder, TEST_UID, TEST_GID)
    return folder


def on_remote(remote_engine, kernel_id):
    return remote_engine.api().containers(
        all=True, filters={"label": [f"{labels.KERNEL_ID}={kernel_id}"]}
    )


async def nothing_left(remote_engine, address, kernel_id):
    await Engine.for_url(address).drain()
    assert on_remote(remote_engine, kernel_id) == []


async def plain_client_gets_no_reply(km) -> bool:
    """A ZMQ client without CurveZMQ keys, even one that knows the signing key, gets nothing
    from the kernel's shell port."""
    info = km.get_connection_info()
    context = zmq.asyncio.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    try:
        msg = km.session.msg("kernel_info_request")
        km.session.send(sock, msg)
        return await sock.poll(3000) == 0
    finally:
        sock.close()
        context.term()


async def test_full_lifecycle_on_a_remote_engine_over_tls(
    remote, kernelspec, notebook_dir, remote_dir, docker_api
):
    name = kernelspec(
        "remote-tls", docker_host=TLS_CONTEXT, path_map={str(notebook_dir): str(remote_dir)}
    )
    async with running_kernel(name, notebook_dir) as (km, kc):
        info = km.get_connection_info()
        assert info["ip"] == remote.ip  # the engine's host, from the context
        assert info.get("curve_publickey") and info.get("curve_secretkey")
        container_id = km.provisioner.container_id
        [remote_container] = on_remote(remote, km.kernel_id)
        assert remote_container["Id"] == container_id
        assert docker_api.containers(all=True, filters={"id": container_id}) == []
        bindings = remote.api().inspect_container(container_id)["HostConfig"]["PortBindings"]
        assert {b[0]["HostIp"] for b in bindings.values()} == {"0.0.0.0"}

        out, _ = await execute(
            kc,
            "import os; open('from-the-gpu-box.txt', 'w').write('hi'); "
            "print(os.getcwd()); print(os.getuid())",
        )
        cwd, uid = out.split()
        assert cwd == str(notebook_dir)  # the same path as on this machine
        assert int(uid) == TEST_UID
        written = remote_dir / "from-the-gpu-box.txt"
        assert written.read_text() == "hi" and written.stat().st_uid == TEST_UID
        assert not (notebook_dir / "from-the-gpu-box.txt").exists()

        assert await plain_client_gets_no_reply(km)

        await execute(kc, "x = 42")
        msg_id = kc.execute("print('looping', flush=True)\nwhile True:\n    pass")
        await wait_for_stream(kc, msg_id, "looping")
        await km.interrupt_kernel()
        reply = await kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = await kc.get_shell_msg(timeout=10)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        out, _ = await execute(kc, "print(x)")
        assert out.strip() == "42"

        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        out, _ = await execute(kc, "print('x' in dir())")
        assert out.strip() == "False"
        assert km.get_connection_info()["ip"] == remote.ip
        await execute(kc, "import sys; print('to the log', file=sys.__stderr__, flush=True)")
        logs = await containers.logs(Engine.for_url(TLS_CONTEXT), km.provisioner.container_id)
        assert "to the log" in logs  # the container's output, read over the remote API
        kernel_id = km.kernel_id
    await nothing_left(remote, TLS_CONTEXT, kernel_id)


async def test_a_kernel_over_ssh(remote, kernelspec, notebook_dir, remote_dir):
    name = kernelspec(
        "remote-ssh", docker_host=SSH_URL, path_map={str(notebook_dir): str(remote_dir)}
    )
    async with running_kernel(name, notebook_dir) as (km, kc):
        # gpu-box is an ssh alias: the kernel is reached at the HostName ~/.ssh/config gives.
        assert km.get_connection_info()["ip"] == remote.ip
        out, _ = await execute(kc, "print(6 * 7)")
        assert out.strip() == "42"
        assert await plain_client_gets_no_reply(km)
        kernel_id = km.kernel_id
    await nothing_left(remote, SSH_URL, kernel_id)


async def test_a_gpu_request_on_a_remote_engine_without_gpus_is_refused(
    remote, kernelspec, notebook_dir, remote_dir
):
    name = kernelspec(
        "remote-gpu",
        docker_host=TLS_CONTEXT,
        gpus="all",
        path_map={str(notebook_dir): str(remote_dir)},
    )
    km, message = await start_fails(name, notebook_dir, GPUUnavailableError)
    assert f"the Docker engine at {remote.tcp_url} (context {TLS_CONTEXT}) cannot" in message
    assert "NVIDIA Container Toolkit on the engine's host" in message
    await nothing_left(remote, TLS_CONTEXT, km.kernel_id)


async def test_a_notebook_folder_not_on_the_remote_host_is_explained(
    remote, kernelspec, notebook_dir
):
    km, message = await start_fails(
        kernelspec("remote-unmapped", docker_host=TLS_CONTEXT), notebook_dir, ConfigurationError
    )
    assert "is on this machine" in message and "path_map" in message and "mount_cwd" in message
    assert on_remote(remote, km.kernel_id) == []
    # What the message offers works: the kernel's own HOME volume on that host.
    name = kernelspec("remote-home", docker_host=TLS_CONTEXT, mount_cwd=False)
    async with running_kernel(name, notebook_dir) as (_, kc):
        out, _ = await execute(kc, "import os; print(os.getcwd())")
        assert out.strip() == CONTAINER_HOME


async def test_clear_text_to_a_remote_kernel_needs_the_policy(
    remote, kernelspec, notebook_dir, remote_dir, policy
):
    mapped = {str(notebook_dir): str(remote_dir)}
    name = kernelspec("remote-clear", docker_host=TLS_CONTEXT, remote_encryption="none",
                      path_map=mapped)  # fmt: skip
    km, message = await start_fails(name, notebook_dir, ConfigurationError)
    assert "allow_unencrypted_remote" in message and "clear text" in message
    plain_api = f"tcp://{remote.ip}:2375"
    plain = kernelspec("remote-plain-api", docker_host=plain_api, path_map=mapped)
    policy(allowed_engines=[plain_api])
    _, message = await start_fails(plain, notebook_dir, ConfigurationError)
    assert "without TLS" in message and "DOCKER_TLS_VERIFY" in message
    assert on_remote(remote, km.kernel_id) == []
    # Allowed, the same kernel answers anyone on the network (what the check above rules out).
    policy(allowed_engines=[TLS_CONTEXT], allow_unencrypted_remote=True)
    async with running_kernel(name, notebook_dir) as (clear, _):
        assert not await plain_client_gets_no_reply(clear)


@pytest.mark.parametrize(
    "jp_server_config", [{"MLContainerExtension": {"reap_orphans": True}}], indirect=True
)
async def test_a_server_reaps_orphans_on_the_remote_engines_its_kernelspecs_name(
    remote, kernelspec_file, jp_serverapp
):
    kernelspec_file("remote-reaped", docker_host=TLS_CONTEXT)
    folder = leases.lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crashed-remote-instance.lease").write_text("{}")  # its process died
    own = {labels.MANAGED: "true", labels.SERVER_INSTANCE: "crashed-remote-instance"}
    orphan = remote.api().create_container(IMAGE, command=["true"], labels=own)["Id"]
    await jp_serverapp.extension_manager.start_all_extensions()

    def reaped():
        return orphan not in {c["Id"] for c in remote.containers()}

    await eventually(reaped, "the orphan on the remote engine was removed")
    await asyncio.sleep(0)


def test_the_context_store_is_read_as_the_docker_cli_writes_it(remote):
    from jupyter_mlcontainer.docker import endpoint

    found = endpoint.resolve(TLS_CONTEXT)
    assert found.url == remote.tcp_url and found.tls is not None and found.remote
    assert json.dumps(found.describe()).count(TLS_CONTEXT) == 1


def test_add_pins_and_probes_an_image_on_the_remote_engine(remote, jp_environ, jp_data_dir):
    from .test_cli import cli

    added = cli("add", IMAGE, "--name", "on-gpu-box", "--docker-host", SSH_URL)
    assert added.returncode == 0, added.stderr
    spec = json.loads((Path(jp_data_dir) / "kernels" / "on-gpu-box" / "kernel.json").read_text())
    config = spec["metadata"]["kernel_provisioner"]["config"]
    assert config["docker_host"] == SSH_URL
    assert config["image"] == remote.api().inspect_image(IMAGE)["Id"]  # the remote's own image

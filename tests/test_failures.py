"""Bad input and dying kernels give errors that say what happened and what to do."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from jupyter_client.ioloop import AsyncIOLoopKernelManager

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import (
    ImageNotFoundError,
    ImagePullError,
    KernelStartError,
)
from jupyter_mlcontainer.docker import containers
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import (
    BARE_IMAGE,
    IMAGE,
    containers_of,
    eventually,
    execute,
    running_kernel,
    start_fails,
    wait_for_iopub,
)

pytestmark = pytest.mark.engine


async def test_image_without_ipykernel_when_injection_is_off(kernelspec, notebook_dir, docker_api):
    name = kernelspec(image=BARE_IMAGE, inject_runtime="never")
    km, message = await start_fails(name, notebook_dir, KernelStartError)
    assert "No module named ipykernel_launcher" in message
    assert "install it in the image" in message
    assert containers_of(docker_api, km.kernel_id) == []


async def test_missing_image_under_pull_policy_never(kernelspec, notebook_dir):
    image = "mlcontainer/does-not-exist:1.0"
    _, message = await start_fails(kernelspec(image=image), notebook_dir, ImageNotFoundError)
    assert image in message
    assert "docker pull" in message and "pull_policy" in message


async def test_unknown_image_that_cannot_be_pulled(kernelspec, notebook_dir):
    image = "127.0.0.1:9/nobody/nothing:1"  # nothing listens on port 9
    name = kernelspec(image=image, pull_policy="missing")
    _, message = await start_fails(name, notebook_dir, ImagePullError)
    assert f"Could not pull image {image!r}" in message
    assert "Check the image name" in message


async def test_image_without_the_configured_python(kernelspec, notebook_dir, docker_api):
    km, message = await start_fails(
        kernelspec(python="/no/such/python"), notebook_dir, KernelStartError
    )
    assert "has no Python at the configured path" in message
    assert "exec /no/such/python failed" in message  # the container's own words
    assert containers_of(docker_api, km.kernel_id) == []


async def test_out_of_memory_kill_is_reported(kernelspec, notebook_dir, caplog):
    caplog.set_level(logging.WARNING)
    async with running_kernel(kernelspec(mem_limit="160m"), notebook_dir) as (km, kc):
        kc.execute("hog = b'x' * (1024 ** 3)")

        async def died():
            return not await km.is_alive()  # polls the container: records how it ended

        await eventually(died, "the kernel died", timeout=20)
        exit_ = km.provisioner.last_exit
        assert exit_ is not None, "the kernel did not die"
        assert exit_.oom_killed
        assert "out-of-memory" in exit_.message()
        assert "160 MiB" in exit_.message()
        assert "out-of-memory" in caplog.text and km.kernel_id in caplog.text


async def test_killed_container_is_restarted(kernelspec, notebook_dir, docker_api, caplog):
    caplog.set_level(logging.WARNING)
    name = kernelspec()
    async with running_kernel(name, notebook_dir, manager=AsyncIOLoopKernelManager) as (km, kc):
        old = km.provisioner.container_id
        restarted = asyncio.Event()
        km.add_restart_callback(restarted.set, "restart")
        docker_api.kill(old)
        await asyncio.wait_for(restarted.wait(), timeout=30)
        await kc.wait_for_ready(timeout=60)
        await wait_for_iopub(kc)
        out, _ = await execute(kc, "print('back')")
        assert out.strip() == "back"
        assert km.provisioner.container_id != old
        assert [c["Id"] for c in containers_of(docker_api, km.kernel_id)] == [
            km.provisioner.container_id
        ]
        assert "SIGKILL" in caplog.text and "died" in caplog.text


async def test_engine_restart_under_a_running_kernel(
    kernelspec, notebook_dir, second_engine, policy, caplog
):
    """The engine stops (and comes back) under a running kernel: the kernel is reported dead
    for that reason, Jupyter restarts it on the engine once it answers, nothing is left."""
    caplog.set_level(logging.WARNING)
    policy(allowed_engines=[second_engine.url], allowed_networks=["bridge", "none", "host"])
    name = kernelspec(docker_host=second_engine.url, network="host")
    async with running_kernel(name, notebook_dir, manager=AsyncIOLoopKernelManager) as (km, kc):
        await execute(kc, "x = 41")
        old = km.provisioner.container_id
        reasons = []
        km.add_restart_callback(lambda: reasons.append(km.provisioner.last_exit), "restart")
        await asyncio.to_thread(second_engine.restart)
        await eventually(lambda: reasons, "the restarter saw the kernel die", timeout=60)
        exit_ = reasons[0]
        assert exit_ is not None and not exit_.requested
        assert "stopped by the Docker engine, which shut down or restarted at" in exit_.message()
        assert "live-restore" in exit_.message()
        assert "Docker engine" in caplog.text and km.kernel_id in caplog.text
        # Restarted on the engine that came back: a fresh kernel in a fresh container.
        await eventually(
            lambda: km.provisioner.container_id not in (None, old) and km.provisioner.has_process,
            "the kernel restarted",
            timeout=90,
        )
        await kc.wait_for_ready(timeout=60)
        await wait_for_iopub(kc)
        out, _ = await execute(kc, "print(x)")
        assert "NameError" in out
        out, _ = await execute(kc, "print('back')")
        assert out.strip() == "back"
        assert [c["Id"] for c in second_engine.containers()] == [km.provisioner.container_id]
    await eventually(lambda: not second_engine.containers(), "no container left on the engine")


async def test_a_cancelled_create_leaves_no_container(docker_api):
    """A start cancelled while the engine creates its container (a server stopping
    mid-start) removes the container once it exists."""
    mark = {labels.MANAGED: "true", "test.cancelled-create": str(uuid.uuid4())}
    engine = Engine.for_url(None)
    create = {"image": IMAGE, "command": ["true"], "labels": mark}
    label = f"test.cancelled-create={mark['test.cancelled-create']}"
    creating = asyncio.ensure_future(containers.create(engine, create, {}))
    for _ in range(5):
        await asyncio.sleep(0)  # the request goes to the engine's thread
    deadline = time.monotonic() + 30
    # Blocking the loop on purpose: the task cannot see the creation before it is cancelled.
    while not docker_api.containers(all=True, filters={"label": label}):
        assert time.monotonic() < deadline, "the engine never created the container"
        time.sleep(0.01)  # noqa: ASYNC251 (the point: the loop must not run)
    creating.cancel()
    with pytest.raises(asyncio.CancelledError):
        await creating
    assert docker_api.containers(all=True, filters={"label": label}) == []

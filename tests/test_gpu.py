"""GPU requests reach the engine as device requests; a kernel gets the GPUs it asked for where
the engine has them (``gpu``), and a GPU-less engine is explained (``no_gpu``)."""

from __future__ import annotations

import logging
import subprocess

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core.exceptions import GPUUnavailableError
from jupyter_mlcontainer.core.ledger import GPUsBusyError
from jupyter_mlcontainer.docker import containers

from .conftest import containers_of, execute, running_kernel, start_fails

pytestmark = pytest.mark.engine


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("all", {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]]}),
        (2, {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]]}),
        (
            ["0", "GPU-8f5a1c1e"],
            {
                "Driver": "",
                "Count": 0,
                "DeviceIDs": ["0", "GPU-8f5a1c1e"],
                "Capabilities": [["gpu"]],
            },
        ),
    ],
)
@pytest.mark.no_gpu
async def test_explicit_gpus_are_requested_and_refused_clearly(
    kernelspec, notebook_dir, docker_api, monkeypatch, gpus, expected
):
    seen = {}
    real_start = containers.start

    async def start(engine, container_id):
        seen.update(await containers.inspect(engine, container_id))  # what was really created
        await real_start(engine, container_id)

    monkeypatch.setattr(containers, "start", start)
    km = AsyncKernelManager(kernel_name=kernelspec(gpus=gpus))
    with pytest.raises(GPUUnavailableError) as info:
        await km.start_kernel(cwd=str(notebook_dir))
    message = str(info.value)
    assert "NVIDIA Container Toolkit" in message and "gpus='none'" in message
    requests = seen["HostConfig"]["DeviceRequests"]
    assert len(requests) == 1
    assert {k: requests[0][k] for k in expected} == expected
    assert "NVIDIA_VISIBLE_DEVICES=void" not in seen["Config"]["Env"]
    assert containers_of(docker_api, km.kernel_id) == []


@pytest.mark.no_gpu
async def test_auto_falls_back_to_cpu_with_a_warning(kernelspec, notebook_dir, docker_api, caplog):
    caplog.set_level(logging.WARNING)
    async with running_kernel(kernelspec(gpus="auto"), notebook_dir) as (km, kc):
        info = docker_api.inspect_container(km.provisioner.container_id)
        assert not info["HostConfig"]["DeviceRequests"]
        assert "NVIDIA_VISIBLE_DEVICES=void" in info["Config"]["Env"]
        out, _ = await execute(kc, "import os; print(os.environ['NVIDIA_VISIBLE_DEVICES'])")
        assert out.strip() == "void"
        assert km.provisioner.granted_gpus.mode == "none"
    assert "runs on the CPU" in caplog.text and "NVIDIA Container Toolkit" in caplog.text


@pytest.mark.gpu
@pytest.mark.parametrize("gpus", ["all", "auto", 1])
async def test_a_gpu_kernel_sees_its_devices(kernelspec, notebook_dir, docker_api, gpus):
    """On a GPU host the ledger reads nvidia-smi and hands out GPUs by UUID: the kernel sees
    exactly those (``auto`` and ``1``: one GPU; ``all``: every GPU of the host)."""
    inventory = subprocess.run(
        ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    async with running_kernel(kernelspec(gpus=gpus), notebook_dir) as (km, kc):
        info = docker_api.inspect_container(km.provisioner.container_id)
        granted = info["HostConfig"]["DeviceRequests"][0]["DeviceIDs"]
        assert granted == (inventory if gpus == "all" else granted[:1])
        assert set(granted) <= set(inventory)
        out, _ = await execute(
            kc,
            "import glob, os; print(len(glob.glob('/dev/nvidia[0-9]*')), "
            "os.environ['NVIDIA_VISIBLE_DEVICES'])",
        )
        devices, visible = out.split()
        assert int(devices) == len(granted)
        assert visible.split(",") == granted


@pytest.mark.gpu
async def test_two_gpu_kernels_get_different_gpus_or_a_clear_refusal(kernelspec, notebook_dir):
    """The real-GPU counterpart of tests/test_gpu_ledger.py: two kernels asking one GPU each
    never share one; on a one-GPU host the second is told who holds it."""
    count = len(
        subprocess.run(
            ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    name = kernelspec(gpus=1)
    async with running_kernel(name, notebook_dir) as (first, _):
        if count == 1:
            _, message = await start_fails(name, notebook_dir, GPUsBusyError)
            assert "this host's one GPU is in use" in message
            return
        async with running_kernel(name, notebook_dir) as (second, _):
            assert first.provisioner.granted_gpus.ids != second.provisioner.granted_gpus.ids

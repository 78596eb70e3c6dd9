"""GPU requests reach the engine as device requests; a kernel gets the GPUs it asked for where
the engine has them (``gpu``), and a GPU-less engine is explained (``no_gpu``)."""

from __future__ import annotations

import logging

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core.exceptions import GPUUnavailableError
from jupyter_mlcontainer.docker import containers

from .conftest import containers_of, execute, running_kernel

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
    async with running_kernel(kernelspec(gpus=gpus), notebook_dir) as (km, kc):
        info = docker_api.inspect_container(km.provisioner.container_id)
        assert info["HostConfig"]["DeviceRequests"]
        out, _ = await execute(
            kc,
            "import glob, os; print(len(glob.glob('/dev/nvidia[0-9]*')), os.environ['JUPYTER_MLCONTAINER_GPUS'])",
        )
        devices, granted = out.split(maxsplit=1)
        assert int(devices) >= 1
        assert granted.strip() == ("1 GPU" if gpus == 1 else "all GPUs")

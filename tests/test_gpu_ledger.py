"""The GPU ledger on an engine with SIMULATED GPUs (tests/engines.py ``SimulatedGpuEngine``: a
stand-in NVIDIA hook on its daemon's PATH, a stand-in nvidia-smi listing four GPUs). It proves
our plumbing — GPU requests by UUID, the ledger's labels, busy GPUs refused with who holds
them, a killed server's GPUs freed with its lease — not the hardware (the ``gpu`` marker's
test does that on a machine with a GPU)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core import backend as backends
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.ledger import GPUsBusyError
from jupyter_mlcontainer.kernel.policy import QuotaExceededError

from .conftest import IMAGE, eventually, execute, start_fails
from .engines import SIMULATED_GPUS, SIMULATED_MIG
from .servers import Server

pytestmark = pytest.mark.engine

VISIBLE = "import os; print(os.environ.get('NVIDIA_VISIBLE_DEVICES'))"


def gpu_policy(policy: Any, gpu_engine: Any, **rules: Any) -> None:
    """The admin's policy for kernels on the simulated GPU engine, with ``rules`` added."""
    policy(
        allowed_engines=[gpu_engine.url],
        allowed_networks=["bridge", "host", "none"],
        gpu_inventory_command=str(gpu_engine.nvidia_smi),
        **rules,
    )


@pytest.fixture
def gpu_kernelspec(kernelspec, gpu_engine, policy):
    """Kernelspecs on the simulated GPU engine, with the ledger reading its inventory."""
    gpu_policy(policy, gpu_engine)

    def make(name: str = "gpu", **config: Any) -> str:
        return kernelspec(name, docker_host=gpu_engine.url, network="host", **config)

    return make


@contextlib.asynccontextmanager
async def kernels(name: str, cwd: Any, n: int):
    """``n`` kernels of ``name`` started at once; their (manager, client) pairs."""
    managers = [AsyncKernelManager(kernel_name=name) for _ in range(n)]
    clients = []
    try:
        await asyncio.gather(*(km.start_kernel(cwd=str(cwd)) for km in managers))
        for km in managers:
            kc = km.client()
            kc.start_channels()
            clients.append(kc)
            await kc.wait_for_ready(timeout=60)
        yield list(zip(managers, clients, strict=True))
    finally:
        for kc in clients:
            kc.stop_channels()
        await asyncio.gather(
            *(km.shutdown_kernel(now=True) for km in managers if km.has_kernel),
            return_exceptions=True,
        )


async def visible(kc: Any) -> str:
    out, reply = await execute(kc, VISIBLE)
    assert reply["status"] == "ok", out
    return out.strip()


async def test_gpu_support_is_tried_not_read_from_the_runtime_list(gpu_engine, docker_api):
    simulated = backends.connect(gpu_engine.url)
    assert "nvidia" not in (await simulated.info()).get("Runtimes", {})
    assert not (await simulated.gpu_support()).available  # what `docker info` says
    tried = await simulated.gpu_support(try_image=IMAGE)
    assert tried.available and tried.device_requests and "hook" in tried.describe()
    # The suite's own engine has no hook: the same try says no.
    assert not (await backends.connect(None).gpu_support(try_image=IMAGE)).available


async def test_four_kernels_get_four_gpus_and_a_fifth_is_told_who_holds_them(
    gpu_kernelspec, notebook_dir, gpu_engine
):
    name = gpu_kernelspec(gpus=1)
    async with kernels(name, notebook_dir, 4) as started:  # at once: the ledger's race too
        seen = [await visible(kc) for _, kc in started]
        assert sorted(seen) == SIMULATED_GPUS, "four kernels, four different GPUs"
        for km, _ in started:
            container = gpu_engine.api().inspect_container(km.provisioner.container_id)
            granted = container["Config"]["Labels"][labels.GPUS]
            requests = container["HostConfig"]["DeviceRequests"]
            assert requests[0]["DeviceIDs"] == [granted]
        _, message = await start_fails(name, notebook_dir, GPUsBusyError)
        assert "all 4 GPUs of this host are in use: root ×4" in message
        assert "gpus='none'" in message
        # A restart keeps its kernel's GPU, though none is free (in its own container).
        km, kc = started[1]
        container = km.provisioner.container_id
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        assert await visible(kc) == seen[1] and km.provisioner.container_id == container
        # `auto` falls back to the CPU while none is free.
        async with kernels(gpu_kernelspec("auto", gpus="auto"), notebook_dir, 1) as [(_, kc)]:
            assert await visible(kc) == "void"
        # One ends: its GPU goes to the next kernel.
        freed = seen[0]
        await started[0][0].shutdown_kernel(now=True)
        async with kernels(name, notebook_dir, 1) as [(_, kc)]:
            assert await visible(kc) == freed


async def test_shared_gpus_take_up_to_n_kernels_each(
    gpu_kernelspec, notebook_dir, policy, gpu_engine
):
    gpu_policy(policy, gpu_engine, gpu_sharing=2)
    name = gpu_kernelspec(gpus="all")
    async with kernels(name, notebook_dir, 2) as started:
        assert [await visible(kc) for _, kc in started] == [",".join(SIMULATED_GPUS)] * 2
        _, message = await start_fails(name, notebook_dir, GPUsBusyError)
        assert "(2 kernels each): root ×8" in message


def test_a_killed_servers_gpus_come_back_with_its_lease(
    gpu_kernelspec, notebook_dir, tmp_path, gpu_engine
):
    name = gpu_kernelspec(gpus="all")
    server = Server(
        notebook_dir,
        tmp_path / "runtime",
        tmp_path / "server.log",
        "--MLContainerProvisioner.lease_timeout=3",
    )
    try:
        _, kc = server.start_kernel(name)
        kc.stop_channels()
        with pytest.raises(GPUsBusyError):
            asyncio.run(AsyncKernelManager(kernel_name=name).start_kernel(cwd=str(notebook_dir)))
        server.stop(signal.SIGKILL)  # no cleanup: its kernel holds every GPU, on its own
        deadline = time.monotonic() + 30
        while True:
            try:
                km = AsyncKernelManager(kernel_name=name)
                asyncio.run(km.start_kernel(cwd=str(notebook_dir)))
                break
            except GPUsBusyError:
                assert time.monotonic() < deadline, "the killed server's GPUs never came back"
                time.sleep(0.5)
        asyncio.run(km.shutdown_kernel(now=True))
    finally:
        server.close()
        for container in gpu_engine.containers():
            gpu_engine.api().remove_container(container["Id"], force=True)


@pytest.fixture
def jp_server_config(jp_server_config, gpu_engine):
    """This module's servers use the simulated GPU engine."""
    extension = {**jp_server_config.get("MLContainerExtension", {}), "docker_host": gpu_engine.url}
    return {**jp_server_config, "MLContainerExtension": extension}


async def test_the_rest_api_and_doctor_show_each_gpu_with_its_holder(
    gpu_kernelspec, jp_fetch, gpu_engine
):
    name = gpu_kernelspec(gpus=1)
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    kernel_id = json.loads(response.body)["id"]
    try:
        table = json.loads((await jp_fetch("mlcontainer", "gpus")).body)
        assert table["ledger"] is True and table["sharing"] == 1
        assert [g["uuid"] for g in table["gpus"]] == SIMULATED_GPUS
        held = [g for g in table["gpus"] if g["holders"]]
        assert [h["kernel_id"] for h in held[0]["holders"]] == [kernel_id]
        assert held[0]["holders"][0]["user"] == "root" and held[0]["free"] is False
        assert sum(g["free"] for g in table["gpus"]) == 3

        doctor = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "jupyter_mlcontainer.cli", "doctor"],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": gpu_engine.url},
            timeout=120,
        )
        support = next(line for line in doctor.stdout.splitlines() if line.startswith("gpus"))
        assert "hook" in support and " ok " in f" {support} ", doctor.stdout  # tried, not read
        rows = [line for line in doctor.stdout.splitlines() if re.match(r"gpu \d ", line)]
        assert len(rows) == 4, doctor.stdout
        busy = [row for row in rows if "held by root ×1" in row]
        assert len(busy) == 1 and held[0]["uuid"] in busy[0], doctor.stdout
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_an_idle_gpu_kernel_is_warned_then_shut_down_and_its_gpu_freed(
    gpu_kernelspec, jp_fetch, jp_serverapp
):
    reclaimer = jp_serverapp.web_app.settings["mlcontainer"]["reclaimer"]
    reclaimer.gpu_idle_timeout, reclaimer.gpu_idle_warning = 6.0, 4.0  # as configured
    reclaimer.start()

    async def start(name: str) -> str:
        body = json.dumps({"name": name})
        return json.loads((await jp_fetch("api", "kernels", method="POST", body=body)).body)["id"]

    async def detail(kernel_id: str) -> dict[str, Any]:
        return json.loads((await jp_fetch("mlcontainer", "kernels", kernel_id)).body)

    async def running() -> list[str]:
        return [k["id"] for k in json.loads((await jp_fetch("api", "kernels")).body)]

    gpu_kernel = await start(gpu_kernelspec(gpus=1))
    cpu_kernel = await start(gpu_kernelspec("cpu", gpus="none"))
    try:
        assert (await detail(gpu_kernel))["reclaim_in"] is None  # not yet within the warning
        warned = await eventually(
            lambda: _reclaim_in(detail, gpu_kernel), "the notebook is warned", timeout=30
        )
        assert 0 <= warned[0] <= 4.0
        assert (await detail(cpu_kernel))["reclaim_in"] is None  # holds no GPU
        await eventually(
            lambda: _gone(running, gpu_kernel), "the idle GPU kernel shut down", timeout=30
        )
        # Its container is removed in the background (the shutdown does not wait for it).
        await eventually(lambda: _all_free(jp_fetch), "its GPU is free again", timeout=30)
        assert cpu_kernel in await running()  # a kernel without GPUs is left alone
    finally:
        await reclaimer.stop()
        for kernel_id in await running():
            await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def _reclaim_in(detail: Any, kernel_id: str) -> tuple[float] | None:
    left = (await detail(kernel_id))["reclaim_in"]
    return None if left is None else (left,)


async def _gone(running: Any, kernel_id: str) -> bool:
    return kernel_id not in await running()


async def _all_free(jp_fetch: Any) -> bool:
    table = json.loads((await jp_fetch("mlcontainer", "gpus")).body)
    return all(g["free"] for g in table["gpus"])


async def test_a_gpu_quota_refuses_more_gpus_but_not_a_cpu_kernel(
    gpu_kernelspec, notebook_dir, gpu_engine, policy
):
    gpu_policy(policy, gpu_engine, quotas={"*": {"gpus": 1}})
    async with kernels(gpu_kernelspec(gpus=1), notebook_dir, 1):
        _, message = await start_fails(gpu_kernelspec(gpus=1), notebook_dir, QuotaExceededError)
        assert "root may hold 1 GPU at once (1 held by 1 kernel(s)" in message
        async with kernels(gpu_kernelspec("cpu", gpus="none"), notebook_dir, 1):
            pass


def test_two_servers_on_one_host_hand_out_different_gpus(
    gpu_kernelspec, notebook_dir, tmp_path, gpu_engine
):
    """Two people's own servers (two processes, nothing shared but the engine) start two GPU
    kernels each, all at once: four different GPUs."""
    name = gpu_kernelspec(gpus=1)
    servers = [
        Server(notebook_dir, tmp_path / f"runtime-{n}", tmp_path / f"server-{n}.log")
        for n in range(2)
    ]
    try:
        with ThreadPoolExecutor(4) as pool:
            started = list(
                pool.map(lambda s: s.call("POST", "/api/kernels", {"name": name}), servers * 2)
            )
        granted = [
            c["Labels"][labels.GPUS]
            for c in gpu_engine.api().containers(filters={"label": labels.GPUS})
        ]
        assert sorted(granted) == SIMULATED_GPUS, [s.text()[-2000:] for s in servers]
        assert len(started) == 4
    finally:
        for server in servers:
            server.stop()
            server.close()


async def test_mig_instances_are_handed_out_as_devices(
    gpu_kernelspec, notebook_dir, gpu_engine, policy
):
    """``gpu_devices: mig``: the ledger reads `nvidia-smi -L` and hands out the (simulated)
    MIG instances by UUID, one kernel each."""
    gpu_policy(policy, gpu_engine, gpu_devices="mig")
    name = gpu_kernelspec(gpus=1)
    async with kernels(name, notebook_dir, 4) as started:
        assert sorted([await visible(kc) for _, kc in started]) == SIMULATED_MIG
        _, message = await start_fails(name, notebook_dir, GPUsBusyError)
        assert "all 4 MIG instances of this host are in use" in message

"""Kernels on the test swarm (tests/swarm.py) through the provisioner, with ``backend: swarm``:
a service of one task, placed by the scheduler, reached at its node's address (host-mode
ports, CurveZMQ), interrupted and restarted through its in-container supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jupyter_mlcontainer.cli.doctor import node_rows
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.backend import ContainerState
from jupyter_mlcontainer.core.exceptions import Unschedulable
from jupyter_mlcontainer.docker.engine import Engine
from jupyter_mlcontainer.server.handlers import placed

from .conftest import IMAGE, execute, running_kernel, start_fails, wait_for_stream
from .servers import Server
from .swarm import GPU_KIND, GPU_WORKER, MANAGER, SIMULATED_GPUS, WORKER, SwarmCluster

pytestmark = [pytest.mark.engine, pytest.mark.swarm]


@pytest.fixture
def on_the_swarm(swarm_cluster: SwarmCluster, policy, monkeypatch):
    """The test image on every node; the manager allowed (its API is plain TCP, reachable from
    this machine only; the kernels' traffic is still CurveZMQ-encrypted); no proxy for the
    swarm's addresses."""
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.skip(f"test image missing ({IMAGE}): run scripts/images.sh")
    swarm_cluster.load(IMAGE)
    policy(allowed_engines=[swarm_cluster.manager_url], allow_unencrypted_remote=True)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), "10.214.0.0/16"])))
    yield swarm_cluster
    engine = Engine._instances.pop(swarm_cluster.manager_url, None)
    if engine is not None:
        engine.drain_blocking()


@contextlib.asynccontextmanager
async def told_on_failure(cluster: SwarmCluster, km: Any) -> AsyncIterator[None]:
    """On a failure, print the kernel's service: its tasks' states and its log."""
    try:
        yield
    except BaseException:
        service_id = getattr(km.provisioner, "container_id", None)
        if service_id:
            api = cluster.manager_api()
            with contextlib.suppress(Exception):
                for task in api.tasks(filters={"service": service_id}):
                    print(f"task {task['ID'][:12]}: {task['Status']}", file=sys.stderr)
                log = b"".join(api.service_logs(service_id, stdout=True, stderr=True, tail=50))
                print(log.decode(errors="replace"), file=sys.stderr)
        raise


def ours_on_the_swarm(cluster: SwarmCluster, kernel_id: str) -> list[str]:
    """What of this kernel is on the swarm: services and secrets on the manager, containers on
    any node."""
    wanted = {"label": [f"{labels.KERNEL_ID}={kernel_id}"]}
    api = cluster.manager_api()
    found = [f"service {s['Spec']['Name']}" for s in api.services(filters=wanted)]
    found += [f"secret {s['Spec']['Name']}" for s in api.secrets(filters=wanted)]
    for node in cluster.nodes.values():
        if node.proc is not None:
            found += [
                f"container {c['Names'][0]} on {node.name}"
                for c in node.api().containers(all=True, filters=wanted)
            ]
    return found


async def test_a_kernel_on_the_swarm_runs_is_interrupted_restarts_and_leaves_nothing(
    on_the_swarm, kernelspec_file, notebook_dir
):
    cluster = on_the_swarm
    name = kernelspec_file(
        "on-the-swarm",
        backend="swarm",
        docker_host=cluster.manager_url,
        persistent_home=False,  # volumes are per node
        mount_cwd=False,  # the notebook folder is on this machine only
        placement=["node.role!=manager"],  # on a worker
    )
    async with running_kernel(name, notebook_dir) as (km, kc), told_on_failure(cluster, km):
        service_id = km.provisioner.container_id
        api = cluster.manager_api()
        [task] = api.tasks(filters={"service": service_id})
        node = api.inspect_node(task["NodeID"])
        assert node["Spec"]["Role"] == "worker", node["Description"]["Hostname"]
        # Reached at the node the scheduler chose, CurveZMQ-encrypted.
        info = km.get_connection_info()
        assert info["ip"] == node["Status"]["Addr"]
        assert info.get("curve_publickey")
        assert api.inspect_service(service_id)["Spec"]["Labels"][labels.KERNEL_ID] == km.kernel_id
        # By id (the test image was loaded on each node, never pushed): no node pulls a tag.
        assert task["Spec"]["ContainerSpec"]["Image"].startswith("sha256:"), task["Spec"]
        assert (await state_of(km)).image == IMAGE  # the details show the name asked for

        out, _ = await execute(kc, "print(1 + 1)")
        assert out.strip() == "2"

        await execute(kc, "x = 42")
        msg_id = kc.execute("print('looping', flush=True)\nwhile True:\n    pass")
        await wait_for_stream(kc, msg_id, "looping")
        await km.interrupt_kernel()  # no signal verb: through the supervisor
        reply = await kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = await kc.get_shell_msg(timeout=10)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        out, _ = await execute(kc, "print(x)")
        assert out.strip() == "42"

        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        out, _ = await execute(kc, "print('x' in dir(), 1 + 1)")
        assert out.split() == ["False", "2"]
        # Restarted inside its task: the same service, still one task.
        assert km.provisioner.container_id == service_id
        assert len(api.tasks(filters={"service": service_id})) == 1
        kernel_id = km.kernel_id
    nothing_left(cluster, kernel_id)


def nothing_left(cluster: SwarmCluster, kernel_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout  # a node stops a removed task within its grace period
    while left := ours_on_the_swarm(cluster, kernel_id):
        assert time.monotonic() < deadline, f"left on the swarm: {left}"
        time.sleep(0.5)


async def test_a_kernel_no_node_has_room_for_is_refused_with_what_to_do(
    on_the_swarm, kernelspec_file, notebook_dir
):
    cluster = on_the_swarm
    memory = cluster.node_record(MANAGER)["Description"]["Resources"]["MemoryBytes"]
    name = kernelspec_file(
        "too-big-for-the-swarm",
        backend="swarm",
        docker_host=cluster.manager_url,
        persistent_home=False,
        mount_cwd=False,
        mem_limit=str(memory * 4),  # each node has the host's memory
    )
    km, message = await start_fails(name, notebook_dir, Unschedulable)
    assert "No node of the swarm can run this kernel now" in message
    assert "insufficient resources" in message and "smaller mem_limit" in message
    nothing_left(cluster, km.kernel_id)


def swarm_kernelspec(kernelspec_file: Any, cluster: SwarmCluster, name: str, **config: Any) -> str:
    """A kernelspec of the test image on the swarm (no HOME volume, no notebook folder: both
    are per machine)."""
    return str(
        kernelspec_file(
            name,
            backend="swarm",
            docker_host=cluster.manager_url,
            persistent_home=False,
            mount_cwd=False,
            **config,
        )
    )


async def state_of(km: Any) -> ContainerState:
    """The kernel's service as the backend reads it now (what the kernel details show)."""
    state = await km.provisioner.container_backend.inspect(km.provisioner.container_id)
    assert state is not None, f"kernel {km.kernel_id}: its service is gone"
    return state


async def test_kernels_spread_over_the_nodes_by_memory_and_the_last_is_refused(
    on_the_swarm, kernelspec_file, notebook_dir
):
    """Each node has the host's memory: three kernels reserving 60 % of it land on the three
    nodes (the scheduler places by memory, through the provisioner's mem_limit); a fourth has
    no node with room, and says so."""
    cluster = on_the_swarm
    memory = cluster.node_record(MANAGER)["Description"]["Resources"]["MemoryBytes"]
    name = swarm_kernelspec(
        kernelspec_file, cluster, "big-on-the-swarm", mem_limit=str(int(memory * 0.6))
    )
    kernel_ids = []
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for _ in range(3):
            km, kc = await stack.enter_async_context(running_kernel(name, notebook_dir))
            await stack.enter_async_context(told_on_failure(cluster, km))
            kernel_ids.append(km.kernel_id)
            state = await state_of(km)
            assert state.running, state
            nodes.append(state.node)
            out, _ = await execute(kc, "print(1 + 1)")
            assert out.strip() == "2"
        assert sorted(nodes) == sorted([MANAGER, WORKER, GPU_WORKER]), (
            f"three kernels of 60 % of a node's memory each should fill the three nodes: {nodes}"
        )
        km, message = await start_fails(name, notebook_dir, Unschedulable)
        assert "No node of the swarm can run this kernel now" in message, message
        assert "insufficient resources" in message and "of memory" in message, message
        kernel_ids.append(km.kernel_id)
    for kernel_id in kernel_ids:
        nothing_left(cluster, kernel_id)


async def test_kernels_on_simulated_gpus_get_distinct_gpus_of_the_gpu_node_and_a_third_is_refused(
    on_the_swarm, kernelspec_file, notebook_dir
):
    """SIMULATED GPUs (tests/swarm.py): two kernels asking for one GPU each land on sw-gpu, the
    only node that declares GPUs, with distinct GPUs (the task's GenericResources, as the
    kernel details report them, and the kernel's own DOCKER_RESOURCE_NVIDIA-GPU); doctor's
    node rows show both held by our kernels; a third kernel has no GPU left and is refused
    with a message that names what it asks for; nothing is left."""
    cluster = on_the_swarm
    # No mem_limit: the policy's default (90 % of a node) is each kernel's limit, but not a
    # reservation, which would leave room for one kernel per node.
    name = swarm_kernelspec(kernelspec_file, cluster, "gpu-on-the-swarm", gpus=1)
    kernel_ids = []
    async with contextlib.AsyncExitStack() as stack:
        given = []
        for _ in range(2):
            km, kc = await stack.enter_async_context(running_kernel(name, notebook_dir))
            await stack.enter_async_context(told_on_failure(cluster, km))
            kernel_ids.append(km.kernel_id)
            state = await state_of(km)
            assert state.node == GPU_WORKER, f"a GPU kernel ran on {state.node}: {state}"
            assert placed(state) == {"node": GPU_WORKER}  # the kernel list and details
            [request] = state.device_requests
            [uuid] = request["DeviceIDs"]
            given.append(uuid)
            out, _ = await execute(
                kc, f"import os; print(os.environ.get('DOCKER_RESOURCE_{GPU_KIND}'))"
            )
            assert out.strip() == uuid, f"the kernel sees {out.strip()!r}, its task has {uuid}"
            assert km.get_connection_info()["ip"] == cluster.nodes[GPU_WORKER].address
        assert sorted(given) == sorted(SIMULATED_GPUS), f"not distinct GPUs: {given}"
        resources = cluster.manager_api().inspect_service(km.provisioner.container_id)["Spec"][
            "TaskTemplate"
        ]["Resources"]
        assert "MemoryBytes" not in resources.get("Reservations", {}), resources
        assert resources["Limits"]["MemoryBytes"] > 0  # the policy's default, as a limit

        nodes = {n.name: n for n in await km.provisioner.container_backend.nodes()}
        assert sorted(nodes) == sorted([MANAGER, WORKER, GPU_WORKER])
        gpu_node = nodes[GPU_WORKER]
        assert sorted(gpu_node.gpus) == sorted(SIMULATED_GPUS)
        assert gpu_node.gpus_ours == tuple(sorted(SIMULATED_GPUS)), gpu_node
        assert nodes[WORKER].gpus == nodes[MANAGER].gpus == ()
        rows = {label: detail for label, _, detail in node_rows(nodes.values())}
        assert "GPUs: 2" in rows[f"node {GPU_WORKER}"] and "0 free" in rows[f"node {GPU_WORKER}"]

        km, message = await start_fails(name, notebook_dir, Unschedulable)
        kernel_ids.append(km.kernel_id)
        assert "No node of the swarm can run this kernel now" in message, message
        assert f"it asks for 1 GPU ({GPU_KIND})" in message, message
        assert "fewer GPUs" in message, message
        nothing_left(cluster, km.kernel_id)
    for kernel_id in kernel_ids:
        nothing_left(cluster, kernel_id)


async def test_a_kernel_whose_node_leaves_is_reported_dead_and_restarts_on_another_node(
    on_the_swarm, kernelspec_file, notebook_dir
):
    """A kernel placed on the workers (``placement``: never the manager) starts on sw-worker
    (sw-gpu paused meanwhile); sw-worker's engine stops under it: the provisioner reports the
    kernel dead with the reason "node sw-worker left the swarm", and its restart is a new
    service on the other worker, sw-gpu, reached at that node's address."""
    cluster = on_the_swarm
    name = swarm_kernelspec(
        kernelspec_file, cluster, "placed-on-the-workers", placement=["node.role==worker"]
    )
    kernel_id = ""
    cluster.set_availability(GPU_WORKER, "pause")  # the first start has sw-worker only
    try:
        async with running_kernel(name, notebook_dir) as (km, kc), told_on_failure(cluster, km):
            kernel_id = km.kernel_id
            cluster.set_availability(GPU_WORKER, "active")
            first = await state_of(km)
            assert first.node == WORKER, f"placed on {first.node}, not on {WORKER}: {first}"
            api = cluster.manager_api()
            constraints = api.inspect_service(first.id)["Spec"]["TaskTemplate"]["Placement"]
            assert constraints == {"Constraints": ["node.role==worker"]}
            await execute(kc, "x = 42")

            cluster.stop_node(WORKER)
            deadline = time.monotonic() + 120  # down within seconds (heartbeat 1 s)
            while (code := await asyncio.wait_for(km.provisioner.poll(), 90)) is None:
                assert time.monotonic() < deadline, (
                    f"the kernel was not seen dead; node {WORKER} is "
                    f"{cluster.node_state(WORKER)}, its task: {await state_of(km)}"
                )
                await asyncio.sleep(0.5)
            last = km.provisioner.last_exit
            assert last is not None and not last.requested, last
            assert f"node {WORKER} left the swarm" in last.reason, (code, last.message())
            assert f"node {WORKER} left the swarm" in last.message()

            await asyncio.wait_for(km.restart_kernel(now=True), 180)
            second = await state_of(km)
            assert second.id != first.id, "a dead kernel's restart is a new service"
            assert (second.node, second.running) == (GPU_WORKER, True), second
            assert km.get_connection_info()["ip"] == cluster.nodes[GPU_WORKER].address
            fresh = km.client()  # the old client's sockets point at sw-worker
            fresh.start_channels()
            try:
                await fresh.wait_for_ready(timeout=60)
                out, _ = await execute(fresh, "print('x' in dir(), 1 + 1)")
                assert out.split() == ["False", "2"]
            finally:
                fresh.stop_channels()
    finally:
        cluster.set_availability(GPU_WORKER, "active")
        cluster.start_node(WORKER)
        cluster.wait_node_state(WORKER, "ready", timeout=60)
    # The worker, back, finds its task's service removed and removes its container.
    nothing_left(cluster, kernel_id, timeout=90)


def test_a_killed_servers_kernel_is_reaped_from_the_swarm_by_the_next_server(
    on_the_swarm, kernelspec_file, notebook_dir, tmp_path
):
    """A server SIGKILLed under a running swarm kernel cleans nothing up: its service, secret
    and container stay. The next server on this machine finds the dead server's lease and
    removes them, on whichever node the task ran."""
    cluster = on_the_swarm
    name = swarm_kernelspec(kernelspec_file, cluster, "reaped-on-the-swarm")
    runtime = tmp_path / "runtime"
    server = Server(notebook_dir, runtime, tmp_path / "killed.log")
    second = None
    try:
        kernel_id, kc = server.start_kernel(name)
        kc.execute("1 + 1")
        kc.stop_channels()
        server.stop(signal.SIGKILL)
        left = ours_on_the_swarm(cluster, kernel_id)
        assert any(f.startswith("service ") for f in left), left  # nobody removed it
        assert any(f.startswith("container ") for f in left), left
        second = Server(notebook_dir, runtime, tmp_path / "next.log")
        nothing_left(cluster, kernel_id, timeout=60)
        assert "orphaned kernel service" in second.text(), second.text()[-2000:]
    finally:
        server.close()
        if second is not None:
            second.stop()


async def test_braces_in_a_kernels_environment_reach_it_as_they_are(
    on_the_swarm, kernelspec_file, notebook_dir
):
    """A task's environment is a Swarm template: "{{" (which a CurveZMQ key in the connection
    info may hold) must arrive literally, not be refused or expanded."""
    cluster = on_the_swarm
    name = swarm_kernelspec(
        kernelspec_file, cluster, "braces-on-the-swarm", env={"BRACES": "a{{.Node.ID}}b{{{c"}
    )
    async with running_kernel(name, notebook_dir) as (km, kc), told_on_failure(cluster, km):
        out, _ = await execute(kc, "import os; print(os.environ['BRACES'])")
        assert out.strip() == "a{{.Node.ID}}b{{{c"
        kernel_id = km.kernel_id
    nothing_left(cluster, kernel_id)

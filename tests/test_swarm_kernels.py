"""Kernels on the test swarm (tests/swarm.py) through the provisioner, with ``backend: swarm``:
a service of one task, placed by the scheduler, reached at its node's address (host-mode
ports, CurveZMQ), interrupted and restarted through its in-container supervisor."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import Unschedulable
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import IMAGE, execute, running_kernel, start_fails, wait_for_stream
from .swarm import MANAGER, SwarmCluster

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
    )
    async with running_kernel(name, notebook_dir) as (km, kc), told_on_failure(cluster, km):
        service_id = km.provisioner.container_id
        api = cluster.manager_api()
        [task] = api.tasks(filters={"service": service_id})
        node = api.inspect_node(task["NodeID"])
        # Reached at the node the scheduler chose, CurveZMQ-encrypted.
        info = km.get_connection_info()
        assert info["ip"] == node["Status"]["Addr"]
        assert info.get("curve_publickey")
        assert api.inspect_service(service_id)["Spec"]["Labels"][labels.KERNEL_ID] == km.kernel_id

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


def nothing_left(cluster: SwarmCluster, kernel_id: str) -> None:
    deadline = time.monotonic() + 30  # a node stops a removed task within its grace period
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

"""The test swarm itself (tests/swarm.py), and the Swarm behaviour the backend relies on:
memory and SIMULATED GPU scheduling, host-mode ports, what the manager says of a lost node."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from jupyter_mlcontainer.core.gpus import GPURequest
from jupyter_mlcontainer.core.plan import build_plan
from jupyter_mlcontainer.swarm.spec import service_spec
from jupyter_mlcontainer.swarm.tasks import task_state

from .conftest import BARE_IMAGE
from .swarm import GPU_KIND, GPU_WORKER, MANAGER, SIMULATED_GPUS, WORKER, SwarmCluster
from .test_spec import launch

pytestmark = [pytest.mark.engine, pytest.mark.swarm]

TEST_LABEL = "mlc-test-swarm"
RESOURCE_ENV = f"DOCKER_RESOURCE_{GPU_KIND}"


@pytest.fixture
def services(swarm_cluster: SwarmCluster) -> Iterator[Callable[..., str]]:
    """Make services of the bare image on the test swarm (one task, never restarted); all
    removed after the test."""
    api = swarm_cluster.manager_api()

    def make(
        name: str,
        command: list[str],
        *,
        memory: int | None = None,
        gpus: int = 0,
        constraints: list[str] | None = None,
        ports: dict[int, Any] | None = None,
    ) -> str:
        resources = docker.types.Resources(
            mem_reservation=memory, generic_resources={GPU_KIND: gpus} if gpus else None
        )
        task = docker.types.TaskTemplate(
            docker.types.ContainerSpec(BARE_IMAGE, command=command),
            resources=resources,
            restart_policy=docker.types.RestartPolicy("none"),
            placement=docker.types.Placement(constraints=constraints),
        )
        created = api.create_service(
            task,
            name=f"mlc-test-{name}",
            labels={TEST_LABEL: "1"},
            endpoint_spec=docker.types.EndpointSpec(ports=ports) if ports else None,
        )
        return str(created["ID"])

    yield make
    for service in api.services(filters={"label": TEST_LABEL}):
        api.remove_service(service["ID"])
    deadline = time.monotonic() + 30  # the nodes stop the tasks
    while any(
        node.api().containers(all=True, filters={"label": "com.docker.swarm.service.id"})
        for node in swarm_cluster.nodes.values()
        if node.proc is not None
    ):
        assert time.monotonic() < deadline, "the swarm's tasks were not removed"
        time.sleep(0.5)


def task_of(cluster: SwarmCluster, service: str) -> dict[str, Any]:
    """The service's newest task."""
    tasks = cluster.manager_api().tasks(filters={"service": service})
    return dict(max(tasks, key=lambda t: t["CreatedAt"]))


def wait_task(
    cluster: SwarmCluster,
    service: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = task_of(cluster, service)
        if check(task):
            return task
        if time.monotonic() > deadline:
            msg = f"task of {service} not as expected: {task['Status']}"
            raise TimeoutError(msg)
        time.sleep(0.3)


def running(task: dict[str, Any]) -> bool:
    return bool(task["Status"]["State"] == "running")


def pending_for_resources(task: dict[str, Any]) -> bool:
    return task["Status"]["State"] == "pending" and "insufficient resources" in task["Status"].get(
        "Err", ""
    )


def hostname_of(cluster: SwarmCluster, task: dict[str, Any]) -> str:
    return str(cluster.manager_api().inspect_node(task["NodeID"])["Description"]["Hostname"])


def test_three_nodes_ready(swarm_cluster):
    nodes = swarm_cluster.manager_api().nodes()
    by_name = {n["Description"]["Hostname"]: n for n in nodes}
    assert sorted(by_name) == sorted([MANAGER, WORKER, GPU_WORKER])
    assert {n["Status"]["State"] for n in nodes} == {"ready"}
    assert by_name[MANAGER]["Spec"]["Role"] == "manager"
    assert by_name[WORKER]["Spec"]["Role"] == by_name[GPU_WORKER]["Spec"]["Role"] == "worker"
    assert by_name[GPU_WORKER]["Spec"]["Labels"] == {"gpu": "true"}
    advertised = by_name[GPU_WORKER]["Description"]["Resources"]["GenericResources"]
    assert sorted(r["NamedResourceSpec"]["Value"] for r in advertised) == sorted(SIMULATED_GPUS)
    assert "GenericResources" not in by_name[WORKER]["Description"]["Resources"]
    info = swarm_cluster.manager_api().info()
    assert info["Swarm"]["ControlAvailable"] is True


def test_memory_reservations_spread_and_the_last_waits(swarm_cluster, services):
    """Each node has the host's memory: three tasks reserving 60 % of it land on three nodes,
    and a fourth stays pending."""
    memory = swarm_cluster.node_record(MANAGER)["Description"]["Resources"]["MemoryBytes"]
    big = int(memory * 0.6)
    placed = []
    for n in range(3):
        service = services(f"mem-{n}", ["sleep", "600"], memory=big)
        placed.append(hostname_of(swarm_cluster, wait_task(swarm_cluster, service, running)))
    assert sorted(placed) == sorted([MANAGER, WORKER, GPU_WORKER])
    waiting = services("mem-3", ["sleep", "600"], memory=big)
    task = wait_task(swarm_cluster, waiting, pending_for_resources, timeout=20)
    assert task.get("NodeID", "") == ""


def test_simulated_gpus_each_go_to_one_task(swarm_cluster, services):
    """SIMULATED GPUs: two of three one-GPU tasks get distinct GPUs of the GPU node (in the
    task record and the container's environment); the third waits."""
    first = [services(f"gpu-{n}", ["sleep", "600"], gpus=1) for n in range(2)]
    tasks = [wait_task(swarm_cluster, s, running) for s in first]
    assert {hostname_of(swarm_cluster, t) for t in tasks} == {GPU_WORKER}
    # The Engine API names a task's assigned resources "GenericResources" (swarmkit's
    # AssignedGenericResources), beside the request in Spec.Resources.Reservations.
    assigned = [t["GenericResources"] for t in tasks]
    assert all(len(a) == 1 and a[0]["NamedResourceSpec"]["Kind"] == GPU_KIND for a in assigned)
    values = sorted(a[0]["NamedResourceSpec"]["Value"] for a in assigned)
    assert values == sorted(SIMULATED_GPUS)
    node_api = swarm_cluster.nodes[GPU_WORKER].api()
    seen = []
    for task in tasks:
        container = task["Status"]["ContainerStatus"]["ContainerID"]
        env = node_api.inspect_container(container)["Config"]["Env"]
        seen += [e.split("=", 1)[1] for e in env if e.startswith(f"{RESOURCE_ENV}=")]
    assert sorted(seen) == values
    third = services("gpu-2", ["sleep", "600"], gpus=1)
    task = wait_task(swarm_cluster, third, pending_for_resources, timeout=20)
    assert "no suitable node" in task["Status"]["Err"]


def test_host_mode_port_answers_at_the_workers_address(swarm_cluster, services):
    service = services(
        "http",
        ["python3", "-m", "http.server", "8000"],
        constraints=[f"node.hostname=={WORKER}"],
        ports={18080: (8000, "tcp", "host")},
    )
    task = wait_task(swarm_cluster, service, running)
    assert hostname_of(swarm_cluster, task) == WORKER
    address = swarm_cluster.nodes[WORKER].address
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while True:
        try:
            with opener.open(f"http://{address}:18080/", timeout=5) as answer:
                assert answer.status == 200
                break
        except OSError:
            assert time.monotonic() < deadline, "the published port never answered"
            time.sleep(0.5)
    # Host mode: only the task's own node publishes it (the ingress mesh would use all).
    with pytest.raises(urllib.error.URLError, match="refused"):
        opener.open(f"http://{swarm_cluster.nodes[GPU_WORKER].address}:18080/", timeout=5)


def test_a_stopped_workers_task_as_the_manager_reports_it(swarm_cluster, services):
    """What the manager says when a worker's engine stops under a running task (restart policy
    ``none``, heartbeat 1 s), measured here:

    - the node: ``Status.State`` goes ``ready`` → ``down`` with ``Status.Message``
      ``"heartbeat failure"`` a few seconds after its engine stopped; ``Spec.Availability``
      stays ``active``;
    - its task (the same ID; no replacement is made, the restart policy being ``none``):
      ``DesiredState`` becomes ``shutdown`` while ``Status.State`` stays the last one the node
      reported (``running``), with no ``Status.Err``: the task's own record never says the
      node is gone, so the backend must read the node's state (``NodeID`` → ``GET /nodes``);
    - when the engine comes back, the node is ``ready`` again and reports the task
      ``shutdown`` (``Status.Message`` ``"shutdown"``): it does not restart it.

    A task with placement constraints and reservations (memory, generic resources) fares
    otherwise (test_a_plans_service_runs_and_reads_back): once its node is ``down``, the
    constraint enforcer sets ``Status.State`` ``rejected``, ``Status.Message`` ``"task
    rejected by constraint enforcer"``, ``Status.Err`` ``"assigned node no longer meets
    constraints"``, ``DesiredState`` ``shutdown``, keeping ``ContainerStatus`` (ContainerID,
    PID, ``ExitCode`` 0). Either way the node's record is what says the node left.
    """
    service = services("lost", ["sleep", "600"], constraints=[f"node.hostname=={WORKER}"])
    task = wait_task(swarm_cluster, service, running)
    swarm_cluster.stop_node(WORKER)
    try:
        node = swarm_cluster.wait_node_state(WORKER, "down", timeout=30)
        assert node["Status"]["Message"] == "heartbeat failure"
        assert node["Spec"]["Availability"] == "active"
        lost = wait_task(swarm_cluster, service, lambda t: t["DesiredState"] == "shutdown", 10)
        time.sleep(3)  # nothing more happens to it while the node is down
        tasks = swarm_cluster.manager_api().tasks(filters={"service": service})
        assert [t["ID"] for t in tasks] == [task["ID"]] == [lost["ID"]]
        status = tasks[0]["Status"]
        assert (status["State"], tasks[0]["DesiredState"]) == ("running", "shutdown"), status
        assert "Err" not in status
    finally:
        swarm_cluster.start_node(WORKER)
    swarm_cluster.wait_node_state(WORKER, "ready", timeout=60)
    back = wait_task(swarm_cluster, service, lambda t: t["Status"]["State"] != "running", 30)
    assert (back["ID"], back["Status"]["State"], back["Status"]["Message"]) == (
        task["ID"],
        "shutdown",
        "shutdown",
    ), back["Status"]


def test_close_leaves_nothing(swarm_cluster):
    """A cluster of its own (beside the session's), closed with a task running on one worker
    and the other worker's engine stopped: no namespace, link, mount, process, iptables rule,
    cgroup or file of it is left."""
    cluster = SwarmCluster()
    try:
        cluster.start()
        cluster.load(BARE_IMAGE, nodes=(WORKER,))
        api = cluster.manager_api()
        task = docker.types.TaskTemplate(
            docker.types.ContainerSpec(BARE_IMAGE, command=["sleep", "600"]),
            restart_policy=docker.types.RestartPolicy("none"),
            placement=docker.types.Placement(constraints=[f"node.hostname=={WORKER}"]),
        )
        service = api.create_service(task, name="mlc-test-close")["ID"]
        wait_task(cluster, service, running)
        cluster.stop_node(GPU_WORKER)
        assert cluster.leftovers() != []
    finally:
        cluster.close()
    assert cluster.leftovers() == []
    cgroups = [
        str(p)
        for n in cluster.nodes.values()
        for p in Path("/sys/fs/cgroup").glob(f"*/{n.cgroup_parent}")
    ]
    assert cgroups == []
    cluster.close()  # twice is fine


def test_a_plans_service_runs_and_reads_back(swarm_cluster, services):
    """swarm/spec.py's spec as a real manager (API 1.41) takes it, and swarm/tasks.py's
    reading of its task, before and after its node's engine stopped (SIMULATED GPUs)."""
    plan = build_plan(
        launch(
            image=BARE_IMAGE,
            argv=["sleep", "600"],
            cwd="",
            mem_limit="64m",
            publish_ip="0.0.0.0",
            gpus=GPURequest("count", count=1),
        )
    )
    spec = service_spec(plan, constraints=["node.labels.gpu==true"])
    spec["Labels"] = {**spec["Labels"], TEST_LABEL: "1"}  # removed by the fixture
    api = swarm_cluster.manager_api()
    created = api.create_service(
        spec["TaskTemplate"],
        name=spec["Name"],
        labels=spec["Labels"],
        mode=spec["Mode"],
        endpoint_spec=spec["EndpointSpec"],
    )["ID"]
    task = wait_task(swarm_cluster, created, running)
    node = api.inspect_node(task["NodeID"])
    state = task_state(task, node, api.inspect_service(created))
    assert (state.id, state.name, state.status, state.node) == (
        created,
        plan.name,
        "running",
        GPU_WORKER,
    )
    assert state.memory_limit == 64 << 20
    (request,) = state.device_requests
    assert len(request["DeviceIDs"]) == 1
    assert request["DeviceIDs"][0] in SIMULATED_GPUS
    inspected = (
        swarm_cluster.nodes[GPU_WORKER]
        .api()
        .inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    )
    host = inspected["HostConfig"]
    assert (host["Init"], host["CapDrop"], host["Memory"]) == (True, ["ALL"], 64 << 20)
    assert inspected["Config"]["User"] == plan.create_args["user"]
    assert any(e.startswith(f"{RESOURCE_ENV}=GPU-simulated") for e in inspected["Config"]["Env"])
    published = {p["PublishedPort"] for p in task["Status"]["PortStatus"]["Ports"]}
    assert published == set(plan.create_args["ports"])
    swarm_cluster.stop_node(GPU_WORKER)
    try:
        swarm_cluster.wait_node_state(GPU_WORKER, "down", timeout=30)
        lost = task_of(swarm_cluster, created)
        dead = task_state(lost, api.inspect_node(lost["NodeID"]))
        assert (dead.status, dead.running) == ("dead", False)
        assert dead.error == f"node {GPU_WORKER} left the swarm"
    finally:
        swarm_cluster.start_node(GPU_WORKER)
    swarm_cluster.wait_node_state(GPU_WORKER, "ready", timeout=60)

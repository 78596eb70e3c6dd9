"""SwarmBackend (swarm/backend.py) against a fake manager: a small APIClient that records its
calls and answers with service, task and node records shaped like a real manager's (as
tests/test_swarm_cluster.py measured them). No engine, no swarm."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import docker.errors
import pytest

from jupyter_mlcontainer.core import backend as seam
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import Unschedulable, Unsupported
from jupyter_mlcontainer.core.plan import build_plan, container_files
from jupyter_mlcontainer.docker.backend import DockerBackend
from jupyter_mlcontainer.docker.engine import Engine
from jupyter_mlcontainer.swarm import backend as swarm_backend
from jupyter_mlcontainer.swarm.backend import SwarmBackend

from .test_spec import launch

MANAGER_URL = "tcp://10.214.9.2:2375"
WORKER, WORKER_ADDR, WORKER_ID = "sw-worker", "10.214.9.3", "node-worker"


def node(node_id: str, hostname: str, addr: str, state: str = "ready", **resources: Any) -> dict:
    return {
        "ID": node_id,
        "Description": {
            "Hostname": hostname,
            "Resources": {"MemoryBytes": 8 << 30, "NanoCPUs": 4_000_000_000, **resources},
        },
        "Spec": {"Role": "worker", "Availability": "active", "Labels": {}},
        "Status": {"State": state, "Addr": addr},
    }


class FakeManager:
    """The calls of docker.APIClient that the backend makes, on an in-memory swarm. ``placing``
    decides what the scheduler does with a new task: ``run`` (on the worker) or ``pending``."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.service_records: dict[str, dict[str, Any]] = {}
        self.task_records: list[dict[str, Any]] = []
        self.secret_records: dict[str, dict[str, Any]] = {}
        self.node_records = {
            "node-manager": node("node-manager", "sw-manager", "10.214.9.2"),
            WORKER_ID: node(WORKER_ID, WORKER, WORKER_ADDR),
        }
        self.placing = "run"
        self.out_of_sequence = 0
        self._ids = 0

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:020d}"

    # --- the engine -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        self.calls.append("info")
        return {"Swarm": {"ControlAvailable": True, "LocalNodeState": "active"}}

    def version(self) -> dict[str, Any]:
        self.calls.append("version")
        return {"Version": "26.1.5", "ApiVersion": "1.45"}

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self.calls.append(f"inspect_image {ref}")
        return {"Id": "sha256:1d", "RepoDigests": []}  # loaded by hand on every node

    # --- nodes ------------------------------------------------------------------------------

    def nodes(self, filters: Any = None) -> list[dict[str, Any]]:
        self.calls.append("nodes")
        return list(self.node_records.values())

    def inspect_node(self, node_id: str) -> dict[str, Any]:
        self.calls.append("inspect_node")
        if node_id not in self.node_records:
            raise docker.errors.NotFound(f"node {node_id} not found")
        return self.node_records[node_id]

    # --- services ---------------------------------------------------------------------------

    def create_service(self, task_template: dict, name: str, labels: dict, mode: dict, **kw: Any):
        self.calls.append("create_service")
        service_id = self._id("svc")
        spec = {"Name": name, "Labels": labels, "TaskTemplate": task_template, "Mode": mode}
        if kw.get("endpoint_spec"):
            spec["EndpointSpec"] = kw["endpoint_spec"]
        self.service_records[service_id] = {
            "ID": service_id,
            "Version": {"Index": 1},
            "CreatedAt": "2026-12-03T05:00:00.000000000Z",
            "Spec": spec,
        }
        return {"ID": service_id}

    def inspect_service(self, service_id: str) -> dict[str, Any]:
        self.calls.append("inspect_service")
        if service_id not in self.service_records:
            raise docker.errors.NotFound(f"service {service_id} not found")
        return self.service_records[service_id]

    def update_service(self, service_id: str, version: int, **changes: Any) -> None:
        self.calls.append("update_service")
        service = self.service_records[service_id]
        if self.out_of_sequence:  # what a manager answered in CI, once in a while
            self.out_of_sequence -= 1
            service["Version"]["Index"] += 1
            raise docker.errors.APIError("rpc error: code = Unknown desc = update out of sequence")
        assert version == service["Version"]["Index"], "updated at a stale version"
        assert changes.pop("fetch_current_spec") is True
        if "task_template" in changes:
            service["Spec"]["TaskTemplate"] = changes["task_template"]
        if "mode" in changes:
            service["Spec"]["Mode"] = changes["mode"]
            if changes["mode"]["Replicated"]["Replicas"] == 1:
                self._schedule(service)
        service["Version"]["Index"] += 1

    def _schedule(self, service: dict[str, Any]) -> None:
        status: dict[str, Any]
        task: dict[str, Any] = {
            "ID": self._id("task"),
            "ServiceID": service["ID"],
            "CreatedAt": "2026-12-03T05:00:01.000000000Z",
            "DesiredState": "running",
            "Spec": service["Spec"]["TaskTemplate"],
        }
        if self.placing == "run":
            task["NodeID"] = WORKER_ID
            status = {
                "State": "running",
                "Message": "started",
                "Timestamp": "2026-12-03T05:00:02.000000000Z",
                "ContainerStatus": {"ContainerID": "c" * 64, "PID": 42, "ExitCode": 0},
            }
        else:
            status = {
                "State": "pending",
                "Message": "pending task scheduling",
                "Err": "no suitable node (insufficient resources on 2 nodes)",
                "Timestamp": "2026-12-03T05:00:02.000000000Z",
            }
        task["Status"] = status
        self.task_records.append(task)

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append("tasks")
        if "service" not in filters:  # by desired state only
            return [t for t in self.task_records if t["DesiredState"] == filters["desired-state"]]
        wanted = filters["service"]
        wanted = set(wanted if isinstance(wanted, list) else [wanted])
        return [t for t in self.task_records if t["ServiceID"] in wanted]

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append("services")
        wanted = [label.split("=", 1) for label in filters["label"]]
        return [
            s
            for s in self.service_records.values()
            if all(s["Spec"]["Labels"].get(k) == v for k, v in wanted)
        ]

    def remove_service(self, service_id: str) -> None:
        self.calls.append("remove_service")
        if service_id not in self.service_records:
            raise docker.errors.NotFound(f"service {service_id} not found")
        del self.service_records[service_id]
        self.task_records = [t for t in self.task_records if t["ServiceID"] != service_id]

    def service_logs(self, service_id: str, **kw: Any) -> list[bytes]:
        self.calls.append("service_logs")
        if service_id not in self.service_records:
            raise docker.errors.NotFound(f"service {service_id} not found")
        return [b"line 1\n", b"line 2\n"]

    # --- secrets ----------------------------------------------------------------------------

    def create_secret(self, name: str, data: bytes, labels: dict[str, str]) -> dict[str, str]:
        self.calls.append("create_secret")
        secret_id = self._id("sec")
        self.secret_records[secret_id] = {"ID": secret_id, "Spec": {"Name": name, "Labels": labels}}
        self.secret_data = data
        return {"ID": secret_id}

    def secrets(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.calls.append("secrets")
        key, _, value = filters["label"].partition("=")
        return [s for s in self.secret_records.values() if s["Spec"]["Labels"].get(key) == value]

    def remove_secret(self, secret_id: str) -> None:
        self.calls.append("remove_secret")
        if secret_id not in self.secret_records:
            raise docker.errors.NotFound(f"secret {secret_id} not found")
        del self.secret_records[secret_id]


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> FakeManager:
    monkeypatch.setattr(swarm_backend.leases, "hold", lambda: "instance")
    monkeypatch.setattr(swarm_backend, "PENDING_PATIENCE", 0.0)
    monkeypatch.setattr(swarm_backend, "POLL_INTERVAL", 0.01)
    return FakeManager()


@pytest.fixture
def backend(manager: FakeManager) -> SwarmBackend:
    engine = Engine(MANAGER_URL)  # not shared: Engine.for_url would keep it for the session
    engine._client = manager  # type: ignore[assignment]
    return SwarmBackend(engine)


def a_plan(**kw: Any) -> Any:
    return build_plan(launch(mem_limit="64m", reserve_memory="64m", publish_ip="0.0.0.0", **kw))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_kernel_is_created_given_its_files_started_read_and_removed(backend, manager):
    plan = a_plan()
    service_id = run(backend.create(plan))
    created = manager.service_records[service_id]["Spec"]
    assert created["Mode"] == {"Replicated": {"Replicas": 0}}  # no task before its files
    assert created["Name"] == plan.name
    assert created["Labels"][labels.KERNEL_ID] == "k1"
    assert created["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert run(backend.inspect(service_id)).status == "created"

    tar = container_files({"key": "secret"}, 1000, 1001)
    run(backend.put_files(service_id, "/tmp", tar))
    assert manager.task_records == []  # attached while the service has no task
    (attached,) = manager.service_records[service_id]["Spec"]["TaskTemplate"]["ContainerSpec"][
        "Secrets"
    ]
    assert attached["File"] == {
        "Name": "/tmp/mlcontainer/connection.json",
        "UID": "1000",
        "GID": "1001",
        "Mode": 0o400,
    }
    (secret,) = manager.secret_records.values()
    assert secret["Spec"]["Labels"][labels.SERVICE] == service_id
    assert secret["Spec"]["Labels"][labels.MANAGED] == "true"
    assert secret["Spec"]["Labels"][labels.KERNEL_ID] == "k1"
    assert b'"key": "secret"' in manager.secret_data

    run(backend.start(service_id))
    assert backend.kernel_host(service_id) == WORKER_ADDR  # the node its ports are on
    assert backend.kernel_host() == "10.214.9.2"  # before a start: the manager's host
    state = run(backend.inspect(service_id))
    assert (state.id, state.name, state.status, state.running) == (
        service_id,
        plan.name,
        "running",
        True,
    )
    assert state.node == WORKER
    assert run(backend.logs(service_id)) == "line 1\nline 2\n"

    image = manager.tasks(filters={"service": service_id})[0]["Spec"]["ContainerSpec"]["Image"]
    assert image == "sha256:1d"  # never pulled by a tag
    run(backend.remove(service_id))
    assert manager.service_records == {} and manager.secret_records == {}
    run(backend.remove(service_id))  # twice is fine
    assert run(backend.inspect(service_id)) is None
    assert run(backend.logs(service_id)) == ""
    verbs = [c for c in manager.calls if c not in ("info", "version", "tasks", "inspect_node")]
    assert verbs[: verbs.index("remove_service")] == [
        "inspect_image img:1",  # the manager's record: the nodes run it by id
        "create_service",
        "inspect_service",  # inspect before the start
        "inspect_service",  # put_files: the service as it is
        "create_secret",
        "update_service",  # the secret attached
        "inspect_service",  # start: scale to one replica
        "update_service",
        "inspect_service",  # inspect
        "service_logs",
    ]


def test_a_task_no_node_can_take_is_a_typed_error_that_says_what_to_do(backend, manager):
    manager.placing = "pending"
    service_id = run(backend.create(a_plan()))
    with pytest.raises(Unschedulable, match="insufficient resources") as raised:
        run(backend.start(service_id))
    assert "fewer GPUs" in str(raised.value) and "Free what other kernels hold" in str(raised.value)


def test_a_kernel_whose_node_left_the_swarm_is_dead_with_that_reason(backend, manager):
    service_id = run(backend.create(a_plan()))
    run(backend.start(service_id))
    manager.node_records[WORKER_ID]["Status"]["State"] = "down"
    manager.task_records[0]["DesiredState"] = "shutdown"  # its Status.State stays "running"
    state = run(backend.inspect(service_id))
    assert (state.status, state.running, state.error) == (
        "dead",
        False,
        f"node {WORKER} left the swarm",
    )
    assert run(backend.stopped_at(state)) == ""  # the error says it
    from jupyter_mlcontainer.core.diagnostics import ContainerExit

    assert ContainerExit.from_state(state).reason == f"failed: node {WORKER} left the swarm"
    assert backend.exits().exit_code(service_id) == 0
    del manager.node_records[WORKER_ID]  # removed from the swarm by an admin
    assert run(backend.inspect(service_id)).error == f"node {WORKER_ID} left the swarm"


def test_our_services_are_listed_as_their_tasks_say(backend, manager):
    first = run(backend.create(a_plan()))
    run(backend.start(first))
    second = run(backend.create(a_plan(kernel_id="k2")))
    found = run(backend.containers(labels.managed_filter()))
    by_id = {state.id: state for state in found}
    assert (by_id[first].status, by_id[first].node) == ("running", WORKER)
    assert by_id[second].status == "created"
    # The kernel list and details (server/handlers.py) name the node only where there is one.
    from jupyter_mlcontainer.server.handlers import placed

    assert placed(by_id[first]) == {"node": WORKER}
    assert placed(by_id[second]) == {}
    assert (
        run(backend.containers(labels.managed_filter(**{labels.KERNEL_ID: "k2"})))[0].id == second
    )


def test_what_a_swarm_cannot_do_is_declared_and_says_what_to_do(backend):
    assert backend.capabilities.signals is False
    assert backend.capabilities.scheduled is True
    assert backend.remote is True
    with pytest.raises(Unsupported, match="supervisor"):
        run(backend.signal("svc", "SIGINT"))
    with pytest.raises(Unsupported, match="persistent_home to false"):
        run(backend.ensure_volume("mlc-home-1000-img", {}))
    with pytest.raises(Unsupported, match="ipykernel"):
        run(backend.ensure_runtime("img:1", None, [], None, logging.getLogger()))  # type: ignore[arg-type]
    assert run(backend.stats("svc")) is None
    assert run(backend.settle_networks(repair=True)) == []


def test_facts_of_the_nodes(backend, manager):
    manager.node_records["node-manager"]["Description"]["Resources"]["MemoryBytes"] = 16 << 30
    manager.node_records[WORKER_ID]["Status"]["State"] = "down"  # not counted
    assert run(backend.memory_total()) == 16 << 30
    assert not run(backend.gpu_support()).available
    manager.node_records[WORKER_ID]["Status"]["State"] = "ready"
    manager.node_records[WORKER_ID]["Description"]["Resources"]["GenericResources"] = [
        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-aaaa"}}
    ]
    assert run(backend.gpu_support()).available


def test_the_nodes_with_their_free_memory_and_gpus(backend, manager):
    gpu_node = node("node-gpu", "sw-gpu", "10.214.9.4")
    gpu_node["Description"]["Resources"]["GenericResources"] = [
        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-aaaa"}},
        {"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": "GPU-bbbb"}},
    ]
    manager.node_records["node-gpu"] = gpu_node
    manager.node_records["node-manager"]["Spec"]["Role"] = "manager"
    manager.node_records[WORKER_ID]["Spec"]["Availability"] = "drain"
    service_id = run(backend.create(a_plan()))  # 64m, on the worker
    run(backend.start(service_id))
    # A kernel of ours given GPU-bbbb on sw-gpu, a task of someone else's given GPU-aaaa, and
    # an ended task of ours whose reservation no longer counts.
    ours = manager.task_records[0]["Spec"]
    for task_id, spec, gpu, state in (
        ("t-ours", ours, "GPU-bbbb", "running"),
        (
            "t-other",
            {"Resources": {"Reservations": {"MemoryBytes": 1 << 30}}},
            "GPU-aaaa",
            "running",
        ),
        ("t-ended", ours, "GPU-aaaa", "failed"),
    ):
        manager.task_records.append(
            {
                "ID": task_id,
                "ServiceID": "elsewhere",
                "NodeID": "node-gpu",
                "DesiredState": "running",
                "Spec": spec,
                "Status": {"State": state},
                "GenericResources": [{"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpu}}],
            }
        )
    by_name = {n.name: n for n in run(backend.nodes())}
    assert [n.name for n in run(backend.nodes())] == ["sw-manager", "sw-gpu", WORKER]
    gpu = by_name["sw-gpu"]
    assert gpu.gpus == ("GPU-aaaa", "GPU-bbbb")
    assert (gpu.gpus_ours, gpu.gpus_held) == (("GPU-bbbb",), ("GPU-aaaa", "GPU-bbbb"))
    assert gpu.memory_reserved == (1 << 30) + (64 << 20)
    assert gpu.memory_free == (8 << 30) - (1 << 30) - (64 << 20)
    worker = by_name[WORKER]
    assert (worker.memory_reserved, worker.gpus, worker.schedulable) == (64 << 20, (), False)
    assert by_name["sw-manager"].schedulable and by_name["sw-manager"].memory_reserved == 0

    from jupyter_mlcontainer.cli.doctor import node_rows

    rows = {label: (status, detail) for label, status, detail in node_rows(by_name.values())}
    status, detail = rows["node sw-gpu"]
    assert status == "ok"
    assert "GPUs: 2 (GPU-aaaa, GPU-bbbb), 0 free" in detail
    assert "held by our kernels: GPU-bbbb" in detail and "1 held by other tasks" in detail
    assert detail.startswith("worker, 6.94 GiB free of 8 GiB")
    status, detail = rows[f"node {WORKER}"]
    assert status == "drain" and "places no kernel there" in detail and "GPU" not in detail
    manager.node_records["node-manager"]["Status"]["State"] = "down"
    [(_, status, _)] = node_rows([n for n in run(backend.nodes()) if n.name == "sw-manager"])
    assert status == "down"
    # A count of GPUs (NVIDIA-GPU=2) has no ids.
    gpu_node["Description"]["Resources"]["GenericResources"] = [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 2}}
    ]
    assert next(n for n in run(backend.nodes()) if n.name == "sw-gpu").gpus == ("", "")
    assert run(DockerBackend(Engine(MANAGER_URL)).nodes()) == []


def test_a_docker_engine_refuses_a_placement():
    with pytest.raises(Unsupported, match=r"one machine.*node\.hostname==sw-worker"):
        run(
            DockerBackend(Engine(MANAGER_URL)).create(
                a_plan(placement=["node.hostname==sw-worker"])
            )
        )


def test_a_worker_cannot_run_kernels(backend, manager, monkeypatch):
    monkeypatch.setattr(
        manager, "info", lambda: {"Swarm": {"ControlAvailable": False, "LocalNodeState": "active"}}
    )
    with pytest.raises(ConnectionError, match="not a swarm manager"):
        run(backend.create(a_plan()))


def test_the_backend_setting_reaches_connect():
    from jupyter_mlcontainer.kernel.provisioner import MLContainerProvisioner

    swarm = MLContainerProvisioner(image="img:1", backend="swarm", docker_host=MANAGER_URL)
    found = swarm.container_backend
    assert isinstance(found, SwarmBackend)
    assert found == seam.connect(MANAGER_URL, "swarm")
    assert found in seam.known()
    plain = MLContainerProvisioner(image="img:1", docker_host=MANAGER_URL)
    assert plain.backend == "docker"  # existing kernelspecs: unchanged
    assert type(plain.container_backend) is DockerBackend
    assert plain.container_backend != found  # one engine, two views
    with pytest.raises(Exception, match="backend"):
        MLContainerProvisioner(image="img:1", backend="kubernetes")


class _FakeBackend:
    capabilities = seam.Capabilities(signals=False, scheduled=True)

    def __init__(self) -> None:
        self.removed: list[str] = []

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)


def test_without_signals_a_stop_removes_and_an_interrupt_only_warns(monkeypatch, caplog):
    """No supervisor to carry the signal (the kernel was not started supervised)."""
    from jupyter_mlcontainer.kernel.provisioner import MLContainerProvisioner

    fake = _FakeBackend()
    monkeypatch.setattr(MLContainerProvisioner, "container_backend", property(lambda _: fake))
    p = MLContainerProvisioner(image="img:1", backend="swarm")
    p.container.id = "svc1"
    run(p.send_signal(2))  # SIGINT
    assert fake.removed == []
    run(p.send_signal(15))  # SIGTERM
    assert fake.removed == ["svc1"]


def test_a_nodes_address_for_its_ports():
    worker = node(WORKER_ID, WORKER, WORKER_ADDR)
    assert swarm_backend.node_address(worker) == WORKER_ADDR
    manager = node("m", "sw-manager", "0.0.0.0")
    manager["ManagerStatus"] = {"Leader": True, "Addr": "10.214.9.2:2377"}
    assert swarm_backend.node_address(manager) == "10.214.9.2"
    assert swarm_backend.node_address(node("m", "sw-manager", "0.0.0.0")) == ""


def test_gpus_auto_on_a_swarm_with_gpus_runs_on_the_cpu_and_says_to_ask_for_a_count(caplog):
    """`auto` means every GPU of the host; a scheduler takes counts only (Swarm)."""
    from types import SimpleNamespace

    from jupyter_mlcontainer.core import gpus
    from jupyter_mlcontainer.kernel.container import KernelContainer
    from jupyter_mlcontainer.kernel.grant import resolve_gpus

    class GPUSwarm:
        capabilities = seam.Capabilities(signals=False, scheduled=True, gpu_requests="generic")
        address = MANAGER_URL

        async def gpu_support(self, max_age: float = 60, try_image: str = "") -> Any:
            return gpus.GPUSupport(device_requests=True)

        async def gpu_inventory(self, *args: Any, **kw: Any) -> tuple:
            return ()

    def provisioner(asked: str) -> Any:
        return SimpleNamespace(
            gpu_request=gpus.parse_gpus(asked),
            container=KernelContainer(),
            container_backend=GPUSwarm(),
            policy=SimpleNamespace(
                gpu_sharing=1, gpu_inventory_command="nvidia-smi", gpu_devices="gpu"
            ),
            image="img:1",
            kernel_id="k1",
            log=logging.getLogger("test"),
        )

    with caplog.at_level(logging.WARNING):
        assert run(resolve_gpus(provisioner("auto"))).mode == "none"
    assert "takes GPUs by count only" in caplog.text
    assert run(resolve_gpus(provisioner("2"))) == gpus.GPURequest("count", count=2)


def test_a_removal_in_the_background_is_waited_for_by_drain(backend, manager):
    service_id = run(backend.create(a_plan()))
    run(backend.start(service_id))

    async def remove_then_drain() -> None:
        backend.remove_soon(service_id)
        await backend.drain()

    run(remove_then_drain())
    assert manager.service_records == {} and backend.kernel_host(service_id) == "10.214.9.2"
    backend.remove_soon(service_id)  # gone already: fine (logged, never raised)
    run(backend.drain())


def test_what_a_starting_task_says():
    from jupyter_mlcontainer.core.exceptions import EngineError, ImageNotFoundError, PortTaken
    from jupyter_mlcontainer.swarm import services

    def task(state: str, err: str = "", ran: bool = False) -> dict:
        status: dict[str, Any] = {"State": state, "Err": err}
        if ran:
            status["ContainerStatus"] = {"ContainerID": "c1", "ExitCode": 1}
        return {"Status": status}

    assert services.task_outcome(None, 0, 3) == services.WAIT
    assert services.task_outcome(task("preparing"), 0, 3) == services.WAIT
    assert services.task_outcome(task("running"), 0, 3) == services.GO_ON
    assert services.task_outcome(task("failed", "task: non-zero exit (1)", ran=True), 0, 3) == (
        services.GO_ON  # it ran: its exit is read like any other
    )
    no_node = task("pending", "no suitable node (insufficient resources on 3 nodes)")
    assert services.task_outcome(no_node, 1, 3) == services.WAIT  # not yet certain
    with pytest.raises(Unschedulable, match=r"3 nodes\)\)\. Free"):
        services.task_outcome(no_node, 3, 3)
    no_node["Spec"] = {
        "Resources": {
            "Reservations": {
                "MemoryBytes": 512 << 20,
                "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}],
            }
        }
    }
    with pytest.raises(Unschedulable, match=r"it asks for 1 GPU \(NVIDIA-GPU\) and 512 MiB"):
        services.task_outcome(no_node, 3, 3)
    with pytest.raises(PortTaken):
        services.task_outcome(task("pending", "host-mode port already in use on 3 nodes"), 3, 3)
    with pytest.raises(ImageNotFoundError, match="every node"):
        services.task_outcome(task("rejected", "No such image: img:1"), 0, 3)
    with pytest.raises(EngineError, match="rejected"):
        services.task_outcome(task("rejected", "invalid mount config"), 0, 3)


def test_doctor_lists_the_nodes_of_each_swarm_a_kernelspec_runs_on(monkeypatch):
    from types import SimpleNamespace

    from jupyter_mlcontainer.cli import doctor
    from jupyter_mlcontainer.core.exceptions import EngineUnavailableError

    specs = [
        SimpleNamespace(is_container=True, backend="swarm", docker_host=MANAGER_URL),
        SimpleNamespace(is_container=True, backend="swarm", docker_host=MANAGER_URL),
        SimpleNamespace(is_container=True, backend="swarm", docker_host="tcp://gone:2375"),
        SimpleNamespace(is_container=True, backend="docker", docker_host=""),
    ]
    monkeypatch.setattr(doctor, "installed_specs", lambda: specs)
    asked = []

    class Swarm:
        def __init__(self, address: str) -> None:
            self.address = address

        async def nodes(self) -> list[seam.NodeInfo]:
            if self.address == "tcp://gone:2375":
                raise EngineUnavailableError("Cannot reach the manager at tcp://gone:2375")
            return [
                seam.NodeInfo("sw-manager", role="manager", state="ready", memory_total=8 << 30),
                seam.NodeInfo("sw-worker", role="worker", state="down", memory_total=8 << 30),
            ]

    def connect(address: str | None = None, kind: str = "docker") -> Swarm:
        asked.append((address, kind))
        return Swarm(str(address))

    monkeypatch.setattr(doctor.backends, "connect", connect)
    rows: list[tuple[str, str, str]] = []
    problems = run(doctor.DoctorApp()._swarms(lambda *row: rows.append(row)))
    assert sorted(asked) == [(MANAGER_URL, "swarm"), ("tcp://gone:2375", "swarm")]
    assert problems == 1  # the swarm that cannot be reached
    by_label = {label: (status, detail) for label, status, detail in rows}
    assert by_label[f"swarm {MANAGER_URL}"] == ("ok", "2 node(s), 1 taking kernels")
    assert by_label["node sw-manager"] == ("ok", "manager, 8 GiB free of 8 GiB")
    assert by_label["node sw-worker"][0] == "down"
    assert by_label["swarm tcp://gone:2375"][0] == "FAIL"


def test_an_update_out_of_sequence_is_tried_again_at_the_current_version(backend, manager):
    from jupyter_mlcontainer.core.exceptions import EngineError

    service_id = run(backend.create(a_plan()))
    manager.out_of_sequence = 2
    run(backend.start(service_id))
    assert manager.service_records[service_id]["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    assert manager.calls.count("update_service") == 3
    manager.out_of_sequence = 99  # it keeps refusing: the error is the manager's
    with pytest.raises(EngineError, match="out of sequence"):
        run(backend.start(service_id))

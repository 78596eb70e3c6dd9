"""The Swarm backend's pure translations: a container plan to a service spec
(swarm/spec.py), a task and its node to the seam's ContainerState (swarm/tasks.py)."""

from __future__ import annotations

import dataclasses

import pytest

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.backend import ContainerState
from jupyter_mlcontainer.core.exceptions import Unsupported
from jupyter_mlcontainer.core.gpus import GPURequest
from jupyter_mlcontainer.core.plan import build_plan
from jupyter_mlcontainer.swarm.spec import GPU_KIND, gpu_count, service_spec
from jupyter_mlcontainer.swarm.tasks import node_left, seam_status, task_state

from .test_spec import launch

ANYWHERE = "0.0.0.0"


def spec_of(**kw):
    kw.setdefault("publish_ip", ANYWHERE)
    return service_spec(build_plan(launch(**kw)))


# --- service_spec ---------------------------------------------------------------------------


def test_one_task_never_restarted():
    spec = spec_of()
    assert spec["Name"] == "mlc-k1"
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["TaskTemplate"]["RestartPolicy"] == {"Condition": "none", "MaxAttempts": 0}


def test_container_spec_carries_command_env_user_dir_labels_mounts():
    plan = build_plan(launch(publish_ip=ANYWHERE))
    spec = service_spec(plan)
    container = spec["TaskTemplate"]["ContainerSpec"]
    # The plan's empty entrypoint: the whole command replaces the image's entrypoint.
    assert container["Command"] == plan.create_args["command"]
    assert "Args" not in container
    assert container["Image"] == "img:1"
    assert container["User"] == "1000:1000"
    assert container["Dir"] == "/home/alice/work"
    env = dict(e.split("=", 1) for e in container["Env"])
    assert env == plan.create_args["environment"]
    assert spec["Labels"] == container["Labels"] == plan.create_args["labels"]
    assert container["Mounts"] == [dict(m) for m in plan.host_config["mounts"]]
    assert container["Mounts"][0]["Type"] == "bind"
    assert container["Init"] is True
    assert container["CapabilityDrop"] == ["ALL"]


def test_the_image_entrypoint_kept_when_asked():
    plan = build_plan(launch(publish_ip=ANYWHERE, use_image_entrypoint=True))
    container = service_spec(plan)["TaskTemplate"]["ContainerSpec"]
    assert "Command" not in container
    assert container["Args"] == plan.create_args["command"]


def test_no_new_privileges_only_where_the_manager_knows_it():
    old = spec_of()["TaskTemplate"]["ContainerSpec"]
    assert "Privileges" not in old  # API 1.41: cap_drop ALL still leaves setuid nothing
    plan = build_plan(launch(publish_ip=ANYWHERE))
    new = service_spec(plan, api_version="1.46")["TaskTemplate"]["ContainerSpec"]
    assert new["Privileges"] == {"NoNewPrivileges": True}


def test_the_kernelspecs_memory_is_reserved_and_cpus_pids_are_limits():
    resources = spec_of(mem_limit="2g", reserve_memory="2g", cpus=1.5, pids_limit=512)[
        "TaskTemplate"
    ]["Resources"]
    assert resources["Limits"] == {"MemoryBytes": 2 << 30, "NanoCPUs": 1_500_000_000, "Pids": 512}
    assert resources["Reservations"] == {"MemoryBytes": 2 << 30}


def test_the_policys_default_memory_is_a_limit_not_a_reservation():
    # 90 % of a node as every kernel's reservation would fit one kernel per node.
    resources = spec_of(mem_limit="20g")["TaskTemplate"]["Resources"]
    assert resources == {"Limits": {"MemoryBytes": 20 << 30}}


def test_no_resources_when_none_are_set():
    assert spec_of()["TaskTemplate"]["Resources"] == {}


def test_shm_size_is_a_tmpfs_mount():
    mounts = spec_of(shm_size="1g")["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mounts[-1] == {
        "Target": "/dev/shm",
        "Type": "tmpfs",
        "TmpfsOptions": {"SizeBytes": 1 << 30},
    }


def test_gpus_are_a_count_of_generic_resources():
    spec = spec_of(gpus=GPURequest("count", count=2))
    reservations = spec["TaskTemplate"]["Resources"]["Reservations"]
    assert reservations["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": GPU_KIND, "Value": 2}}
    ]
    env = spec["TaskTemplate"]["ContainerSpec"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=void" not in env


@pytest.mark.parametrize(
    ("gpus", "words"),
    [
        (GPURequest("all"), "gpus: all"),
        (GPURequest("ids", ids=("GPU-aaaa",)), "specific GPUs (GPU-aaaa)"),
    ],
)
def test_gpus_a_count_cannot_say_are_refused(gpus, words):
    with pytest.raises(Unsupported, match=words.replace("(", r"\(").replace(")", r"\)")):
        spec_of(gpus=gpus)


def test_cdi_requests_are_refused():
    with pytest.raises(Unsupported, match="specific GPUs"):
        gpu_count([{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=0"]}])


def test_ports_published_in_host_mode():
    ports = spec_of()["EndpointSpec"]["Ports"]
    assert [p["TargetPort"] for p in ports] == [50001, 50002, 50003, 50004, 50005]
    assert all(p["PublishedPort"] == p["TargetPort"] for p in ports)
    assert {(p["Protocol"], p["PublishMode"]) for p in ports} == {("tcp", "host")}


def test_ports_on_one_address_only_are_refused():
    with pytest.raises(Unsupported, match=r"127\.0\.0\.1 only"):
        spec_of(publish_ip="127.0.0.1")


def test_networks_and_placement_from_settings():
    plan = build_plan(launch(publish_ip=ANYWHERE))
    spec = service_spec(plan, constraints=["node.labels.gpu==true"], network="mlc-kernels")
    assert spec["TaskTemplate"]["Placement"] == {"Constraints": ["node.labels.gpu==true"]}
    assert spec["TaskTemplate"]["Networks"] == [{"Target": "mlc-kernels"}]
    bare = spec_of()["TaskTemplate"]
    assert "Placement" not in bare
    assert "Networks" not in bare  # published on its node, no swarm network
    host = spec_of(network="host")
    assert host["TaskTemplate"]["Networks"] == [{"Target": "host"}]
    assert "EndpointSpec" not in host


def test_the_placement_setting_reaches_the_task_and_is_checked():
    from traitlets import TraitError

    from jupyter_mlcontainer.kernel.settings import ContainerKernelSettings

    plan = build_plan(launch(publish_ip=ANYWHERE, placement=[" node.hostname==sw-worker "]))
    assert plan.placement == ("node.hostname==sw-worker",)
    spec = service_spec(plan, constraints=["node.labels.gpu==true"])
    assert spec["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.labels.gpu==true", "node.hostname==sw-worker"]
    }
    settings = ContainerKernelSettings(placement=["node.role != manager", "node.labels.a==b"])
    assert settings.launch_settings()["placement"] == ["node.role != manager", "node.labels.a==b"]
    for bad in ("sw-worker", "node.hostname=sw-worker", "==x", "node.hostname=="):
        with pytest.raises(TraitError, match="placement constraint"):
            ContainerKernelSettings(placement=[bad])


def test_a_fixed_address_is_refused():
    with pytest.raises(Unsupported, match="fixed address"):
        spec_of(address="10.0.0.9")


def test_a_user_namespace_is_refused():
    with pytest.raises(Unsupported, match="UsernsMode"):
        spec_of(userns="keep-id")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("privileged", True, "privileged"),
        ("devices", ["/dev/fuse:/dev/fuse:rwm"], "devices"),
        ("security_opt", ["seccomp=unconfined"], "seccomp=unconfined"),
    ],
)
def test_host_config_a_service_cannot_express_is_refused(key, value, words):
    plan = build_plan(launch(publish_ip=ANYWHERE))
    plan = dataclasses.replace(plan, host_config={**plan.host_config, key: value})
    with pytest.raises(Unsupported, match=words) as refused:
        service_spec(plan)
    assert "Docker Swarm" in str(refused.value)


# --- task_state -----------------------------------------------------------------------------


def task(state="running", desired="running", node_id="n1", **status):
    return {
        "ID": "t1",
        "ServiceID": "s1",
        "NodeID": node_id,
        "CreatedAt": "2026-12-02T23:29:03.109125012Z",
        "Spec": {
            "ContainerSpec": {"Image": "img:1@sha256:abc", "Labels": {"a": "b"}},
            "Resources": {"Limits": {"MemoryBytes": 1024}},
        },
        "Status": {
            "State": state,
            "Message": status.pop("Message", state),
            "Timestamp": "2026-12-02T23:29:05Z",
            **status,
        },
        "DesiredState": desired,
    }


def node(state="ready", hostname="gpu-2"):
    return {"ID": "n1", "Description": {"Hostname": hostname}, "Status": {"State": state}}


SERVICE = {"ID": "s1", "Spec": {"Name": "mlc-k1", "Labels": {"mlc": "1"}}}


def test_a_running_task():
    seen = task_state(task(), node(), SERVICE)
    assert isinstance(seen, ContainerState)
    assert (seen.id, seen.name, seen.status, seen.running) == ("s1", "mlc-k1", "running", True)
    assert (seen.node, seen.error, seen.exit_code) == ("gpu-2", "", 0)
    assert seen.image == "img:1@sha256:abc"
    assert seen.image_id == "sha256:abc"
    assert seen.labels == {"mlc": "1"}
    assert seen.memory_limit == 1024
    assert seen.started_at == "2026-12-02T23:29:05Z"
    assert seen.finished_at == ""
    assert seen.description == "running on gpu-2"


def test_a_task_whose_node_went_down_died_with_it():
    """As measured (tests/test_swarm_cluster.py): the task still says running."""
    seen = task_state(task("running", "shutdown"), node("down"), SERVICE)
    assert (seen.status, seen.running) == ("dead", False)
    assert seen.error == "node gpu-2 left the swarm"
    assert seen.finished_at
    assert "left the swarm" in seen.description


def test_a_task_whose_node_the_manager_forgot():
    seen = task_state(task("running"), None, SERVICE)
    assert seen.error == "node n1 left the swarm"
    assert seen.status == "dead"


def test_a_task_that_ended_before_its_node_went_down_keeps_its_own_reason():
    ended = task(
        "failed", "shutdown", Err="task: non-zero exit (3)", ContainerStatus={"ExitCode": 3}
    )
    seen = task_state(ended, node("down"), SERVICE)
    assert (seen.status, seen.exit_code) == ("exited", 3)
    assert seen.error == "task: non-zero exit (3)"
    assert not node_left(ended, node("down"))


def test_a_pending_task_has_no_node():
    waiting = task(
        "pending", node_id="", Err="no suitable node (insufficient resources on 3 nodes)"
    )
    seen = task_state(waiting, None, SERVICE)
    assert (seen.status, seen.running, seen.node) == ("created", False, "")
    assert "insufficient resources" in seen.error
    assert not node_left(waiting, None)


def test_assigned_gpus_are_device_requests():
    given = task()
    given["GenericResources"] = [
        {"NamedResourceSpec": {"Kind": GPU_KIND, "Value": "GPU-aaaa"}},
        {"NamedResourceSpec": {"Kind": "OTHER", "Value": "x"}},
    ]
    seen = task_state(given, node(), SERVICE)
    assert seen.device_requests == [
        {"Driver": "nvidia", "DeviceIDs": ["GPU-aaaa"], "Capabilities": [["gpu"]]}
    ]


@pytest.mark.parametrize(
    ("state", "seam"),
    [
        ("pending", "created"),
        ("preparing", "created"),
        ("running", "running"),
        ("complete", "exited"),
        ("failed", "exited"),
        ("shutdown", "exited"),
        ("rejected", "dead"),
        ("orphaned", "dead"),
    ],
)
def test_task_states_in_the_seams_words(state, seam):
    assert seam_status(state) == seam


def test_container_state_without_a_node_still_builds():
    """Existing callers (the Docker backend) do not pass ``node``."""
    state = ContainerState(id="c", name="n", image="i", image_id="", running=False, status="exited")
    assert state.node == ""


def test_the_nodes_run_the_image_by_digest_or_id_never_by_a_tag():
    from jupyter_mlcontainer.swarm.spec import node_image

    record = {
        "Id": "sha256:1d",
        "RepoDigests": ["other/repo@sha256:aa", "registry.example.com/team/torch@sha256:bb"],
    }
    tag = "registry.example.com/team/torch:2.6"
    assert node_image(tag, record) == "registry.example.com/team/torch@sha256:bb"
    assert node_image("local/built:1", {"Id": "sha256:1d", "RepoDigests": []}) == "sha256:1d"
    assert node_image("team/torch@sha256:cc", record) == "team/torch@sha256:cc"  # pinned
    assert node_image(tag, None) == tag  # the manager lacks it: the nodes pull the tag
    plan = build_plan(launch(publish_ip=ANYWHERE))
    spec = service_spec(plan, image="sha256:1d")
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "sha256:1d"
    assert spec["Labels"][labels.IMAGE] == plan.create_args["image"]  # for the details
    task = {"ServiceID": "s", "Status": {"State": "running"}, "Spec": spec["TaskTemplate"]}
    state = task_state(task, None, {"Spec": spec})
    assert (state.image, state.image_id) == (plan.create_args["image"], "sha256:1d")


def test_environment_and_mounts_are_literal_text_not_swarm_templates():
    from jupyter_mlcontainer.swarm.spec import literal

    # A CurveZMQ key is Z85, which has braces: "{{" would start a Go template action.
    assert literal('{"curve_publickey": "a{{b}}c{{{d"}') == (
        '{"curve_publickey": "a{{"{{"}}b}}c{{"{{"}}{d"}'
    )
    assert literal("plain") == "plain"
    plan = build_plan(launch(publish_ip=ANYWHERE, env={"KEY": "x{{.Node.ID}}"}))
    env = service_spec(plan)["TaskTemplate"]["ContainerSpec"]["Env"]
    assert 'KEY=x{{"{{"}}.Node.ID}}' in env

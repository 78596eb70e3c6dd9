"""Unit tests of the pure container-spec building (no engine)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from jupyter_mlcontainer.agent.protocol import CONTAINER_CONNECTION_FILE, CONTAINER_HOME
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.gpus import GPURequest, GPUSupport
from jupyter_mlcontainer.core.plan import (
    KernelLaunch,
    build_plan,
    container_command,
    home_volume_name,
    parse_mount,
    select_env,
    translate_path,
)

CONN = {
    "transport": "tcp",
    "ip": "127.0.0.1",
    "shell_port": 50001,
    "iopub_port": 50002,
    "stdin_port": 50003,
    "control_port": 50004,
    "hb_port": 50005,
    "key": b"secret-key",
    "signature_scheme": "hmac-sha256",
}
ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def launch(**kw):
    base = dict(
        kernel_id="k1",
        kernel_name="spec",
        image="img:1",
        argv=ARGV,
        connection_info=CONN,
        cwd="/home/alice/work",
        env={"LANG": "C.UTF-8"},
        uid=1000,
        gid=1000,
        host_python="/srv/venv/bin/python",
    )
    base.update(kw)
    return KernelLaunch(**base)


def files(plan):
    with tarfile.open(fileobj=io.BytesIO(plan.archive)) as tar:
        return {
            m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()
        }


def test_command_uses_the_images_python_and_the_containers_connection_file():
    assert container_command(ARGV, "python3", "/srv/venv/bin/python") == [
        "python3",
        "-m",
        "ipykernel_launcher",
        "-f",
        CONTAINER_CONNECTION_FILE,
    ]
    host = ["/srv/venv/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert (
        container_command(host, "/opt/conda/bin/python", "/srv/venv/bin/python")[0]
        == "/opt/conda/bin/python"
    )
    assert container_command(["/usr/bin/R", "{connection_file}"], "python3")[0] == "/usr/bin/R"
    with pytest.raises(ValueError, match="argv is empty"):
        container_command([], "python3")


def test_bridge_publishes_every_port_on_loopback_only():
    plan = build_plan(launch())
    ports = [50001, 50002, 50003, 50004, 50005]
    assert sorted(plan.create_args["ports"]) == ports
    assert plan.host_config["port_bindings"] == {p: ("127.0.0.1", p) for p in ports}
    assert plan.host_config["network_mode"] == "mlc-kernels"  # the isolated kernels' network
    assert build_plan(launch(bridge_network="")).host_config["network_mode"] == "bridge"
    conn = json.loads(files(plan)["mlcontainer/connection.json"][1])
    assert conn["ip"] == "0.0.0.0"
    assert conn["key"] == "secret-key"
    assert CONN["ip"] == "127.0.0.1"  # the host's info is not modified


@pytest.mark.parametrize("network", ["host", "none"])
def test_host_and_none_publish_nothing_and_keep_the_address(network):
    plan = build_plan(launch(network=network))
    assert "port_bindings" not in plan.host_config
    assert "ports" not in plan.create_args
    assert plan.host_config["network_mode"] == network
    conn = json.loads(files(plan)["mlcontainer/connection.json"][1])
    assert conn["ip"] == "127.0.0.1"


def test_unknown_network_is_refused():
    with pytest.raises(ValueError, match="Unknown network 'overlay'"):
        build_plan(launch(network="overlay"))


def test_container_files_are_private_to_the_user():
    found = files(build_plan(launch(uid=1234, gid=99)))
    for name, mode in (
        ("mlcontainer", 0o700),
        ("mlcontainer/home", 0o700),
        ("mlcontainer/connection.json", 0o600),
    ):
        member = found[name][0]
        assert (member.uid, member.gid, member.mode) == (1234, 99, mode)
    plan = build_plan(launch(uid=1234, gid=99))
    assert plan.create_args["user"] == "1234:99"
    assert plan.archive_path == "/tmp"


def test_notebook_directory_is_mounted_at_the_same_path_and_is_the_workdir():
    plan = build_plan(launch())
    (mount,) = plan.host_config["mounts"]
    assert (mount["Source"], mount["Target"], mount["Type"]) == ("/home/alice/work",) * 2 + (
        "bind",
    )
    assert plan.create_args["working_dir"] == "/home/alice/work"


def test_path_map_translates_mount_sources_for_remote_or_containerised_servers():
    plan = build_plan(launch(path_map={"/home": "/srv/homes", "/home/alice": "/data/alice"}))
    (mount,) = plan.host_config["mounts"]
    assert mount["Source"] == "/data/alice/work"  # longest prefix wins
    assert mount["Target"] == "/home/alice/work"
    assert translate_path("/home/alicex", {"/home/alice": "/d"}) == "/home/alicex"
    assert translate_path("/home/alice", {"/home/alice/": "/d"}) == "/d"


def test_root_directory_is_never_mounted():
    plan = build_plan(launch(cwd="/"))
    assert plan.host_config["mounts"] == []
    assert plan.create_args["working_dir"] == "/tmp/mlcontainer/home"
    assert plan.notes


def test_extra_mounts_and_ipc_directory():
    extra = [
        parse_mount("/data:/data:ro"),
        parse_mount("cache:/root/.cache"),
        parse_mount("/home/alice/work:/x"),
    ]
    plan = build_plan(launch(network="none", ipc_dir="/tmp/mlc-abc", mounts=extra))
    targets = [
        (m["Target"], m["Source"], m["Type"], m["ReadOnly"]) for m in plan.host_config["mounts"]
    ]
    assert targets == [
        ("/home/alice/work", "/home/alice/work", "bind", False),
        ("/tmp/mlc-abc", "/tmp/mlc-abc", "bind", False),
        ("/data", "/data", "bind", True),
        ("/root/.cache", "cache", "volume", False),
        ("/x", "/home/alice/work", "bind", False),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/data", "must look like"),
        ("/a:/b:rx", "must be 'ro' or 'rw'"),
        ("/a:relative", "must be an absolute path"),
        ({"source": "/a"}, "needs 'source' and 'target'"),
    ],
)
def test_bad_mounts_are_explained(value, message):
    with pytest.raises(ValueError, match=message):
        parse_mount(value)


def test_environment_is_an_allowlist():
    env = {
        "LANG": "C.UTF-8",
        "JUPYTER_TOKEN": "t",
        "AWS_SECRET_ACCESS_KEY": "s",
        "FROM_SPEC": "1",
        "JPY_PARENT_PID": "7",
    }
    chosen = select_env(env, ["LANG", "TZ"], ["FROM_SPEC"], {"EXTRA": "2"})
    assert chosen == {"LANG": "C.UTF-8", "FROM_SPEC": "1", "EXTRA": "2"}
    plan = build_plan(launch(env={"JPY_PARENT_PID": "4242"}))
    assert plan.create_args["environment"]["JPY_PARENT_PID"] == "1"


def test_cpu_kernels_hide_gpus_and_gpu_kernels_request_them():
    cpu = build_plan(launch())
    assert cpu.create_args["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert cpu.host_config["device_requests"] is None
    gpu = build_plan(launch(gpus=GPURequest("all")))
    assert "NVIDIA_VISIBLE_DEVICES" not in gpu.create_args["environment"]
    assert gpu.host_config["device_requests"][0]["Count"] == -1


def test_resources_and_labels():
    plan = build_plan(
        launch(shm_size="2g", mem_limit="8g", cpus=1.5, pids_limit=512, container_name="mlc-k1-3")
    )
    hc = plan.host_config
    assert (hc["shm_size"], hc["mem_limit"], hc["nano_cpus"], hc["pids_limit"]) == (
        "2g",
        "8g",
        1_500_000_000,
        512,
    )
    assert hc["init"] is True
    assert plan.name == "mlc-k1-3"
    lab = plan.create_args["labels"]
    assert lab[labels.MANAGED] == "true"
    assert lab[labels.KERNEL_ID] == "k1"
    assert lab[labels.KERNEL_NAME] == "spec"
    assert lab[labels.SERVER_INSTANCE] == labels.server_instance_id()
    assert lab[labels.OWNER]
    assert plan.create_args["environment"]["HOME"] == "/tmp/mlcontainer/home"


def test_gpu_support_uses_cdi_names_when_the_engine_lists_them():
    support = GPUSupport.from_info(
        {"DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=0"}]}
    )
    plan = build_plan(launch(gpus=GPURequest("ids", ids=("0",)), gpu_support=support))
    (request,) = plan.host_config["device_requests"]
    assert request["Driver"] == "cdi"
    assert request["DeviceIDs"] == ["nvidia.com/gpu=0"]


def test_the_kernel_knows_what_it_runs_in():
    plan = build_plan(launch(source_image="team/torch:2.6", gpus=GPURequest("count", count=2)))
    env = plan.create_args["environment"]
    assert env["JUPYTER_MLCONTAINER_SOURCE_IMAGE"] == "team/torch:2.6"
    assert env["JUPYTER_MLCONTAINER_IMAGE"] == plan.create_args["image"]
    assert env["JUPYTER_MLCONTAINER_GPUS"] == "2 GPUs"
    assert env["JUPYTER_MLCONTAINER_KERNEL"] == launch().kernel_name
    # Without a recorded source, the configured image stands for it.
    plain = build_plan(launch()).create_args["environment"]
    assert plain["JUPYTER_MLCONTAINER_SOURCE_IMAGE"] == plain["JUPYTER_MLCONTAINER_IMAGE"]


@pytest.mark.parametrize(
    ("image", "volume"),
    [
        ("pytorch/pytorch:2.6-cuda12.4", "mlc-home-1000-pytorch-pytorch"),
        ("pytorch/pytorch@sha256:" + "a" * 64, "mlc-home-1000-pytorch-pytorch"),
        ("registry.example.com:5000/team/torch:v3", "mlc-home-1000-team-torch"),
        ("localhost:5000/torch", "mlc-home-1000-torch"),
        ("python:3.11-slim", "mlc-home-1000-python"),
        ("sha256:" + "b" * 64, "mlc-home-1000-" + "b" * 16),
    ],
)
def test_home_volumes_are_per_user_and_image_family(image, volume):
    assert home_volume_name(1000, image) == volume
    assert home_volume_name(1001, image) != volume


def test_the_home_volume_is_the_kernels_home():
    plan = build_plan(launch(home_volume="mlc-home-1000-python"))
    home = next(m for m in plan.host_config["mounts"] if m["Target"] == CONTAINER_HOME)
    assert (home["Type"], home["Source"], home["ReadOnly"]) == (
        "volume",
        "mlc-home-1000-python",
        False,
    )
    assert plan.create_args["environment"]["HOME"] == CONTAINER_HOME


def test_a_watched_kernel_gets_its_lease_and_publishes_its_port():
    plan = build_plan(launch(lease="tcp:0.0.0.0:50009", lease_timeout=90))
    env = plan.create_args["environment"]
    assert (env["JUPYTER_MLCONTAINER_LEASE"], env["JUPYTER_MLCONTAINER_LEASE_TIMEOUT"]) == (
        "tcp:0.0.0.0:50009",
        "90",
    )
    assert plan.create_args["command"][1] == "-c"  # through the bootstrap with its watchdog
    assert plan.host_config["port_bindings"][50009] == ("127.0.0.1", 50009)
    unwatched = build_plan(launch(lease="tcp:0.0.0.0:50009", lease_timeout=0))
    assert "JUPYTER_MLCONTAINER_LEASE" not in unwatched.create_args["environment"]
    assert 50009 not in unwatched.create_args["ports"]


def test_a_kernel_that_cannot_watch_its_lease_says_so():
    plan = build_plan(
        launch(
            argv=["/opt/julia/bin/julia", "k.jl", "{connection_file}"],
            lease="tcp:0.0.0.0:1",
            lease_timeout=9,
        )
    )
    assert any("cannot watch its lease" in note for note in plan.notes)

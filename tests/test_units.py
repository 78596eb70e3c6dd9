"""Unit tests of the other pure pieces: GPU settings, death reasons, pull progress, traits."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from jupyter_mlcontainer.diagnostics import ContainerExit
from jupyter_mlcontainer.gpus import GPURequest, GPUSupport, device_requests, parse_gpus, resolve
from jupyter_mlcontainer.progress import PullProgress
from jupyter_mlcontainer.provisioner import MLContainerProvisioner


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", GPURequest("auto")),
        ("ALL", GPURequest("all")),
        ("none", GPURequest("none")),
        (0, GPURequest("none")),
        (None, GPURequest("none")),
        (2, GPURequest("count", count=2)),
        ("2", GPURequest("count", count=2)),
        (-1, GPURequest("all")),
        (["0", "1"], GPURequest("ids", ids=("0", "1"))),
        ("0,GPU-abc", GPURequest("ids", ids=("0", "GPU-abc"))),
        ("device=1,2", GPURequest("ids", ids=("1", "2"))),
    ],
)
def test_gpu_settings(value, expected):
    assert parse_gpus(value) == expected


@pytest.mark.parametrize("value", ["lots", ["x"], 1.5, {"a": 1}, []])
def test_bad_gpu_settings(value):
    with pytest.raises(ValueError, match="Invalid gpus setting"):
        parse_gpus(value)


def test_auto_resolves_against_the_engine():
    nvidia = GPUSupport.from_info({"Runtimes": {"runc": {}, "nvidia": {}}})
    bare = GPUSupport.from_info({"Runtimes": {"runc": {}}})
    assert nvidia.available and not bare.available
    assert resolve(GPURequest("auto"), nvidia) == GPURequest("all")
    assert resolve(GPURequest("auto"), bare) == GPURequest("none")
    assert resolve(GPURequest("count", count=1), bare).explicit
    assert device_requests(GPURequest("none"), nvidia) == []
    assert device_requests(GPURequest("count", count=1), nvidia)[0]["Count"] == 1


def _exit(**state):
    data = {
        "Name": "/mlc-k-1",
        "Config": {"Image": "img:1"},
        "State": {"ExitCode": 0, "OOMKilled": False, "Error": "", **state},
        "HostConfig": {"Memory": 256 * 2**20},
    }
    return data


def test_oom_reason_names_the_limit():
    exit_ = ContainerExit.from_inspect(_exit(ExitCode=137, OOMKilled=True))
    assert "out-of-memory" in exit_.reason and "256 MiB" in exit_.reason
    assert "Raise mem_limit" in exit_.message()


def test_reasons_for_signals_and_codes():
    assert "SIGKILL" in ContainerExit.from_inspect(_exit(ExitCode=137)).reason
    assert "SIGSEGV" in ContainerExit.from_inspect(_exit(ExitCode=139)).reason
    assert ContainerExit.from_inspect(_exit(ExitCode=3)).reason == "exited with code 3"
    missing = ContainerExit.from_inspect(
        _exit(ExitCode=1), "/usr/bin/python3: No module named ipykernel_launcher\n"
    )
    text = missing.message()
    assert (
        "has no ipykernel" in text
        and "    /usr/bin/python3: No module named ipykernel_launcher" in text
    )


def test_pull_progress_lines_are_rate_limited_and_summarise():
    now = [0.0]
    progress = PullProgress("img:1", interval=2.0, clock=lambda: now[0])
    assert (
        progress.feed({"status": "Pulling from img", "id": "1"}) is not None
    )  # first line at once
    progress.feed({"status": "Pulling fs layer", "id": "a"})
    progress.feed({"status": "Pulling fs layer", "id": "b"})
    assert (
        progress.feed(
            {
                "status": "Downloading",
                "id": "a",
                "progressDetail": {"current": 5_000_000, "total": 10_000_000},
            }
        )
        is None
    )
    now[0] = 1.0
    assert progress.feed({"status": "Download complete", "id": "b"}) is None
    now[0] = 2.5
    line = progress.feed(
        {
            "status": "Downloading",
            "id": "a",
            "progressDetail": {"current": 10_000_000, "total": 20_000_000},
        }
    )
    assert line == "pulling img:1: 1/2 layers 10 MB of 20 MB downloaded (50%)"
    progress.feed({"status": "Digest: sha256:abc"})
    assert progress.digest == "sha256:abc"
    assert progress.fraction == 0.5


@pytest.mark.parametrize(
    ("trait", "value", "message"),
    [
        ("gpus", "many", "Invalid gpus setting"),
        ("mem_limit", "lots", "Invalid mem_limit"),
        ("shm_size", "x1", "Invalid shm_size"),
        ("cpus", 0.0, "Invalid cpus"),
        ("mounts", ["/a"], "must look like"),
        ("network", "overlay", "network"),
        ("pull_policy", "sometimes", "pull_policy"),
    ],
)
def test_settings_are_validated(trait, value, message):
    with pytest.raises(TraitError, match=message):
        MLContainerProvisioner(**{trait: value})


def test_settings_come_from_config_and_kernelspec():
    from traitlets.config import Config

    config = Config()
    config.MLContainerProvisioner.gpus = "none"
    config.MLContainerProvisioner.mem_limit = "4g"
    provisioner = MLContainerProvisioner(config=config, mem_limit="8g", image="img:1")
    assert provisioner.gpus == "none"  # global config
    assert provisioner.mem_limit == "8g"  # the kernelspec's config wins

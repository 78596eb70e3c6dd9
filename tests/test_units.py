"""Unit tests of the other pure pieces: GPU settings, death reasons, pull progress, traits."""

from __future__ import annotations

import io
import logging
import os
import stat
from typing import Any

import docker.errors
import pytest
import requests
from traitlets import TraitError

from jupyter_mlcontainer.core.diagnostics import ContainerExit
from jupyter_mlcontainer.core.exceptions import KernelStartError, OneLineErrors, one_line_errors
from jupyter_mlcontainer.core.gpus import (
    GPURequest,
    GPUSupport,
    device_requests,
    parse_gpus,
    resolve,
)
from jupyter_mlcontainer.core.progress import PullProgress
from jupyter_mlcontainer.core.reference import check_reference
from jupyter_mlcontainer.docker.backend import state_of
from jupyter_mlcontainer.docker.containers import _gone
from jupyter_mlcontainer.kernel.provisioner import MLContainerProvisioner


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
    return state_of(data)


def test_oom_reason_names_the_limit():
    exit_ = ContainerExit.from_state(_exit(ExitCode=137, OOMKilled=True))
    assert "out-of-memory" in exit_.reason and "256 MiB" in exit_.reason
    assert "Raise mem_limit" in exit_.message()


def test_reasons_for_signals_and_codes():
    assert "SIGKILL" in ContainerExit.from_state(_exit(ExitCode=137)).reason
    assert "SIGSEGV" in ContainerExit.from_state(_exit(ExitCode=139)).reason
    assert ContainerExit.from_state(_exit(ExitCode=3)).reason == "exited with code 3"
    missing = ContainerExit.from_state(
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


def test_probe_names_kernels_for_the_dropdown():
    from jupyter_mlcontainer.core.probe import ImageProbe

    torch = ImageProbe.from_dict(
        {
            "python": "/opt/conda/bin/python",
            "python_version": "3.11.9",
            "torch": "2.5.1+cu124",
            "torch_cuda": "12.4",
        }
    )
    assert torch.display_name() == "PyTorch 2.5 · CUDA 12.4 · Python 3.11"
    assert torch.logo_kind() == "pytorch"
    tf = ImageProbe.from_dict(
        {
            "python": "python3",
            "python_version": "3.11.0",
            "tensorflow": "2.17.0",
            "cuda": "12.3.2",
            "future_key": 1,
        }
    )
    assert tf.display_name() == "TensorFlow 2.17 · CUDA 12.3 · Python 3.11"
    assert tf.to_dict()["future_key"] == 1  # unknown probe fields survive a round trip
    cpu = ImageProbe.from_dict(
        {"python": "python3", "python_version": "3.13.1", "torch": "2.13.0+cpu"}
    )
    assert cpu.display_name() == "PyTorch 2.13 · CPU · Python 3.13"


def test_kernel_names_and_pins():
    from jupyter_mlcontainer.core.kernelspec import is_valid_name, kernel_name_for, pinned_reference

    assert kernel_name_for("registry:5000/team/pytorch-cpu:2.13.0") == "mlc-pytorch-cpu-2.13.0"
    assert kernel_name_for("python:3.11-slim") == "mlc-python-3.11-slim"
    assert kernel_name_for("ubuntu") == "mlc-ubuntu"
    assert kernel_name_for("repo/x@sha256:0123456789abcdef") == "mlc-x-01234567"
    assert kernel_name_for("Team/Name_X:Tag+1") == "mlc-name_x-tag-1"
    assert all(is_valid_name(kernel_name_for(i)) for i in ("a/b:c", "A:B", "x" * 200))
    with pytest.raises(ValueError, match="not an image id"):
        kernel_name_for("sha256:abc")
    inspect = {
        "Id": "sha256:local",
        "RepoDigests": ["other/repo@sha256:o", "reg:5000/team/x@sha256:d"],
    }
    assert pinned_reference("reg:5000/team/x:1", inspect) == ("reg:5000/team/x@sha256:d", True)
    assert pinned_reference("built/here:1", {"Id": "sha256:local", "RepoDigests": []}) == (
        "sha256:local",
        False,
    )


def test_runtime_targets_the_images_python():
    from jupyter_mlcontainer.docker.runtime import RuntimeTarget, pip_command, volume_name

    glibc = RuntimeTarget("3.11", "cpython", "x86_64", "glibc-2.36")
    assert glibc.platforms()[0] == "manylinux_2_36_x86_64"
    assert glibc.platforms()[-1] == "manylinux2014_x86_64"
    musl = RuntimeTarget("3.12", "cpython", "aarch64", "musl-1.2")
    assert musl.platforms() == ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64"]
    # A Python no hash-pinned lock covers: pinned by version.
    other = RuntimeTarget("3.10", "cpython", "x86_64", "glibc-2.36")
    cmd = pip_command(other, ["ipykernel==7.4.0"], "/tmp/rt", "/wheels")
    assert cmd[-1] == "ipykernel==7.4.0"
    assert cmd[cmd.index("--python-version") : cmd.index("--python-version") + 2] == [
        "--python-version",
        "3.10",
    ]
    # The shipped images' Python: every wheel checked against the lock's hashes.
    assert pip_command(glibc, ["ipykernel==7.4.0"], "/tmp/rt", None)[-4:-1] == [
        "--require-hashes",
        "--no-deps",
        "-r",
    ]
    assert "--no-index" in cmd and "/wheels" in cmd and "--only-binary=:all:" in cmd
    assert volume_name(glibc, ["ipykernel==7.4.0"]) != volume_name(glibc, ["ipykernel==7.3.0"])


def test_injected_command_appends_the_runtime():
    from jupyter_mlcontainer.agent import program
    from jupyter_mlcontainer.core.plan import container_command

    BOOTSTRAP = program("bootstrap")

    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    cmd = container_command(argv, "/usr/bin/python3", injected=True)
    conn = "/tmp/mlcontainer/connection.json"
    assert cmd == ["/usr/bin/python3", "-c", BOOTSTRAP, "ipykernel_launcher", "-f", conn]
    assert "sys.path.append" in BOOTSTRAP
    # Watched by its lease: the same bootstrap; neither: the command as the kernelspec says.
    assert container_command(argv, "python3", watched=True)[1:4] == [
        "-c",
        BOOTSTRAP,
        "ipykernel_launcher",
    ]
    assert container_command(argv, "python3") == ["python3", "-m", "ipykernel_launcher", "-f", conn]
    with pytest.raises(ValueError, match="python -m ipykernel_launcher"):
        container_command(["julia", "kernel.jl", "{connection_file}"], "python3", injected=True)


@pytest.mark.parametrize(
    "ref",
    [
        "python:3.11-slim",
        "mlcontainer/python:3.11",
        "localhost:5000/team/torch:2.13",
        "127.0.0.1:5123/ui/python:pull",
        "registry.example.com/ml/pytorch:2.6-cuda12.4",
        "pytorch/pytorch@sha256:" + "a" * 64,
        "sha256:" + "b" * 64,
        "  python:3.11  ",
    ],
)
def test_valid_image_references(ref):
    assert check_reference(ref) == ref.strip()


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("UPPER/Case::bad", "repository names are lowercase"),
        ("Python:3.11", "repository names are lowercase"),
        ("a b", "is not a valid image reference"),
        ("repo:", "is not a valid image reference"),
        ("repo@sha256:xyz", "is not a valid image reference"),
        ("", "No image given"),
    ],
)
def test_malformed_image_references(ref, message):
    with pytest.raises(ValueError, match=r"valid image reference|No image given") as info:
        check_reference(ref)
    assert message in str(info.value)
    if ref:
        assert "e.g. python:3.11-slim" in str(info.value)


def test_a_container_being_removed_counts_as_gone():
    def api_error(status):
        response = requests.Response()
        response.status_code = status
        return docker.errors.APIError("x", response=response, explanation="marked for removal")

    assert _gone(api_error(409))
    assert _gone(docker.errors.NotFound("gone"))
    assert not _gone(api_error(500))


def test_our_errors_log_one_line_unless_debugging():
    logger = logging.getLogger("mlc-test-one-line")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    one_line_errors(logger)
    one_line_errors(logger)  # installed once
    assert sum(isinstance(f, OneLineErrors) for f in logger.filters) == 1
    for level, traceback_shown in ((logging.INFO, False), (logging.DEBUG, True)):
        handler.setLevel(level)
        stream.truncate(0)
        stream.seek(0)
        for error in (KernelStartError("what happened; what to do"), ValueError("other")):
            try:
                raise error
            except Exception as e:
                logger.exception(e)
        text = stream.getvalue()
        assert "what happened; what to do" in text
        assert text.count("Traceback") == (2 if traceback_shown else 1)  # others keep theirs
    logger.removeHandler(handler)


def test_the_plan_takes_every_setting_it_shares_a_name_with():
    from dataclasses import fields

    from jupyter_mlcontainer.core.plan import KernelLaunch
    from jupyter_mlcontainer.kernel.settings import RESOLVED_AT_START, ContainerKernelSettings

    settings = ContainerKernelSettings(image="python:3.11", shm_size="1g", network="host")
    taken = settings.launch_settings()
    shared = {f.name for f in fields(KernelLaunch)} & set(settings.trait_names(config=True))
    assert set(taken) == shared - RESOLVED_AT_START
    assert (taken["image"], taken["shm_size"], taken["network"]) == ("python:3.11", "1g", "host")


@pytest.mark.parametrize(
    ("ipykernel", "curve"), [("7.4.0", True), ("8.0", True), ("6.29.5", False), (None, True)]
)
def test_kernelspecs_ask_for_curvezmq_where_the_kernel_speaks_it(ipykernel, curve):
    from jupyter_mlcontainer.core.kernelspec import KernelspecConfig, kernel_json
    from jupyter_mlcontainer.core.probe import ImageProbe

    probe = ImageProbe.from_dict(
        {"python": "/usr/bin/python3", "python_version": "3.11.2", "ipykernel": ipykernel}
    )
    spec = kernel_json(
        image="x:1", pinned="x@sha256:" + "a" * 64, image_id="sha256:" + "b" * 64,
        probe=probe, display_name="X", settings=KernelspecConfig(),
    )  # fmt: skip
    assert (spec["metadata"].get("supported_encryption") == ["curve"]) is curve


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "manifest for reg:5000/x:1 not found: manifest unknown: manifest unknown",
            "manifest for reg:5000/x:1 not found: manifest unknown",
        ),
        ("manifest unknown: Manifest Unknown.", "manifest unknown."),
        ("a: a: a: b: b", "a: b"),
        ("a: b: a", "a: b: a"),  # only a fragment that repeats the one before it
        ("no colon at all", "no colon at all"),
        ("", ""),
    ],
)
def test_repeated_error_fragments_are_said_once(text, expected):
    from jupyter_mlcontainer.core.exceptions import without_repeats

    assert without_repeats(text) == expected


def test_a_failed_pull_says_the_registrys_words_once_in_plain_text():
    from jupyter_mlcontainer.docker.engine import _explain_api_error
    from jupyter_mlcontainer.docker.images import _pull_failed

    words = "manifest for localhost:5000/no/such:1 not found: manifest unknown: manifest unknown"
    message = _pull_failed("localhost:5000/no/such:1", words)
    assert message.startswith(
        "Could not pull image 'localhost:5000/no/such:1': manifest for localhost:5000/no/such:1 "
        "not found: manifest unknown. Check the image name and tag"
    )
    assert message.count("manifest unknown") == 1
    assert "`" not in message  # read in terminals and dialogs, where Markdown is not rendered
    response = requests.Response()
    response.status_code = 404
    error = docker.errors.ImageNotFound("x", response=response, explanation=words)
    assert str(_explain_api_error(error, "pull image")).count("manifest unknown") == 1


def test_kernel_details_and_notebook_records_name_the_same_digest():
    from jupyter_mlcontainer.core.kernelspec import image_details

    image_id = "sha256:" + "2" * 64
    elsewhere = "localhost:5000/team/python@sha256:" + "d" * 64
    own = "mlcontainer/python@sha256:" + "e" * 64
    # Pinned to a local image id, but the same image is in a registry: the details say so.
    details = image_details(image_id, {"Id": image_id, "RepoDigests": [elsewhere]})
    assert details == {
        "image": image_id,
        "image_id": image_id,
        "digest": elsewhere,
        "repo_digests": [elsewhere],
    }
    # The digest of the kernel's own repository comes first.
    both = {"Id": image_id, "RepoDigests": [elsewhere, own]}
    assert image_details("mlcontainer/python:3.11", both)["digest"] == own
    # Only an image no registry has has no digest.
    assert image_details(image_id, {"Id": image_id, "RepoDigests": []})["digest"] is None
    assert image_details(own, {"Id": image_id})["digest"] == own  # pinned by digest


def test_list_shows_what_a_kernel_was_added_from():
    from jupyter_mlcontainer.core.kernelspec import describe_pin

    image_id = "sha256:27dd" + "0" * 60
    digest = "localhost:5000/team/python@sha256:9f8e" + "1" * 60
    assert (
        describe_pin("mlcontainer/python:3.11", image_id)
        == "mlcontainer/python:3.11 (sha256:27dd00000000…, local build)"
    )
    assert (
        describe_pin("localhost:5000/team/python:3.11", digest)
        == "localhost:5000/team/python:3.11 (sha256:9f8e11111111…)"
    )
    assert describe_pin(digest, digest) == digest  # added by digest: nothing to add
    assert describe_pin("", "python:3.11-slim") == "python:3.11-slim"  # handwritten kernel.json
    assert describe_pin("python:3.11", "team/python:3.11") == "python:3.11 → team/python:3.11"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_notebooks_get_the_mode_of_an_ordinary_file(tmp_path, umask, mode):
    import nbformat

    from jupyter_mlcontainer.cli.run import _write_atomically

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    output = tmp_path / "out" / "run.ipynb"
    previous = os.umask(umask)
    try:
        _write_atomically(nb, output)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(output.stat().st_mode) == mode
    assert nbformat.read(str(output), as_version=4).cells[0].source == "1 + 1"
    # Rewriting a notebook keeps its mode, as writing it in place would.
    output.chmod(0o640)
    _write_atomically(nb, output)
    assert stat.S_IMODE(output.stat().st_mode) == 0o640
    assert [p.name for p in output.parent.iterdir()] == ["run.ipynb"]  # no temporary file left


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            {"status": "error", "reason": "ZeroDivisionError: division by zero", "cell": 3},
            "cell 3 raised ZeroDivisionError: division by zero",
        ),
        (
            {"status": "timeout", "reason": "timed out after 3 s (--timeout)", "cell": 2},
            "cell 2 timed out after 3 s (--timeout)",
        ),
        (
            {"status": "kernel died", "reason": "Kernel container k was killed.", "cell": 4},
            "the kernel died while running cell 4: Kernel container k was killed.",
        ),
        (
            {"status": "kernel did not start", "reason": "Not allowed by the admin policy."},
            "kernel did not start: Not allowed by the admin policy.",
        ),
    ],
)
def test_a_failed_run_is_described_in_one_clean_line(record, line):
    from jupyter_mlcontainer.cli.run import failure

    assert failure(record) == line
    assert "error" not in failure(record).split(":", 1)[0]  # start() says "error:" once


def test_which_kernelspecs_a_warm_pool_fills_and_why_not():
    from types import SimpleNamespace

    from jupyter_mlcontainer.core.backend import Capabilities
    from jupyter_mlcontainer.kernel.pool import not_pooled

    def kernel(network: str = "bridge", remote: bool = False, scheduled: bool = False) -> Any:
        backend = SimpleNamespace(remote=remote, capabilities=Capabilities(scheduled=scheduled))
        return SimpleNamespace(network=network, container_backend=backend)

    assert not_pooled(kernel()) == ""
    assert "ipc sockets" in not_pooled(kernel(network="none"))
    assert "CurveZMQ keys" in not_pooled(kernel(remote=True))
    assert "Docker Swarm" in not_pooled(kernel(remote=True, scheduled=True))

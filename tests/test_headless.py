"""Container kernels run notebooks unattended: nbconvert, jupyter execute, papermill, run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.docker import images

from .conftest import (
    IMAGE,
    TEST_GID,
    TEST_UID,
    TORCH_IMAGE,
    eventually,
    new_containers,
    only_in_registry,
    push,
    running_kernel,
)

pytestmark = pytest.mark.engine

FILES = Path(__file__).parent / "files"
BIN = Path(sys.executable).parent


def tool(*args: str, cwd: Path | None = None, umask: int = -1) -> subprocess.CompletedProcess[str]:
    """Run a Jupyter tool as a user would (papermill runs kernels in its own working dir)."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ),
        cwd=cwd,
        umask=umask,
    )


#: What jupyter_client says when a kernel client is dropped with its channels running.
ZMQ_WARNING = "Could not destroy zmq context"


@pytest.fixture
def workdir(notebook_dir):
    for name in ("pytorch_line.ipynb", "line.csv", "fails.ipynb", "oom.ipynb"):
        shutil.copy(FILES / name, notebook_dir / name)
    return notebook_dir


def outputs(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.extend(str(v) for v in (out.get("data") or {}).values())
            texts.extend(out.get("traceback", []))
    return "\n".join(texts)


def project_containers(api) -> set[str]:
    return {c["Id"] for c in api.containers(all=True, filters=labels.managed_filter())}


def left_since(api, before: set[str]) -> set[str]:
    return {c["Id"] for c in new_containers(api, before)}


def check_pytorch_outputs(text: str, epochs: int) -> None:
    assert f"rows 200 epochs {epochs}" in text  # the relative data file was read
    assert "matmul [[5.0, 14.0], [14.0, 50.0]]" in text
    assert "loss " in text  # the DataLoader with 2 workers ran
    assert "<table><tr><th>w</th>" in text  # rich output


@pytest.mark.parametrize("runner", ["nbconvert", "execute", "papermill", "mlcontainer"])
def test_pytorch_notebook_runs_headless(runner, kernelspec, workdir, docker_api):
    name = kernelspec("torchk", image=TORCH_IMAGE)
    before = project_containers(docker_api)
    notebook = workdir / "pytorch_line.ipynb"
    out = workdir / "out.ipynb"
    epochs = 30
    if runner == "nbconvert":
        result = tool("jupyter", "nbconvert", "--to", "notebook", "--execute",
                      f"--ExecutePreprocessor.kernel_name={name}", str(notebook), "--output", str(out))  # fmt: skip
    elif runner == "execute":
        shutil.copy(notebook, out)
        result = tool("jupyter", "execute", f"--kernel_name={name}", "--inplace", str(out))
    elif runner == "papermill":
        epochs = 3
        result = tool(
            "papermill", "-k", name, str(notebook), str(out), "-p", "epochs", "3", cwd=workdir
        )
    else:
        epochs = 4
        result = tool(
            "jupyter",
            "mlcontainer",
            "run",
            str(notebook),
            "--kernel",
            name,
            "-p",
            "epochs",
            "4",
            "-o",
            str(out),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    check_pytorch_outputs(outputs(out), epochs)
    # The tool has exited: the kernel's container went with it.
    assert left_since(docker_api, before) == set()
    if runner == "mlcontainer":
        record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
        image = docker_api.inspect_image(TORCH_IMAGE)
        assert record["status"] == "ok"
        assert record["image"] == TORCH_IMAGE
        assert record["image_id"] == image["Id"]
        assert record["repo_digests"] == (image.get("RepoDigests") or [])
        assert record["probe"]["torch"].startswith("2.13.0")
        assert record["probe"]["python_version"].startswith("3.11")
        assert (record["gpus_requested"], record["gpus_granted"]) == ("none", "no GPU")
        assert record["container_device_requests"] == []
        assert record["parameters"] == {"epochs": 4}
        assert record["duration_s"] > 0 and record["started"].endswith("+00:00")


def test_run_with_image_records_the_digest(workdir, jp_environ, docker_api, local_registry):
    digest = push(docker_api, IMAGE, f"{local_registry}/team/python:headless")
    (workdir / "tiny.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]))
    )
    out = workdir / "tiny.out.ipynb"
    result = tool(
        "jupyter",
        "mlcontainer",
        "run",
        str(workdir / "tiny.ipynb"),
        "--image",
        digest,
        "--gpus",
        "none",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    assert record["image"] == digest
    assert digest in record["repo_digests"]
    assert record["image_id"] == docker_api.inspect_image(digest)["Id"]
    assert "42" in outputs(out)


def test_a_failing_cell_fails_the_run_and_keeps_the_traceback(kernelspec, workdir):
    name = kernelspec("plain")
    out = workdir / "fails.out.ipynb"
    result = tool(
        "jupyter",
        "mlcontainer",
        "run",
        str(workdir / "fails.ipynb"),
        "--kernel",
        name,
        "-o",
        str(out),
    )
    assert result.returncode == 1
    # One clean line: which cell raised what.
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"error: {workdir / 'fails.ipynb'}: cell 2 raised ZeroDivisionError: division by zero"
    ], result.stderr
    assert ZMQ_WARNING not in result.stderr
    text = outputs(out)
    assert "before the failure" in text and "ZeroDivisionError" in text and "never" not in text
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    assert record["status"] == "error"
    assert record["reason"] == "ZeroDivisionError: division by zero"
    assert record["cell"] == 2
    converted = tool("jupyter", "nbconvert", "--to", "notebook", "--execute",
                     f"--ExecutePreprocessor.kernel_name={name}", str(workdir / "fails.ipynb"),
                     "--output", str(workdir / "fails.nbconvert.ipynb"))  # fmt: skip
    assert converted.returncode != 0
    assert "ZeroDivisionError" in converted.stderr


def test_out_of_memory_mid_run_is_reported(kernelspec, workdir, docker_api):
    name = kernelspec("small", mem_limit="160m")
    before = project_containers(docker_api)
    out = workdir / "oom.out.ipynb"
    result = tool(
        "jupyter",
        "mlcontainer",
        "run",
        str(workdir / "oom.ipynb"),
        "--kernel",
        name,
        "-o",
        str(out),
    )
    assert result.returncode == 1
    assert "out-of-memory killer" in result.stderr and "160 MiB" in result.stderr
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    assert record["status"] == "kernel died"
    assert "out-of-memory" in record["reason"]
    assert "allocating" in outputs(out)
    converted = tool("jupyter", "nbconvert", "--to", "notebook", "--execute",
                     f"--ExecutePreprocessor.kernel_name={name}", str(workdir / "oom.ipynb"),
                     "--output", str(workdir / "oom.nbconvert.ipynb"))  # fmt: skip
    assert converted.returncode != 0
    assert "out-of-memory killer" in converted.stderr  # the reason, not only "kernel died"
    # Neither tool shuts a dead kernel down: the provisioner removed its container itself.
    assert left_since(docker_api, before) == set()


def test_missing_engine_or_image_fails_fast_with_our_message(kernelspec, workdir, policy):
    policy(allowed_engines=["unix:///tmp/no-engine.sock"])
    no_engine = kernelspec("noengine", docker_host="unix:///tmp/no-engine.sock")
    result = tool("jupyter", "nbconvert", "--to", "notebook", "--execute",
                  f"--ExecutePreprocessor.kernel_name={no_engine}", str(workdir / "fails.ipynb"),
                  "--output", str(workdir / "x.ipynb"))  # fmt: skip
    assert result.returncode != 0
    assert "Cannot reach the Docker engine at unix:///tmp/no-engine.sock" in result.stderr
    result = tool(
        "jupyter",
        "mlcontainer",
        "run",
        str(workdir / "fails.ipynb"),
        "--image",
        "127.0.0.1:9/no/image:1",
        "-o",
        str(workdir / "y.ipynb"),
    )
    assert result.returncode == 1
    assert "kernel did not start" in result.stderr and "Could not pull image" in result.stderr


def test_a_slow_pull_does_not_count_against_the_startup_timeout(
    kernelspec, workdir, docker_api, local_registry, monkeypatch
):
    from nbclient import NotebookClient

    remote = f"{local_registry}/team/python:slow-pull"
    only_in_registry(docker_api, IMAGE, remote)
    real_pull = images.pull

    async def slow_pull(engine, ref, *args, **kwargs):
        await asyncio.sleep(8)  # a big image on a slow link
        return await real_pull(engine, ref, *args, **kwargs)

    monkeypatch.setattr(images, "pull", slow_pull)
    name = kernelspec("slow", image=remote, pull_policy="missing")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('pulled and ran')")])
    client = NotebookClient(
        nb, kernel_name=name, startup_timeout=5, resources={"metadata": {"path": str(workdir)}}
    )
    asyncio.run(client.async_execute())
    assert nb.cells[0].outputs[0]["text"] == "pulled and ran\n"
    assert nb.cells[0].outputs[0]["text"].strip() == "pulled and ran"
    assert docker_api.inspect_image(remote)["RepoDigests"]
    json.dumps(nb)  # the notebook is intact


def test_run_names_its_kernel_documents_p_and_leaves_nothing(kernelspec, workdir, docker_api):
    name = kernelspec("named")
    before = project_containers(docker_api)
    (workdir / "tiny.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]))
    )
    result = tool(
        "jupyter", "mlcontainer", "run", str(workdir / "tiny.ipynb"), "--kernel", name, umask=0o022
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Executing notebook with kernel: {name}" in result.stderr
    # The client's channels and ZMQ context are closed, not left to the garbage collector.
    assert ZMQ_WARNING not in result.stderr
    # An ordinary file under the user's umask (mkstemp would make it 0600).
    assert stat.S_IMODE((workdir / "tiny.run.ipynb").stat().st_mode) == 0o644
    private = tool("jupyter", "mlcontainer", "run", str(workdir / "tiny.ipynb"), "--kernel", name,
                   "-o", str(workdir / "private.ipynb"), umask=0o077)  # fmt: skip
    assert private.returncode == 0, private.stderr[-2000:]
    assert stat.S_IMODE((workdir / "private.ipynb").stat().st_mode) == 0o600
    assert left_since(docker_api, before) == set()
    help_text = tool("jupyter", "mlcontainer", "run", "--help").stdout
    assert "-p NAME VALUE, --parameter NAME VALUE" in help_text


def test_a_clear_error_is_one_line_unless_debugging(kernelspec, workdir, docker_api):
    name = kernelspec("gpus", gpus="all")  # this engine has no GPU support
    before = project_containers(docker_api)
    args = ("jupyter", "mlcontainer", "run", str(workdir / "fails.ipynb"), "--kernel", name)
    result = tool(*args)
    assert result.returncode == 1
    assert "NVIDIA Container Toolkit" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    debug = tool(*args, "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    # jupyter execute (nbclient's CLI) still ends in its own uncaught traceback; ours is not
    # logged on top of it, and no chain of SDK tracebacks buries the message.
    execute = tool("jupyter", "execute", f"--kernel_name={name}", str(workdir / "fails.ipynb"))
    assert execute.returncode != 0
    assert "NVIDIA Container Toolkit" in execute.stderr
    assert execute.stderr.count("Traceback") == 1, execute.stderr
    assert left_since(docker_api, before) == set()


def test_the_welcome_notebook_shows_the_container(
    jp_environ, jp_data_dir, notebook_dir, docker_api
):
    welcome = Path(__file__).parent.parent / "examples" / "welcome.ipynb"
    shutil.copy(welcome, notebook_dir / "welcome.ipynb")
    added = tool("jupyter", "mlcontainer", "add", IMAGE, "--name", "mlc-python-3.11")
    assert added.returncode == 0, added.stderr
    # No --kernel: the notebook's own kernelspec (mlc-python-3.11) is used.
    result = tool("jupyter", "mlcontainer", "run", str(notebook_dir / "welcome.ipynb"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = notebook_dir / "welcome.run.ipynb"
    text = outputs(out)
    assert f"image:         {IMAGE}" in text
    image_id = docker_api.inspect_image(IMAGE)["Id"]
    assert f"pinned to:     {image_id}" in text  # a local image: pinned to its id
    assert "GPUs granted:  GPUs if available" not in text  # resolved: the engine has none
    assert "GPUs granted:  no GPU" in text
    assert f"working directory: {notebook_dir}" in text
    written = notebook_dir / "written-in-the-container.txt"
    assert written.stat().st_uid == notebook_dir.stat().st_uid  # the user's, not root's


def _sleepy(workdir: Path) -> Path:
    cells = [
        nbformat.v4.new_code_cell("print('started', flush=True)"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(600)"),
        nbformat.v4.new_code_cell("print('never')"),
    ]
    path = workdir / "sleepy.ipynb"
    path.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=cells)))
    return path


def test_a_timeout_writes_what_ran_and_leaves_nothing(kernelspec, workdir, docker_api):
    name = kernelspec("slow")
    before = project_containers(docker_api)
    notebook = _sleepy(workdir)
    out = workdir / "sleepy.out.ipynb"
    result = tool("jupyter", "mlcontainer", "run", str(notebook), "--kernel", name,
                  "--timeout", "3", "-o", str(out))  # fmt: skip
    assert result.returncode == 1
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    assert record["status"] == "timeout"
    assert "started" in outputs(out)
    converted = tool("jupyter", "nbconvert", "--to", "notebook", "--execute",
                     f"--ExecutePreprocessor.kernel_name={name}", "--ExecutePreprocessor.timeout=3",
                     str(notebook), "--output", str(workdir / "sleepy.nbconvert.ipynb"))  # fmt: skip
    assert converted.returncode != 0
    assert left_since(docker_api, before) == set()


def test_ctrl_c_writes_what_ran_and_leaves_nothing(kernelspec, workdir, docker_api):
    name = kernelspec("interrupted")
    before = project_containers(docker_api)
    notebook = _sleepy(workdir)
    out = workdir / "sleepy.run.ipynb"
    process = subprocess.Popen(
        [
            str(BIN / "jupyter"),
            "mlcontainer",
            "run",
            str(notebook),
            "--kernel",
            name,
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        c["Labels"].get("org.jupyter-mlcontainer.server-pid") == str(process.pid)
        and c["State"] == "running"
        for c in docker_api.containers(filters=labels.managed_filter())
    ):
        time.sleep(0.2)
    time.sleep(2)  # into the sleeping cell
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted; output (with what ran)" in stderr
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    assert record["status"] == "interrupted"
    assert "started" in outputs(out)
    assert left_since(docker_api, before) == set()


@pytest.mark.skipif(os.getuid() != 0, reason="needs a root-owned notebook folder")
def test_run_takes_kernel_settings_from_its_command_line(kernelspec, tmp_path, docker_api):
    """As a server does: `--MLContainerPolicy…` reaches the policy, `--MLContainerProvisioner…`
    the kernel; a refusal is said once."""
    name = kernelspec("as-root")
    before = project_containers(docker_api)
    folder = tmp_path / "root-owned"  # root's notebooks: its kernels would run as root
    folder.mkdir()
    notebook = folder / "whoami.ipynb"
    cell = nbformat.v4.new_code_cell("import os; print('uid', os.getuid())")
    notebook.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=[cell])))
    run = ("jupyter", "mlcontainer", "run", str(notebook), "--kernel", name)

    refused = tool(*run)
    assert refused.returncode == 1
    assert refused.stderr.count("Not allowed by the admin policy (allow_root)") == 1, refused.stderr
    assert "--MLContainerPolicy.allow_root=True on the command line" in refused.stderr
    assert "Traceback" not in refused.stderr

    allowed = tool(*run, "--MLContainerPolicy.allow_root=True", "-o", str(folder / "root.ipynb"))
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "uid 0" in outputs(folder / "root.ipynb")

    as_user = tool(*run, f"--MLContainerProvisioner.uid={TEST_UID}",
                   f"--MLContainerProvisioner.gid={TEST_GID}", "-o", str(folder / "user.ipynb"))  # fmt: skip
    assert as_user.returncode == 0, as_user.stderr[-2000:]
    assert f"uid {TEST_UID}" in outputs(folder / "user.ipynb")
    assert left_since(docker_api, before) == set()


async def test_kernel_details_and_the_run_record_name_the_same_digest(
    kernelspec, workdir, docker_api, local_registry
):
    # A kernel pinned to the local image id of an image that a registry also has.
    digest = push(docker_api, IMAGE, f"{local_registry}/team/python:details")
    image_id = docker_api.inspect_image(IMAGE)["Id"]
    name = kernelspec("by-id", image=image_id)
    (workdir / "tiny.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]))
    )
    out = workdir / "tiny.out.ipynb"
    result = tool("jupyter", "mlcontainer", "run", str(workdir / "tiny.ipynb"), "--kernel", name,
                  "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    record = nbformat.read(str(out), as_version=4).metadata["jupyter_mlcontainer"]["run"]
    async with running_kernel(name, workdir) as (km, _):
        details = await eventually(
            lambda: km.provisioner.image_details, "the kernel's image details are known", 10
        )
    assert digest in details["repo_digests"]
    assert details["digest"] in details["repo_digests"]  # not "none (built or loaded here)"
    assert {k: record[k] for k in ("image", "image_id", "digest", "repo_digests")} == details
    assert details["image_id"] == image_id

"""`jupyter mlcontainer`: add, list, pull, export, doctor — as a user runs them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import docker.errors
import pytest

from .conftest import BARE_IMAGE, IMAGE, TORCH_IMAGE, execute, push, running_kernel

pytestmark = pytest.mark.engine


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
        check=False,
    )


def installed(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "kernels" / name / "kernel.json").read_text())


@pytest.fixture(scope="module")
def marked_images(docker_api):
    """Two images that differ only in /marker ("A", "B")."""
    tags = {}
    for mark in ("A", "B"):
        tag = f"mlc-test/marked:{mark.lower()}"
        dockerfile = f"FROM {IMAGE}\nRUN echo {mark} > /marker\n".encode()
        for _ in docker_api.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, decode=True):
            pass
        tags[mark] = tag
    yield tags
    remove_images(docker_api, *tags.values())


@pytest.fixture(scope="module")
def no_python_image(docker_api):
    """An image with a file in it and nothing else: no Python, no shell."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"nothing to run here\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    docker_api.import_image_from_data(buf.getvalue(), repository="mlc-test/no-python", tag="1")
    yield "mlc-test/no-python:1"
    remove_images(docker_api, "mlc-test/no-python:1")


def remove_images(api, *names: str) -> None:
    """What a test built goes with it (a test may have removed some already)."""
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_image(name, force=True)


async def test_add_list_export_and_a_teammate_installs_and_runs(
    jp_environ, jp_data_dir, tmp_path, docker_api, local_registry, notebook_dir, monkeypatch
):
    image = f"{local_registry}/team/python:3.11"
    digest = push(docker_api, IMAGE, image)
    result = cli("add", image, "--mem-limit", "4g", "--gpus", "none")
    assert result.returncode == 0, result.stderr
    name = "mlc-python-3.11"
    spec = installed(Path(jp_data_dir), name)
    config = spec["metadata"]["kernel_provisioner"]["config"]
    assert config == {"image": digest, "gpus": "none", "mem_limit": "4g"}  # pinned by digest
    assert spec["display_name"] == "Python 3.11 · CPU"
    assert spec["metadata"]["supported_encryption"] == ["curve"]  # ipykernel 7.4 in the image
    recorded = spec["metadata"]["jupyter_mlcontainer"]
    assert recorded["source"] == image
    assert recorded["probe"]["python"] == "/opt/venv/bin/python3"
    assert recorded["probe"]["ipykernel"] == "7.4.0"
    assert {"logo-svg.svg", "logo-32x32.png", "logo-64x64.png"} <= set(
        os.listdir(Path(jp_data_dir) / "kernels" / name)
    )

    listing = cli("list", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = [r for r in json.loads(listing.stdout)["kernels"] if r["name"] == name]
    assert (row["present"], row["pinned"], row["gpus"]) == (True, "digest", "none")

    again = cli("add", image)
    assert again.returncode == 1
    assert "exists" in again.stderr and "--replace" in again.stderr

    exported = tmp_path / "share" / name
    result = cli("export", name, str(exported))
    assert result.returncode == 0, result.stderr
    assert json.loads((exported / "kernel.json").read_text()) == spec

    # A teammate: another Jupyter data dir, plain `jupyter kernelspec install`.
    teammate = tmp_path / "teammate-data"
    jupyter = Path(sys.executable).parent / "jupyter"
    subprocess.run(
        [str(jupyter), "kernelspec", "install", "--user", "--name", name, str(exported)],
        check=True,
        env={**os.environ, "JUPYTER_DATA_DIR": str(teammate)},
    )
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(teammate))
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "import ipykernel; print(ipykernel.__version__)")
        assert out.strip() == "7.4.0"
        assert (
            docker_api.inspect_container(km.provisioner.container_id)["Config"]["Image"] == digest
        )


async def test_pinning_survives_a_moved_tag_and_doctor_sees_it(
    jp_environ, jp_data_dir, docker_api, local_registry, marked_images, notebook_dir
):
    image = f"{local_registry}/team/marked:latest"
    digest_a = push(docker_api, marked_images["A"], image)
    result = cli("add", image, "--name", "marked", "--gpus", "none")
    assert result.returncode == 0, result.stderr
    assert (
        installed(Path(jp_data_dir), "marked")["metadata"]["kernel_provisioner"]["config"]["image"]
        == digest_a
    )

    push(docker_api, marked_images["B"], image)  # the tag moves to B
    async with running_kernel("marked", notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print(open('/marker').read().strip())")
        assert out.strip() == "A"

    doctor = cli("doctor")
    assert doctor.returncode == 0, doctor.stdout
    # Now only B is on the engine under that name: the pinned image is gone.
    docker_api.remove_image(digest_a, force=True)
    docker_api.remove_image(marked_images["A"], force=True)
    doctor = cli("doctor")
    assert doctor.returncode == 1
    line = next(line for line in doctor.stdout.splitlines() if line.startswith("marked"))
    assert (
        "MISMATCH" in line and "the tag moved" in line and "jupyter mlcontainer pull marked" in line
    )

    pulled = cli("pull", "marked")
    assert pulled.returncode == 0, pulled.stderr
    assert cli("doctor").returncode == 0
    async with running_kernel("marked", notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print(open('/marker').read().strip())")
        assert out.strip() == "A"


def test_doctor_reports_a_missing_image_and_a_stopped_engine(jp_environ, jp_kernel_dir, docker_api):
    folder = Path(jp_kernel_dir) / "gone"
    folder.mkdir()
    spec = {
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gone",
        "language": "python",
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": "mlcontainer",
                "config": {"image": "mlc-test/never-built:1"},
            }
        },
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    doctor = cli("doctor")
    assert doctor.returncode == 1
    line = next(line for line in doctor.stdout.splitlines() if line.startswith("gone"))
    assert "MISSING" in line and "jupyter mlcontainer pull gone" in line
    assert ["engine", "ok"] in [line.split()[:2] for line in doctor.stdout.splitlines()]

    stopped = cli("doctor", DOCKER_HOST="unix:///tmp/no-engine-here.sock")
    assert stopped.returncode == 1
    assert ["engine", "FAIL"] in [line.split()[:2] for line in stopped.stdout.splitlines()]
    assert "Start the engine" in stopped.stdout


def test_probe_findings(docker_api):
    import asyncio

    from jupyter_mlcontainer.docker.engine import Engine
    from jupyter_mlcontainer.docker.images import probe_image

    async def probes():
        engine = Engine.for_url(None)
        return await probe_image(engine, TORCH_IMAGE), await probe_image(engine, BARE_IMAGE)

    torch_probe, bare_probe = asyncio.run(probes())
    assert torch_probe.torch.startswith("2.13.0")
    assert torch_probe.ipykernel == "7.4.0"
    assert torch_probe.python == "/opt/venv/bin/python3"
    assert bare_probe.ipykernel is None
    assert bare_probe.torch is None
    assert bare_probe.python_minor == "3.11"
    assert bare_probe.os == "Debian GNU/Linux 12 (bookworm)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1:9/nobody/nothing:1"], "Could not pull image"),
        (["mlc-test/no-python:1"], "has no Python"),
        ([IMAGE, "--name", "Bad Name!"], "invalid kernel name"),
        ([IMAGE, "--gpus", "lots"], "Invalid gpus setting"),
        ([], "give exactly one IMAGE"),
    ],
)
def test_bad_input_writes_nothing(jp_environ, jp_kernel_dir, no_python_image, args, message):
    before = set(os.listdir(jp_kernel_dir))
    result = cli("add", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert set(os.listdir(jp_kernel_dir)) == before


def test_list_warns_about_kernelspecs_jupyter_hides(jp_environ, jp_kernel_dir, docker_api):
    folder = Path(jp_kernel_dir) / "elsewhere"
    folder.mkdir()
    spec = {
        "argv": ["x"],
        "display_name": "x",
        "language": "python",
        "metadata": {"kernel_provisioner": {"provisioner_name": "not-installed-anywhere"}},
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    result = cli("list")
    assert result.returncode == 0
    assert "'elsewhere' needs the provisioner 'not-installed-anywhere'" in result.stderr
    assert "Jupyter hides it" in result.stderr


def test_help_reads_well():
    result = cli("--help")
    assert result.returncode == 0
    for word in ("add", "list", "pull", "export", "doctor"):
        assert word in result.stdout
    add_help = cli("add", "--help")
    assert (
        "--gpus" in add_help.stdout
        and "--mem-limit" in add_help.stdout
        and "--replace" in add_help.stdout
    )


def test_add_reads_the_images_labels(jp_environ, jp_data_dir, docker_api, request):
    dockerfile = (
        f"FROM {IMAGE}\n"
        'LABEL org.jupyter-mlcontainer.display-name="Team image · CPU" org.jupyter-mlcontainer.gpus="none"\n'
    ).encode()
    for _ in docker_api.build(
        fileobj=io.BytesIO(dockerfile), tag="mlc-test/labelled:1", rm=True, decode=True
    ):
        pass
    request.addfinalizer(lambda: remove_images(docker_api, "mlc-test/labelled:1"))
    result = cli("add", "mlc-test/labelled:1")
    assert result.returncode == 0, result.stderr
    spec = installed(Path(jp_data_dir), "mlc-labelled-1")
    assert spec["display_name"] == "Team image · CPU"
    assert spec["metadata"]["kernel_provisioner"]["config"]["gpus"] == "none"
    override = cli(
        "add", "mlc-test/labelled:1", "--replace", "--gpus", "auto", "--display-name", "Mine"
    )
    assert override.returncode == 0, override.stderr
    spec = installed(Path(jp_data_dir), "mlc-labelled-1")
    assert (spec["display_name"], spec["metadata"]["kernel_provisioner"]["config"]["gpus"]) == (
        "Mine",
        "auto",
    )


async def test_shipped_kernelspec_folder_installs_and_runs(jp_environ, notebook_dir):
    folder = Path(__file__).parent.parent / "kernelspecs" / "mlcontainer-pytorch-cpu"
    jupyter = Path(sys.executable).parent / "jupyter"
    subprocess.run(
        [str(jupyter), "kernelspec", "install", "--user", str(folder)],
        check=True,
        capture_output=True,
    )
    async with running_kernel("mlcontainer-pytorch-cpu", notebook_dir) as (km, kc):
        out, _ = await execute(kc, "import torch; print(torch.tensor([1.0, 2.0]).sum().item())")
        assert out.strip() == "3.0"


def test_add_says_where_it_installed_once(jp_environ, jp_data_dir, docker_api):
    result = cli("add", IMAGE, "--gpus", "none")
    assert result.returncode == 0, result.stderr
    said = (result.stdout + result.stderr).count("Installed kernelspec")
    assert said == 1, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["UPPER/Case::bad"], "is not a valid image reference (repository names are lowercase)"),
        (["python:3.11", "--mem-limit", "huge"], "Invalid mem_limit 'huge'"),
        (["python:3.11", "--shm-size", "lots"], "Invalid shm_size 'lots'"),
    ],
)
def test_bad_input_is_refused_before_the_engine_is_asked(jp_environ, jp_kernel_dir, args, message):
    # No engine at this address: an error that reached the engine would say so instead.
    before = set(os.listdir(jp_kernel_dir))
    result = cli("add", *args, DOCKER_HOST="unix:///tmp/no-engine-here.sock")
    assert result.returncode == 1
    assert message in result.stderr
    assert "Cannot reach the Docker engine" not in result.stderr
    assert "Traceback" not in result.stderr
    assert set(os.listdir(jp_kernel_dir)) == before


def test_adding_a_missing_image_gives_advice_that_applies(jp_environ, jp_kernel_dir, docker_api):
    result = cli("add", "mlc-test/never-built-anywhere:1")
    assert result.returncode == 1
    assert "Could not pull image 'mlc-test/never-built-anywhere:1'" in result.stderr
    assert "pull_policy" not in result.stderr  # `add` always pulls what is missing
    assert "build or load the image onto the engine" in result.stderr


def test_gpus_on_an_engine_without_them_warn_at_add_and_in_doctor(
    jp_environ, jp_data_dir, docker_api
):
    result = cli("add", IMAGE, "--name", "wants-gpus", "--gpus", "all")
    assert result.returncode == 0, result.stderr
    assert "warning: this kernel asks for all GPUs, but the engine has" in result.stderr
    assert "NVIDIA Container Toolkit" in result.stderr
    spec = installed(Path(jp_data_dir), "wants-gpus")
    assert "CPU" not in spec["display_name"]
    assert spec["display_name"] == "Python 3.11 · GPU"
    doctor = cli("doctor")
    assert doctor.returncode == 1
    line = next(line for line in doctor.stdout.splitlines() if line.startswith("wants-gpus"))
    assert "NO GPU" in line
    assert "--gpus auto" in line
    assert "all good" not in doctor.stdout


def test_doctor_columns_line_up(jp_environ, jp_data_dir, docker_api):
    long_name = "a-kernelspec-with-a-rather-long-name"
    assert cli("add", IMAGE, "--name", long_name, "--gpus", "none").returncode == 0
    doctor = cli("doctor")
    rows = [line for line in doctor.stdout.splitlines()[:-1]]  # the last: the verdict
    engine = next(line for line in rows if line.startswith("engine "))
    column = engine.index(" ok ") + 1  # where every status starts
    for line in rows:
        label = line[:column]
        assert label.endswith("  "), doctor.stdout  # labels never run into the status
        assert " " not in label.strip(), doctor.stdout  # nor does a status start earlier


def test_kernels_of_different_images_look_different(jp_environ, jp_data_dir, docker_api):
    # The same probe (Python 3.11, CPU) for both: only the image differs.
    first = cli("add", IMAGE, "--name", "first", "--gpus", "none")
    second = cli("add", BARE_IMAGE, "--name", "second", "--gpus", "none")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    names = {n: installed(Path(jp_data_dir), n)["display_name"] for n in ("first", "second")}
    assert names["first"] == "Python 3.11 · CPU"
    assert names["second"] == f"Python 3.11 · CPU ({BARE_IMAGE})"
    logos = {
        n: (Path(jp_data_dir) / "kernels" / n / "logo-svg.svg").read_text()
        for n in ("first", "second")
    }
    assert logos["first"] != logos["second"]
    pngs = {
        n: (Path(jp_data_dir) / "kernels" / n / "logo-64x64.png").read_bytes()
        for n in ("first", "second")
    }
    assert pngs["first"] != pngs["second"]
    # Adding the same image again under its own name keeps its name.
    again = cli("add", IMAGE, "--name", "first", "--gpus", "none", "--replace")
    assert again.returncode == 0, again.stderr
    assert installed(Path(jp_data_dir), "first")["display_name"] == "Python 3.11 · CPU"


@pytest.mark.parametrize("name", ["..", ".", ".hidden"])
def test_kernel_names_that_are_not_folders_of_their_own(jp_environ, jp_kernel_dir, name):
    result = cli("add", IMAGE, "--name", name, DOCKER_HOST="unix:///tmp/no-engine-here.sock")
    assert result.returncode == 1
    assert "invalid kernel name" in result.stderr


def test_a_kernelspec_we_did_not_make_is_never_replaced(jp_environ, jp_kernel_dir, docker_api):
    folder = Path(jp_kernel_dir) / "python3"
    folder.mkdir()
    local = {"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
             "display_name": "Python 3 (ipykernel)", "language": "python"}  # fmt: skip
    (folder / "kernel.json").write_text(json.dumps(local))
    result = cli("add", IMAGE, "--name", "python3", "--replace")
    assert result.returncode == 1
    assert "was not made by jupyter-mlcontainer, so it is never replaced" in result.stderr
    assert json.loads((folder / "kernel.json").read_text()) == local
    # One of ours is replaced on request.
    assert cli("add", IMAGE, "--name", "ours", "--gpus", "none").returncode == 0
    again = cli("add", IMAGE, "--name", "ours", "--gpus", "auto", "--replace")
    assert again.returncode == 0, again.stderr


def test_doctor_lists_home_volumes_and_prune_removes_unneeded_ones(
    jp_environ, jp_data_dir, docker_api
):
    # A uid of this test's own: the kernels of other tests (uid 4321) have HOME volumes of
    # the same image, which this test must neither see nor leave behind for them.
    def home(name, image):
        docker_api.create_volume(
            name,
            labels={
                "org.jupyter-mlcontainer.managed": "true",
                "org.jupyter-mlcontainer.purpose": "home",
                "org.jupyter-mlcontainer.home-uid": "4399",
                "org.jupyter-mlcontainer.home-image": image,
            },
        )
        return name

    needed = home("mlc-home-4399-mlcontainer-python", IMAGE)
    stale = home("mlc-home-4399-mlc-test-retired", "mlc-test/retired:1")
    busy = home("mlc-home-4399-mlc-test-busy", "mlc-test/busy:1")
    user = docker_api.create_container(
        IMAGE, ["sleep", "60"], host_config=docker_api.create_host_config(binds=[f"{busy}:/h"])
    )
    try:
        assert cli("add", IMAGE, "--name", "keeps-python-home", "--gpus", "none").returncode == 0
        doctor = cli("doctor")
        rows = {line.split()[0]: line for line in doctor.stdout.splitlines() if line.strip()}
        assert "ok" in rows[needed].split() and "HOME of uid 4399" in rows[needed]
        assert "unused" in rows[stale].split() and "jupyter mlcontainer prune" in rows[stale]
        dry = cli("prune", "--dry-run")
        assert f"would remove {stale}" in dry.stdout
        assert docker_api.inspect_volume(stale)  # still there
        pruned = cli("prune")
        assert pruned.returncode == 0, pruned.stderr
        assert f"removed {stale}" in pruned.stdout
        assert f"kept {busy}: a container uses it" in pruned.stdout
        names = {v["Name"] for v in docker_api.volumes()["Volumes"] or []}
        assert stale not in names
        assert {needed, busy} <= names
    finally:
        docker_api.remove_container(user["Id"], force=True)
        for volume in (needed, stale, busy):
            with contextlib.suppress(docker.errors.NotFound):
                docker_api.remove_volume(volume)


def test_help_lists_every_subcommand_whole():
    from traitlets.utils.importstring import import_item

    from jupyter_mlcontainer.cli.app import MLContainerApp
    from jupyter_mlcontainer.cli.base import summary

    result = cli("--help")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    for name, (app, shown) in MLContainerApp.subcommands.items():
        # Some are named by their import string, imported when used: their literal summary
        # must still be their description's.
        description = (import_item(app) if isinstance(app, str) else app).description
        assert shown == summary(description), name  # the first paragraph, not its first line
        assert shown.endswith("."), name  # a whole sentence
        assert lines[lines.index(name) + 1] == shown, name
    bare = cli()  # no subcommand: the same list
    for name, (_, shown) in MLContainerApp.subcommands.items():
        assert f"{name}  " in bare.stdout and shown in bare.stdout


def test_every_subcommand_keeps_jupyters_own_flags():
    # A command with flags of its own once lost --debug (and --show-config): `run --debug`
    # was refused as "expected one argument".
    from traitlets.utils.importstring import import_item

    from jupyter_mlcontainer.cli.app import MLContainerApp

    for name, (app, _) in MLContainerApp.subcommands.items():
        cls = import_item(app) if isinstance(app, str) else app
        assert {"debug", "show-config"} <= set(cls.flags), name
    result = cli("versions", "--debug", "--help")
    assert result.returncode == 0, result.stderr
    assert "--debug" in result.stdout and "--json" in result.stdout


def test_list_names_the_image_a_local_build_was_added_from(jp_environ, jp_data_dir, docker_api):
    # Pinned to its local image id (no registry has it under its name): the id alone tells a
    # reader nothing.
    image_id = docker_api.inspect_image(IMAGE)["Id"]
    assert cli("add", IMAGE, "--name", "local", "--gpus", "none").returncode == 0
    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("local "))
    assert row.split()[1:4] == ["yes", "image", "id"]
    assert row.endswith(f"  {IMAGE} ({image_id[:19]}…, local build)"), row
    kernels = json.loads(cli("list", "--json").stdout)["kernels"]
    (listed,) = [r for r in kernels if r["name"] == "local"]
    assert (listed["image"], listed["source"]) == (image_id, IMAGE)


def test_a_missing_image_in_a_registry_is_explained_once(jp_environ, jp_kernel_dir, local_registry):
    result = cli("add", f"{local_registry}/team/never-pushed:1")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"Could not pull image '{local_registry}/team/never-pushed:1': manifest" in line
    assert line.count("manifest unknown") == 1, line
    assert "`" not in line  # no Markdown in a terminal

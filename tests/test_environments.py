"""Environments that evolve without drifting (issue 20), on the real engine and the local
registry: extend → a new pinned version; an identical extend reuses its image; a bad
requirement changes nothing; rollback; diff; export carries the history; run --as-recorded;
what a kernel pip-installs into its own container is recorded, and a new kernel lacks it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest

from jupyter_mlcontainer.core import environments as envs

from .conftest import BARE_IMAGE, IMAGE, TEST_UID, execute, push, running_kernel
from .wheels import make_wheel

pytestmark = pytest.mark.engine


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
        check=False,
    )


def spec_of(data_dir: Path | str, name: str) -> dict[str, Any]:
    return json.loads((Path(data_dir) / "kernels" / name / "kernel.json").read_text())


def image_of(spec: dict[str, Any]) -> str:
    return str(spec["metadata"]["kernel_provisioner"]["config"]["image"])


@pytest.fixture
def derived_images(docker_api: Any) -> Any:
    """Every image ``extend`` makes during the test is removed after it (all its names)."""
    label = {"label": envs.EXTEND_KEY}
    before = {image["Id"] for image in docker_api.images(filters=label)}
    yield lambda: [i for i in docker_api.images(filters=label) if i["Id"] not in before]
    for image in docker_api.images(filters=label):
        if image["Id"] not in before:
            for name in image.get("RepoTags") or []:
                if name != "<none>:<none>":
                    docker_api.remove_image(name)
            try:
                docker_api.remove_image(image["Id"], force=True)
            except docker.errors.NotFound:
                pass


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    make_wheel(folder, "mlc-demo", "1.0.0")
    make_wheel(folder, "mlc-demo", "1.1.0")
    make_wheel(folder, "mlc-helper", "0.2.0", requires=("mlc-demo>=1.0",))
    return folder


async def test_extend_pins_a_new_digest_then_reuses_rolls_back_and_diffs(
    jp_environ, jp_data_dir, tmp_path, docker_api, local_registry, notebook_dir, monkeypatch,
    wheelhouse, derived_images,
):  # fmt: skip
    source = f"{local_registry}/team/python:3.11"
    first = push(docker_api, IMAGE, source)
    assert cli("add", source, "--name", "team", "--gpus", "none").returncode == 0
    assert [v.number for v in envs.history(spec_of(jp_data_dir, "team"))] == [1]

    made = cli("extend", "team", "--pip", "mlc-helper==0.2.0", "--wheelhouse", str(wheelhouse))
    assert made.returncode == 0, made.stderr
    spec = spec_of(jp_data_dir, "team")
    second = image_of(spec)
    assert second.startswith(f"{local_registry}/team/python@sha256:") and second != first
    version = envs.current(spec)
    assert (version.number, version.parent, version.parent_image) == (2, 1, first)
    # The dependency came with it, and the lock has a hash for each package.
    assert version.added == ("mlc-demo==1.1.0", "mlc-helper==0.2.0")
    assert version.lock.count("--hash=sha256:") == 2
    image = docker_api.inspect_image(second)
    image_labels = image["Config"]["Labels"]
    assert image_labels[envs.PARENT] == first
    assert image_labels[envs.LOCK] == version.lock
    assert image_labels[envs.EXTENDED_BY] and image_labels[envs.EXTENDED_AT]
    parent_config = docker_api.inspect_image(first)["Config"]
    assert image["Config"]["Cmd"] == parent_config["Cmd"]  # the parent's, not the build's
    assert image["Config"]["User"] in ("", "root", parent_config["User"])
    async with running_kernel("team", notebook_dir) as (km, kc):
        out, reply = await execute(kc, "import mlc_helper, mlc_demo; print(mlc_demo.VERSION)")
        assert reply["status"] == "ok" and out.strip() == "1.1.0", out
        assert docker_api.inspect_container(km.provisioner.container_id)["Image"] == image["Id"]
        assert km.provisioner.image_details["version"] == 2
    assert len(derived_images()) == 1

    # A bad requirement: the kernelspec is untouched, the message names the package.
    before = (Path(jp_data_dir) / "kernels" / "team" / "kernel.json").read_bytes()
    bad = cli("extend", "team", "--pip", "no-such-package==9.9", "--wheelhouse", str(wheelhouse))
    assert bad.returncode == 1
    assert "no-such-package" in bad.stderr and "nothing was changed" in bad.stderr
    assert (Path(jp_data_dir) / "kernels" / "team" / "kernel.json").read_bytes() == before

    back = cli("rollback", "team")
    assert back.returncode == 0, back.stderr
    assert image_of(spec_of(jp_data_dir, "team")) == first
    assert [v.number for v in envs.history(spec_of(jp_data_dir, "team"))] == [1, 2]

    # The same request again: the image made before, no build.
    again = cli("extend", "team", "--pip", "mlc-helper==0.2.0", "--wheelhouse", str(wheelhouse))
    assert again.returncode == 0, again.stderr
    assert "reused" in again.stdout and "Building" not in again.stderr
    assert image_of(spec_of(jp_data_dir, "team")) == second
    assert len(derived_images()) == 1
    assert envs.current(spec_of(jp_data_dir, "team")).number == 2  # no third version

    diff = cli("diff", "team", "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert "+ mlc-demo==1.1.0" in diff.stdout and "+ mlc-helper==0.2.0" in diff.stdout
    listed = cli("versions", "team", "--json")
    assert [v["number"] for v in json.loads(listed.stdout)["versions"]] == [1, 2]

    # export carries the history: a teammate can roll back too.
    exported = tmp_path / "exported"
    assert cli("export", "team", str(exported)).returncode == 0
    teammate = tmp_path / "teammate"
    subprocess.run(
        [str(Path(sys.executable).parent / "jupyter"), "kernelspec", "install", "--user",
         "--name", "team", str(exported)],
        check=True, env={**os.environ, "JUPYTER_DATA_DIR": str(teammate)},
    )  # fmt: skip
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(teammate))
    assert cli("rollback", "team", "1").returncode == 0
    assert image_of(spec_of(teammate, "team")) == first
    assert image_of(spec_of(jp_data_dir, "team")) == second  # mine did not move


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "local", "display_name": "local", "language": "python"}
    nbformat.write(nb, str(path))
    os.chown(path, TEST_UID, TEST_UID + 1) if os.getuid() == 0 else None
    return path


def _record(path: Path) -> dict[str, Any]:
    return dict(nbformat.read(str(path), as_version=4).metadata["jupyter_mlcontainer"]["run"])


def test_run_as_recorded_uses_the_recorded_image_after_the_kernel_moved_on(
    jp_environ, jp_data_dir, docker_api, notebook_dir, wheelhouse, derived_images
):
    assert cli("add", IMAGE, "--name", "local", "--gpus", "none").returncode == 0
    first = image_of(spec_of(jp_data_dir, "local"))
    made = cli("extend", "local", "--pip", "mlc-demo==1.0.0", "--wheelhouse", str(wheelhouse))
    assert made.returncode == 0, made.stderr
    second = image_of(spec_of(jp_data_dir, "local"))
    assert second.startswith("sha256:") and second != first  # a local image: pinned by id
    probe = "import importlib.util as u; print('has demo:', bool(u.find_spec('mlc_demo')))"
    nb = _notebook(notebook_dir / "report.ipynb", probe)
    ran = cli("run", str(nb), "-o", str(notebook_dir / "v2.ipynb"))
    assert ran.returncode == 0, ran.stderr
    record = _record(notebook_dir / "v2.ipynb")
    assert (record["image_id"], record["version"]) == (second, 2)

    assert cli("rollback", "local").returncode == 0  # the kernelspec moves on (back) to v1
    plain = cli("run", str(notebook_dir / "v2.ipynb"), "-o", str(notebook_dir / "now.ipynb"))
    assert plain.returncode == 0, plain.stderr
    assert "has demo: False" in json.dumps(nbformat.read(notebook_dir / "now.ipynb", 4).cells)
    recorded = cli(
        "run", str(notebook_dir / "v2.ipynb"), "--as-recorded", "-o", str(notebook_dir / "r.ipynb")
    )
    assert recorded.returncode == 0, recorded.stderr
    assert "has demo: True" in json.dumps(nbformat.read(notebook_dir / "r.ipynb", 4).cells)
    assert _record(notebook_dir / "r.ipynb")["image_id"] == second
    assert _record(notebook_dir / "r.ipynb")["as_recorded"] is True

    # Two notebooks' recorded environments differ by their version and image.
    diff = cli("diff", str(notebook_dir / "now.ipynb"), str(notebook_dir / "r.ipynb"))
    assert diff.returncode == 0, diff.stderr
    assert "version: 1 → 2" in diff.stdout

    # An image that can no longer be had: a clear refusal, nothing run.
    gone = nbformat.read(notebook_dir / "r.ipynb", 4)
    gone.metadata["jupyter_mlcontainer"]["run"]["image_id"] = "sha256:" + "0" * 64
    gone.metadata["jupyter_mlcontainer"]["run"].pop("digest", None)
    nbformat.write(gone, str(notebook_dir / "gone.ipynb"))
    refused = cli("run", str(notebook_dir / "gone.ipynb"), "--as-recorded")
    assert refused.returncode == 1
    assert "can no longer be had" in refused.stderr
    assert not (notebook_dir / "gone.run.ipynb").exists()


@pytest.fixture
def writable_image(docker_api: Any, derived_images: Any) -> Any:
    """IMAGE with a site-packages the kernel's user may write (as images whose environment
    belongs to the notebook user are, e.g. conda images owned by uid 1000)."""
    tag = "mlc-test/writable-env:1"
    dockerfile = (
        f"FROM {IMAGE}\nUSER root\nRUN chown {TEST_UID} /opt/venv/lib/python3.11/site-packages\n"
    )
    for line in docker_api.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True, decode=True
    ):
        assert "error" not in line, line
    yield tag
    docker_api.remove_image(tag, force=True)


async def test_packages_a_kernel_installs_into_itself_are_recorded_and_not_kept(
    jp_environ, kernelspec, docker_api, notebook_dir, wheelhouse, writable_image
):
    """The drift rule: what `%pip install` puts into the kernel's own container is listed in
    the run record (and the kernel's details), a restart in place keeps it (same container),
    a new kernel does not have it; user-site packages are kept out of every kernel."""
    local = notebook_dir / "wheels"
    local.mkdir()
    for wheel in wheelhouse.iterdir():
        (local / wheel.name).write_bytes(wheel.read_bytes())
    name = kernelspec(image=writable_image)
    install = "%pip install --no-index --find-links ./wheels mlc-demo==1.1.0"
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, install, timeout=120)
        assert reply["status"] == "ok", out
        drift = await km.provisioner.refresh_drift()
        assert drift.added == {"mlc-demo": "1.1.0"}
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        out, _ = await execute(
            kc, "import mlc_demo, site; print(mlc_demo.VERSION, site.ENABLE_USER_SITE)"
        )
        assert out.split() == ["1.1.0", "False"], out  # in place: the same container
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, "import mlc_demo")
        assert reply["status"] == "error" and "ModuleNotFoundError" in out
        assert not await km.provisioner.refresh_drift()

    nb = _notebook(notebook_dir / "installs.ipynb", install, "import mlc_demo")
    ran = cli("run", str(nb), "--kernel", name, "-o", str(notebook_dir / "out.ipynb"))
    assert ran.returncode == 0, ran.stderr
    assert _record(notebook_dir / "out.ipynb")["drift"]["added"] == {"mlc-demo": "1.1.0"}
    assert "not in its image: + mlc-demo==1.1.0" in ran.stderr
    assert f"extend {name} --pip mlc-demo==1.1.0" in ran.stderr


@pytest.fixture
def user_site_image(docker_api: Any, derived_images: Any) -> Any:
    """IMAGE whose environment sees user-site packages (as a system Python or a conda base
    does), which the kernel's user may not write: pip falls back to a user install."""
    tag = "mlc-test/user-site:1"
    dockerfile = (
        f"FROM {IMAGE}\nUSER root\nRUN sed -i 's/^include-system-site-packages = false/"
        "include-system-site-packages = true/' /opt/venv/pyvenv.cfg\n"
    )
    for line in docker_api.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True, decode=True
    ):
        assert "error" not in line, line
    yield tag
    docker_api.remove_image(tag, force=True)


async def test_a_user_install_goes_into_the_kernels_container_never_into_home(
    jp_environ, kernelspec, notebook_dir, wheelhouse, user_site_image
):
    """pip's fallback to `--user` lands in the kernel's own container (PYTHONUSERBASE), where
    it imports and is recorded as drift; not in HOME, which later kernels would import."""
    local = notebook_dir / "wheels"
    local.mkdir()
    for wheel in wheelhouse.iterdir():
        (local / wheel.name).write_bytes(wheel.read_bytes())
    name = kernelspec("usersite", image=user_site_image)
    install = "%pip install --no-index --find-links ./wheels mlc-demo==1.1.0"
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, install, timeout=120)
        assert reply["status"] == "ok" and "user installation" in out, out
        out, _ = await execute(
            kc,
            "import mlc_demo, os; print(mlc_demo.__file__); "
            "print(os.path.exists(os.path.expanduser('~/.local/lib')))",
        )
        *_, where, in_home = out.split()
        assert where.startswith("/tmp/mlc-user-site/") and in_home == "False", out
        assert (await km.provisioner.refresh_drift()).added == {"mlc-demo": "1.1.0"}
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(kc, "import mlc_demo")
        assert reply["status"] == "error" and "ModuleNotFoundError" in out


def test_doctor_shows_home_volumes_that_carry_packages(jp_environ, docker_api):
    """pip --user packages in a HOME volume (which kernels do not import) are shown."""
    volume = "mlc-home-4398-mlcontainer-python"
    docker_api.create_volume(
        volume,
        labels={
            "org.jupyter-mlcontainer.managed": "true",
            "org.jupyter-mlcontainer.purpose": "home",
            "org.jupyter-mlcontainer.home-uid": "4398",
            "org.jupyter-mlcontainer.home-image": IMAGE,
        },
    )
    site = "/h/.local/lib/python3.11/site-packages"
    writer = docker_api.create_container(
        IMAGE,
        ["sh", "-c", f"mkdir -p {site}/mlc_demo-1.1.0.dist-info {site}/mlc_demo"],
        user="0",
        host_config=docker_api.create_host_config(binds=[f"{volume}:/h"]),
    )
    try:
        docker_api.start(writer)
        assert docker_api.wait(writer)["StatusCode"] == 0
        doctor = cli("doctor")
        (row,) = [line for line in doctor.stdout.splitlines() if line.startswith(volume)]
        assert "packages" in row.split() and "mlc_demo==1.1.0" in row
        assert "jupyter mlcontainer extend KERNEL --pip mlc_demo==1.1.0" in row
    finally:
        docker_api.remove_container(writer, force=True)
        docker_api.remove_volume(volume)


def test_an_image_without_pip_is_refused_clearly_and_nothing_changes(
    jp_environ, jp_data_dir, docker_api, wheelhouse, derived_images
):
    assert cli("add", BARE_IMAGE, "--name", "bare", "--gpus", "none").returncode == 0
    before = (Path(jp_data_dir) / "kernels" / "bare" / "kernel.json").read_bytes()
    made = cli("extend", "bare", "--pip", "mlc-demo==1.0.0", "--wheelhouse", str(wheelhouse))
    assert made.returncode == 1
    assert "has no pip" in made.stderr and "nothing was changed" in made.stderr
    assert (Path(jp_data_dir) / "kernels" / "bare" / "kernel.json").read_bytes() == before
    assert derived_images() == []

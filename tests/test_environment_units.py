"""Pure unit tests of a kernel's versions (core/environments.py) and of extend's pieces that
need no engine (the build script, the request's checks, notebooks' recorded differences)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.cli.environments import environment_differences
from jupyter_mlcontainer.core import environments as envs
from jupyter_mlcontainer.core.exceptions import ConfigurationError
from jupyter_mlcontainer.kernel.extend import ExtendRequest, build_script


def spec(image: str = "reg/team/py@sha256:" + "1" * 64) -> dict:
    return {
        "argv": ["python"],
        "metadata": {
            "kernel_provisioner": {"provisioner_name": "mlcontainer", "config": {"image": image}},
            "jupyter_mlcontainer": {"source": "reg/team/py:3.11", "image_id": "sha256:aa"},
        },
    }


LOCK = (
    "mlc-demo==1.1.0 \\\n    --hash=sha256:abc\n"
    "numpy==2.0.0 \\\n    --hash=sha256:def\n"
    "rich[jupyter]==13.0 ; python_version >= '3.8' \\\n    --hash=sha256:123\n"
)


def test_a_kernelspec_without_history_has_one_version():
    (only,) = envs.history(spec())
    assert (only.number, only.image, only.image_id) == (
        1,
        spec()["metadata"]["kernel_provisioner"]["config"]["image"],
        "sha256:aa",
    )
    assert envs.current(spec()) == only and only.summary() == "as added"


def test_versions_are_added_made_current_and_rolled_back():
    first = envs.with_first_version(spec(), "2026-12-01T10:00:00Z", "ana")
    v2 = envs.Version(
        0, "reg/team/py@sha256:" + "2" * 64, "sha256:bb", added=("mlc-demo==1.1.0",), parent=1
    )
    second = envs.with_added_version(first, v2)
    assert envs.current(second).number == 2
    assert second["metadata"]["kernel_provisioner"]["config"]["image"] == v2.image
    # The same image again is that version made current, not a third one.
    back = envs.with_current(second, 1)
    assert envs.current(envs.with_added_version(back, v2)).number == 2
    assert [v.number for v in envs.history(envs.with_added_version(back, v2))] == [1, 2]
    assert envs.rollback_target(second, None).number == 1
    assert (
        back["metadata"]["kernel_provisioner"]["config"]["image"]
        == first["metadata"]["kernel_provisioner"]["config"]["image"]
    )
    with pytest.raises(LookupError, match="no version 7"):
        envs.with_current(second, 7)
    with pytest.raises(LookupError, match="first"):
        envs.rollback_target(first, None)
    assert second["metadata"]["jupyter_mlcontainer"]["source"] == "reg/team/py:3.11"  # kept


def test_locks_pins_and_keys():
    assert envs.lock_pins(LOCK) == {"mlc-demo": "1.1.0", "numpy": "2.0.0", "rich": "13.0"}
    assert envs.lock_pins(envs.lock_without(LOCK, ["NumPy"])) == {
        "mlc-demo": "1.1.0",
        "rich": "13.0",
    }
    assert "def" not in envs.lock_without(LOCK, ["numpy"])  # its hash lines go with it
    reordered = "\n".join(reversed(LOCK.splitlines()))
    assert envs.extend_key("sha256:a", LOCK, ["x"]) == envs.extend_key("sha256:a", reordered, ["x"])
    assert envs.extend_key("sha256:a", LOCK, []) != envs.extend_key("sha256:b", LOCK, [])
    assert envs.requirement_name("Rich[jupyter]>=13 # pretty") == "rich"
    assert envs.requirement_name("-e .") is None


def test_drift_from_a_containers_file_changes():
    site = "/opt/venv/lib/python3.11/site-packages"
    changes = [
        {"Path": f"{site}/mlc_demo-1.1.0.dist-info", "Kind": 1},
        {"Path": f"{site}/mlc_demo-1.1.0.dist-info/RECORD", "Kind": 1},
        {"Path": f"{site}/numpy-1.26.0.dist-info", "Kind": 2},
        {"Path": f"{site}/numpy-2.0.0.dist-info", "Kind": 1},
        {"Path": f"{site}/six-1.16.0.dist-info", "Kind": 2},
        {"Path": "/tmp/x-1.0.dist-info", "Kind": 1},
    ]
    drift = envs.drift(changes)
    assert drift.added == {"mlc-demo": "1.1.0"}
    assert drift.changed == {"numpy": ("1.26.0", "2.0.0")}
    assert drift.removed == {"six": "1.16.0"}
    assert envs.PackageDiff.from_json(drift.to_json()) == drift
    message = envs.describe_drift(drift, "mlc-py")
    assert "extend mlc-py --pip mlc-demo==1.1.0" in message
    assert not envs.drift([])


def test_extend_requests_are_checked_before_any_work(tmp_path):
    for bad in (("-e .",), ("https://x/y.whl",), ("./local",)):
        with pytest.raises(ConfigurationError, match="index packages"):
            ExtendRequest(bad).check()
    with pytest.raises(ConfigurationError, match="Nothing to add"):
        ExtendRequest().check()
    with pytest.raises(ConfigurationError, match="not a Debian package"):
        ExtendRequest(apt=("graph viz",)).check()
    with pytest.raises(ConfigurationError, match="not a folder"):
        ExtendRequest(("x",), wheelhouse=str(tmp_path / "none")).check()
    ExtendRequest(("rich>=13", "mlc-demo==1.1.0")).check()


def test_the_build_script_installs_offline_with_hashes():
    script = build_script("/opt/venv/bin/python3", True, ())
    assert "--require-hashes" in script and "--no-index" in script and "apt" not in script
    with_apt = build_script("python3", False, ("graphviz",))
    assert "apt-get install" in with_apt and "graphviz" in with_apt and "pip" not in with_apt
    assert "has no apt-get" in with_apt


def test_two_notebooks_recorded_environments_differ():
    a = {"kernel_name": "k", "version": 1, "digest": "r@sha256:1"}
    b = {"kernel": "k", "version": 2, "digest": "r@sha256:2", "drift": {"added": {"tqdm": "4"}}}
    lines = environment_differences(a, b)
    assert lines == [
        "version: 1 → 2",
        "image: r@sha256:1 → r@sha256:2",
        "installed in the kernel: + tqdm==4",
    ]
    assert environment_differences(a, dict(a)) == []


def test_an_extend_never_undoes_a_change_made_meanwhile(tmp_path):
    import json

    from jupyter_mlcontainer.core.kernelspec import InstalledSpec
    from jupyter_mlcontainer.kernel.extend import ExtendError, unchanged_since, writable

    folder = tmp_path / "team"
    folder.mkdir()
    started = envs.with_added_version(spec(), envs.Version(number=0, image="reg/team/py@x"))
    (folder / "kernel.json").write_text(json.dumps(started))
    installed = InstalledSpec("team", folder, started)
    writable(installed)  # a folder this user may write: no refusal
    assert unchanged_since(installed, envs.current(started)) == started
    # Meanwhile someone rolled it back (CLI, another server): the extend must not undo it.
    (folder / "kernel.json").write_text(json.dumps(envs.with_current(started, 1)))
    with pytest.raises(ExtendError, match="changed while it was being extended"):
        unchanged_since(installed, envs.current(started))


async def test_a_refused_push_pins_the_new_version_by_its_image_id():
    from jupyter_mlcontainer.core.exceptions import ImagePullError
    from jupyter_mlcontainer.kernel.extend import _pin

    class Refusing:  # only the verb _pin uses: an upstream repository nobody here may push to
        async def push_image(self, image_id: str, repository: str, tag: str) -> str:
            raise ImagePullError(f"Could not push the new image to {repository!r}: denied.")

    said: list[str] = []
    parent = "docker.io/library/python@sha256:" + "2" * 64
    pinned, pushed = await _pin(Refusing(), parent, "sha256:" + "3" * 64, "k" * 16, said.append)
    assert (pinned, pushed) == ("sha256:" + "3" * 64, False)
    assert "runs on this engine only" in said[-1] and "denied" in said[-1]


def test_the_build_archive_is_a_file_owned_by_root(tmp_path):
    import tarfile

    from jupyter_mlcontainer.kernel.extend import _archive

    archive = _archive("", ExtendRequest(apt=("graphviz",)), {}, tmp_path)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"mlc-extend", "mlc-extend/lock.txt", "mlc-extend/wheels"}
    assert all(m.uid == 0 and m.mode in (0o755, 0o644) for m in members.values())

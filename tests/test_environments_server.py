"""A kernelspec's environment versions through a real Jupyter server (issue 20): the versions,
extend with its progress events, rollback, drift in the kernel details and in saved notebooks,
and "Run as recorded"."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from tornado.escape import json_decode
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.core import environments as envs
from jupyter_mlcontainer.server.environments import SCHEMA_ID

from .conftest import IMAGE, containers_of
from .servers import run_code
from .wheels import make_wheel

pytestmark = pytest.mark.engine
PACKAGE = "mlc-probe-pkg"


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    folder = tmp_path / "wheelhouse"
    make_wheel(folder, PACKAGE, "1.0")
    return folder


@pytest.fixture
def jp_server_config(notebook_dir: Path, wheelhouse: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "root_dir": str(notebook_dir),
            "jpserver_extensions": {"jupyter_mlcontainer": True},
        },
        "MLContainerExtension": {
            "reap_orphans": False,
            "extend_wheelhouse": str(wheelhouse),
            "drift_interval": 1,
        },
        # No ready kernels of a current version still running when the test removes its image.
        "MLContainerPool": {"size": 0},
    }


@pytest.fixture
def derived_images(docker_api: Any, jp_kernel_dir: Path) -> Any:
    """Remove the images this test's extends made: its kernelspecs' versions after the first
    (only those: other sessions may be extending on the same engine)."""
    yield
    for kernel_json in Path(jp_kernel_dir).glob("*/kernel.json"):
        for version in envs.history(json.loads(kernel_json.read_text())):
            if version.parent is not None and version.image_id:
                with contextlib.suppress(docker.errors.NotFound):
                    docker_api.remove_image(version.image_id, force=True)


async def get(jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    response = await jp_fetch(*parts, **kwargs)
    return json_decode(response.body) if response.body else None


async def post(jp_fetch: Any, *parts: str, body: Any) -> Any:
    return await get(jp_fetch, *parts, method="POST", body=json.dumps(body))


async def status_of(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*parts, **kwargs)
    assert info.value.response is not None
    return info.value.code, info.value.response.body.decode()


async def add_kernelspec(jp_fetch: Any, name: str) -> None:
    body = {"image": IMAGE, "name": name, "gpus": "none"}
    await post(jp_fetch, "mlcontainer", "kernelspecs", body=body)


async def extend_events(ws: Any, extend_id: str, timeout: float = 180) -> list[dict[str, Any]]:
    """The extend's events up to its end."""
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        while True:
            event = json.loads(await ws.read_message())
            if event.get("schema_id") != SCHEMA_ID or event.get("id") != extend_id:
                continue
            seen.append(event)
            if event["status"] != "running":
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def test_versions_extend_rollback_and_run_as_recorded(
    jp_fetch, jp_ws_fetch, jp_kernel_dir, notebook_dir, docker_api, derived_images
):
    await add_kernelspec(jp_fetch, "mlc-env")
    versions = await get(jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "versions")
    assert versions["name"] == "mlc-env" and versions["current"] == 1
    (first,) = versions["versions"]

    ws = await jp_ws_fetch("api", "events", "subscribe")
    body = {"pip": [f"{PACKAGE}==1.0"], "author": "mallory"}
    started = await jp_fetch(
        "mlcontainer", "kernelspecs", "mlc-env", "extend", method="POST", body=json.dumps(body)
    )
    assert started.code == 202
    extend_id = json_decode(started.body)["id"]
    code, text = await status_of(  # one at a time per kernelspec
        jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "extend", method="POST",
        body=json.dumps(body),
    )  # fmt: skip
    assert code == 409 and "being extended" in text
    events = await extend_events(ws, extend_id)
    ws.close()
    end = events[-1]
    assert end["status"] == "done", events
    assert end["version"]["number"] == 2 and end["version"]["added"] == [f"{PACKAGE}==1.0"]
    assert any(e["line"].startswith("Resolving") for e in events)
    state = await get(jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "extend")
    assert state["status"] == "done" and state["lines"]

    versions = await get(jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "versions")
    assert versions["current"] == 2 and len(versions["versions"]) == 2
    second = versions["versions"][1]
    # The server's user (pytest-jupyter's token makes up a name per request), not the body's.
    assert second["author"] and second["author"] != "mallory"

    # Run as recorded: the notebook's next kernel starts version 1's image.
    target = {"path": "old.ipynb", "kernel_name": "mlc-env", "image": first["image"]}
    chosen = await post(jp_fetch, "mlcontainer", "as-recorded", body=target)
    assert chosen["number"] == 1
    not_ours = {**target, "image": "python:3.12"}
    code, text = await status_of(
        jp_fetch, "mlcontainer", "as-recorded", method="POST", body=json.dumps(not_ours)
    )
    assert code == 400 and "--as-recorded" in text
    session = {"path": "old.ipynb", "type": "notebook", "name": "old.ipynb",
               "kernel": {"name": "mlc-env"}}  # fmt: skip
    made = await post(jp_fetch, "api", "sessions", body=session)
    kernel_id = made["kernel"]["id"]
    try:
        (container,) = containers_of(docker_api, kernel_id)
        assert container["ImageID"] == first["image_id"] != second["image_id"]
    finally:
        await jp_fetch("api", "sessions", made["id"], method="DELETE")
    forgotten = await jp_fetch(
        "mlcontainer", "as-recorded", method="DELETE",
        params={"path": "old.ipynb", "kernel_name": "mlc-env"},
    )  # fmt: skip
    assert forgotten.code == 204

    rolled = await post(jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "rollback", body={})
    assert rolled["current"] == 1
    versions = await get(jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "versions")
    assert versions["current"] == 1
    code, text = await status_of(
        jp_fetch, "mlcontainer", "kernelspecs", "mlc-env", "rollback", method="POST",
        body=json.dumps({"version": 9}),
    )  # fmt: skip
    assert code == 400 and "no version 9" in text


async def test_a_failed_extend_names_the_package_and_changes_nothing(
    jp_fetch, jp_ws_fetch, jp_kernel_dir, derived_images
):
    await add_kernelspec(jp_fetch, "mlc-env-bad")
    kernel_json = Path(jp_kernel_dir) / "mlc-env-bad" / "kernel.json"
    before = kernel_json.read_bytes()
    ws = await jp_ws_fetch("api", "events", "subscribe")
    started = await post(
        jp_fetch, "mlcontainer", "kernelspecs", "mlc-env-bad", "extend",
        body={"pip": ["mlc-not-in-the-wheelhouse==9.9"]},
    )  # fmt: skip
    end = (await extend_events(ws, started["id"]))[-1]
    ws.close()
    assert end["status"] == "error"
    assert "mlc-not-in-the-wheelhouse" in end["message"]
    assert any("mlc-not-in-the-wheelhouse" in p for p in end["packages"]), end
    assert kernel_json.read_bytes() == before


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"pip": "tqdm"}, "`pip` must be a list of strings"),
        ({"pip": [3]}, "`pip` must be a list of strings"),
        ({"pip": ["-e ."]}, "pip options are not accepted"),
        ({"pip": ["--index-url=https://evil.example/simple"]}, "pip options"),
        ({"pip": ["tqdm @ https://evil.example/tqdm.whl"]}, "URLs are not accepted"),
        ({"pip": ["./tqdm-4.66.5-py3-none-any.whl"]}, "a path or a URL is not accepted"),
        ({"pip": [], "apt": []}, "Nothing to add"),
        ({"apt": ["curl; rm -rf /"]}, "is not a Debian package name"),
        # this server installs only from its wheelhouse (extend_wheelhouse)
        ({"apt": ["graphviz"]}, "only from its wheelhouse"),
    ],
)
async def test_bad_extend_bodies_are_refused(jp_fetch, body, words):
    await add_kernelspec(jp_fetch, "mlc-env-400")
    code, text = await status_of(
        jp_fetch, "mlcontainer", "kernelspecs", "mlc-env-400", "extend", method="POST",
        body=json.dumps(body),
    )  # fmt: skip
    assert code == 400 and words in text


async def test_unknown_kernelspecs_and_bad_versions(jp_fetch):
    code, _ = await status_of(jp_fetch, "mlcontainer", "kernelspecs", "nope", "versions")
    assert code == 404
    code, text = await status_of(
        jp_fetch, "mlcontainer", "kernelspecs", "nope", "rollback", method="POST",
        body=json.dumps({"version": "two"}),
    )  # fmt: skip
    assert code == 400 and "version number" in text


async def test_drift_in_kernel_details_and_saved_notebooks(
    jp_fetch, jp_ws_fetch, kernelspec, policy, notebook_dir, wheelhouse
):
    policy(allow_root=True)  # a root kernel may pip install into the image's own site-packages
    name = kernelspec("mlc-drift", uid=0, gid=0)
    # Only the notebook's folder is mounted in the kernel's container: the wheel goes there.
    make_wheel(notebook_dir / "wheels", PACKAGE, "1.0")
    (notebook_dir / "wheels").chmod(0o755)
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    await jp_fetch("api", "contents", "drift.ipynb", method="PUT",
                   body=json.dumps({"type": "notebook", "content": nb}))  # fmt: skip
    session = {"path": "drift.ipynb", "type": "notebook", "name": "drift.ipynb",
               "kernel": {"name": name}}  # fmt: skip
    made = await post(jp_fetch, "api", "sessions", body=session)
    kernel_id = made["kernel"]["id"]
    try:
        detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id, params={"tail": "0"})
        assert detail["drift"] == {"added": {}, "removed": {}, "changed": {}}
        assert detail["drift_message"] is None
        ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
        out = await run_code(
            ws, f"%pip install --no-index --find-links {notebook_dir}/wheels {PACKAGE}", 120
        )
        ws.close()
        assert "Successfully installed" in out, out
        detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id, params={"tail": "0"})
        assert detail["drift"]["added"] == {PACKAGE: "1.0"}
        assert f"extend {name} --pip {PACKAGE}==1.0" in detail["drift_message"]

        await asyncio.sleep(1.5)  # the drift task's round (drift_interval = 1)
        await jp_fetch("api", "contents", "drift.ipynb", method="PUT",
                       body=json.dumps({"type": "notebook", "content": nb}))  # fmt: skip
        saved = json.loads((notebook_dir / "drift.ipynb").read_text())
        record = saved["metadata"]["jupyter_mlcontainer"]["environment"]
        assert record["kernel_name"] == name and "version" in record
        assert record["drift"]["added"] == {PACKAGE: "1.0"}
    finally:
        await jp_fetch("api", "sessions", made["id"], method="DELETE")

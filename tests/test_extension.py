"""The server extension's REST API against a real server, a real engine and a real registry."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import traceback
import uuid
from typing import ClassVar

import docker.errors
import pytest
from jupyter_server.auth import Authorizer
from tornado.escape import json_decode
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.docker import leases
from jupyter_mlcontainer.docker.engine import Engine
from jupyter_mlcontainer.docker.reaper import reap_orphans
from jupyter_mlcontainer.server.environments import environment_handlers
from jupyter_mlcontainer.server.handlers import default_handlers
from jupyter_mlcontainer.server.pulls import SCHEMA_ID

from .conftest import IMAGE, TEST_UID, eventually, only_in_registry

pytestmark = pytest.mark.engine


async def get(jp_fetch, *parts, **kwargs):
    response = await jp_fetch(*parts, **kwargs)
    return json_decode(response.body)


async def test_engine_status(jp_fetch):
    engine = await get(jp_fetch, "mlcontainer", "engine")
    assert engine["reachable"] is True
    assert engine["version"] and engine["api_version"]
    assert engine["engine"].startswith("Docker ") and engine["remote"] is False


@pytest.mark.no_gpu
async def test_engine_status_says_there_are_no_gpus(jp_fetch):
    engine = await get(jp_fetch, "mlcontainer", "engine")
    assert engine["gpus"]["available"] is False
    assert "no NVIDIA runtime" in engine["gpus"]["description"]


@pytest.mark.gpu
async def test_engine_status_lists_the_gpu_support(jp_fetch):
    engine = await get(jp_fetch, "mlcontainer", "engine")
    assert engine["gpus"]["available"] is True


@pytest.mark.parametrize(
    "jp_server_config",
    [{"MLContainerExtension": {"docker_host": "unix:///tmp/no-engine.sock"}}],
    indirect=True,
)
async def test_engine_unreachable_is_explained(jp_fetch):
    engine = await get(jp_fetch, "mlcontainer", "engine")
    assert engine["reachable"] is False
    assert "Cannot reach the Docker engine at unix:///tmp/no-engine.sock" in engine["error"]


async def _events_until(ws, image, statuses, timeout=120):
    seen = []

    async def read():
        while True:
            event = json.loads(await ws.read_message())
            if event.get("schema_id") != SCHEMA_ID or event.get("image") != image:
                continue
            seen.append(event)
            if event["status"] in statuses:
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def test_pull_with_progress_events_and_images(
    jp_fetch, jp_ws_fetch, docker_api, local_registry, kernelspec
):
    image = f"{local_registry}/team/python:pull-events"
    only_in_registry(docker_api, IMAGE, image)
    kernelspec("uses-it", image=image)
    before = await get(jp_fetch, "mlcontainer", "images")
    (entry,) = [k for k in before["kernelspecs"] if k["kernelspec"] == "uses-it"]
    assert entry["present"] is False
    assert entry["pullable"] is True  # only a registry has it

    ws = await jp_ws_fetch("api", "events", "subscribe")
    response = await jp_fetch(
        "mlcontainer", "images", "pull", method="POST", body=json.dumps({"image": image})
    )
    assert response.code == 202
    events = await _events_until(ws, image, {"done", "error"})
    ws.close()
    assert events[-1]["status"] == "done", events[-1]
    assert events[-1]["digest"].startswith("sha256:")
    assert any(
        e["status"] == "pulling" and e["message"].startswith(f"pulling {image}") for e in events
    )

    after = await get(jp_fetch, "mlcontainer", "images")
    (entry,) = [k for k in after["kernelspecs"] if k["kernelspec"] == "uses-it"]
    assert entry["present"] is True
    assert entry["pullable"] is True  # it came from a registry: "Pull again" works
    assert any(image in i["tags"] for i in after["images"])
    pulls = await get(jp_fetch, "mlcontainer", "images", "pull")
    assert {"image": image, "status": "done"}.items() <= next(
        p for p in pulls["pulls"] if p["image"] == image
    ).items()


async def test_images_built_locally_are_not_pullable(jp_fetch, docker_api, kernelspec):
    inspect = docker_api.inspect_image(IMAGE)
    image_id = inspect["Id"]
    # Pushes of other tests may give it digests of *other* repositories: they do not count.
    repo = IMAGE.rsplit(":", 1)[0]
    assert not [d for d in inspect["RepoDigests"] if d.startswith(repo + "@")]
    kernelspec("by-tag", image=IMAGE)
    kernelspec("by-id", image=image_id)  # what `add` pins a local-only image to
    kernelspec("missing", image="nobody/nothing:1")
    listed = await get(jp_fetch, "mlcontainer", "images")
    entries = {k["kernelspec"]: k for k in listed["kernelspecs"]}
    assert {k: (e["present"], e["pullable"]) for k, e in entries.items()} == {
        "by-tag": (True, False),
        "by-id": (True, False),
        "missing": (False, True),
    }


async def test_failed_pull_is_reported(jp_fetch, jp_ws_fetch):
    image = "127.0.0.1:9/nobody/nothing:1"
    ws = await jp_ws_fetch("api", "events", "subscribe")
    await jp_fetch(
        "mlcontainer", "images", "pull", method="POST", body=json.dumps({"image": image})
    )
    events = await _events_until(ws, image, {"done", "error"})
    ws.close()
    assert events[-1]["status"] == "error"
    assert "Could not pull image" in events[-1]["message"]
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "images", "pull", method="POST", body="{}")
    assert info.value.code == 400


async def _start_session(jp_fetch, kernel_name, path):
    body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": kernel_name}}
    session = await get(jp_fetch, "api", "sessions", method="POST", body=json.dumps(body))
    return session["kernel"]["id"]


async def test_kernel_container_details(jp_serverapp, jp_fetch, kernelspec, docker_api):
    kernel_id = await _start_session(
        jp_fetch, kernelspec("detail", mem_limit="512m"), "detail.ipynb"
    )
    kernels = await get(jp_fetch, "mlcontainer", "kernels")
    assert [k["kernel_id"] for k in kernels["kernels"]] == [kernel_id]
    detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    assert detail["image"] == IMAGE
    assert detail["state"] == "running"
    assert detail["gpus_granted"] == "no GPU"
    assert detail["resources"]["memory_bytes"] > 1_000_000
    assert detail["resources"]["memory_limit_bytes"] == 512 * 2**20
    assert "[IPKernelApp]" in detail["log_tail"]  # the container's own output
    assert detail["last_exit"] is None
    assert detail["display_name"] == "Container detail"

    old = detail["container_id"]
    docker_api.kill(old)  # it dies; the server's restarter brings it back

    async def death():
        seen = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
        return seen if seen["last_exit"] else None

    detail = await eventually(death, "the kernel's death is reported", timeout=20)
    assert "SIGKILL" in detail["last_exit"]["reason"]
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    # Let the restart finish: deleting a restarting kernel trips jupyter_client.
    await eventually(
        lambda: manager.ready.done() and manager.provisioner.container_id not in (None, old),
        "the restarter brought the kernel back in a new container",
    )
    detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    assert detail["state"] == "running"

    local = await get(jp_fetch, "api", "kernels", method="POST", body=json.dumps({"name": "echo"}))
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "kernels", local["id"])
    assert info.value.code == 404
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    await jp_fetch("api", "kernels", local["id"], method="DELETE")


async def test_kernel_list_costs_one_engine_call(jp_fetch, jp_serverapp, kernelspec, monkeypatch):
    first = await _start_session(jp_fetch, kernelspec("first"), "first.ipynb")
    second = await _start_session(jp_fetch, kernelspec("second", mem_limit="256m"), "second.ipynb")
    for kernel_id in (first, second):  # what each start learns in the background is learnt
        learning = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.details_task
        if learning is not None:
            await learning
    calls: list[str] = []
    original = Engine.call

    async def counted(self, what, fn, *args, **kwargs):
        # The handlers' calls only: a kernel's restarter may poll its container meanwhile.
        if any(f.filename.endswith("server/handlers.py") for f in traceback.extract_stack()):
            calls.append(what)
        return await original(self, what, fn, *args, **kwargs)

    monkeypatch.setattr(Engine, "call", counted)
    kernels = await get(jp_fetch, "mlcontainer", "kernels")
    assert calls == ["list containers"]
    calls.clear()
    status = await get(jp_fetch, "mlcontainer", "kernels", first, params={"tail": "0"})
    assert status["log_tail"] == "" and status["resources"]["memory_bytes"]
    assert not [what for what in calls if "log" in what]  # what the status bar asks for
    monkeypatch.undo()
    by_id = {k["kernel_id"]: k for k in kernels["kernels"]}
    assert set(by_id) == {first, second}
    for kernel in by_id.values():
        assert kernel["state"] == "running"
        assert kernel["status"].startswith("Up ")
        assert kernel["last_exit"] is None
    assert by_id[second]["mem_limit"] == "256m"
    for kernel_id in (first, second):
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_requested_restart_is_not_a_death(jp_fetch, kernelspec):
    kernel_id = await _start_session(jp_fetch, kernelspec("restarted"), "restarted.ipynb")
    before = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="{}")
    detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    assert detail["container_id"] == before["container_id"]  # restarted in its container
    assert detail["state"] == "running"
    assert detail["last_exit"] is None
    (listed,) = (await get(jp_fetch, "mlcontainer", "kernels"))["kernels"]
    assert listed["last_exit"] is None
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_cpu_samples_of_gone_kernels_are_forgotten(jp_fetch, kernelspec):
    from jupyter_mlcontainer.server.handlers import KernelHandler

    kernel_id = await _start_session(jp_fetch, kernelspec("sampled"), "sampled.ipynb")
    detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    assert detail["container_id"] in KernelHandler._previous_cpu
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    other = await _start_session(jp_fetch, kernelspec("other"), "other.ipynb")
    await get(jp_fetch, "mlcontainer", "kernels", other)
    assert detail["container_id"] not in KernelHandler._previous_cpu
    await jp_fetch("api", "kernels", other, method="DELETE")


async def test_notebook_saved_with_a_container_kernel_records_the_image(
    jp_fetch, kernelspec, notebook_dir, docker_api
):
    kernel_id = await _start_session(jp_fetch, kernelspec("recorded"), "rec.ipynb")

    async def image_details():
        return (await get(jp_fetch, "mlcontainer", "kernels", kernel_id))["image_details"]

    await eventually(image_details, "the kernel's image details are known", timeout=5)
    notebook = {"type": "notebook", "format": "json", "content": {
        "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}  # fmt: skip
    await jp_fetch("api", "contents", "rec.ipynb", method="PUT", body=json.dumps(notebook))
    saved = json.loads((notebook_dir / "rec.ipynb").read_text())
    environment = saved["metadata"]["jupyter_mlcontainer"]["environment"]
    assert environment["image"] == IMAGE
    assert environment["image_id"] == docker_api.inspect_image(IMAGE)["Id"]
    assert environment["kernel_name"] == "recorded"
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_create_kernelspec_from_the_api(jp_fetch, jp_kernel_dir):
    body = {"image": IMAGE, "name": "via-api", "gpus": "none", "mem_limit": "2g"}
    response = await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    assert response.code == 201
    created = json_decode(response.body)
    assert created["name"] == "via-api" and created["probe"]["ipykernel"] == "7.4.0"
    specs = await get(jp_fetch, "api", "kernelspecs")
    assert "via-api" in specs["kernelspecs"]
    listed = await get(jp_fetch, "mlcontainer", "kernelspecs")
    (spec,) = [s for s in listed["kernelspecs"] if s["name"] == "via-api"]
    assert spec["config"]["mem_limit"] == "2g"
    for bad, code, words in (
        (body, 409, "exists"),
        ({"image": IMAGE, "name": "Bad Name"}, 400, "invalid kernel name"),
        ({"image": ""}, 400, "No image given"),
        ({"image": IMAGE, "colour": "red"}, 400, "unknown fields"),
        ({"image": "127.0.0.1:9/none:1"}, 500, "Could not pull image"),
    ):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(bad))
        assert info.value.code == code
        assert words in info.value.response.body.decode()


async def test_every_handler_requires_authentication(jp_serverapp, http_server_client, jp_base_url):
    checked = 0
    for pattern, handler in default_handlers + environment_handlers:
        assert handler.auth_resource == "mlcontainer"
        path = pattern.replace(r"(?P<kernel_id>[\w-]+)", "00000000-0000-0000-0000-000000000000")
        path = path.replace(r"(?P<name>[\w.-]+)", "some-kernel")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method.lower() not in vars(handler):
                continue
            body = "{}" if method in ("POST", "PUT", "PATCH") else None
            response = await http_server_client.fetch(
                jp_base_url.rstrip("/") + path, method=method, body=body, raise_error=False
            )  # no token, no cookie
            assert response.code in (401, 403), (
                f"{method} {path} answered {response.code} without credentials"
            )
            checked += 1
    assert checked >= 8


async def test_only_containers_of_expired_leases_are_reaped(jp_environ, docker_api):
    folder = leases.lease_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # A process that died: its lease file is there, nobody holds its lock.
    (folder / "crashed-instance.lease").write_text("{}")
    # A process that lives: it holds its lease's lock.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"f = open({str(folder / 'live-instance.lease')!r}, 'w')\n"
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"

    def container(instance):
        own = {labels.MANAGED: "true", labels.SERVER_INSTANCE: instance}
        return docker_api.create_container(IMAGE, command=["true"], labels=own)["Id"]

    orphan = container("crashed-instance")
    alive = container("live-instance")
    elsewhere = container("an-instance-of-another-runtime-dir")  # no lease file here
    try:
        removed = await reap_orphans(Engine.for_url(None), logging.getLogger("test"))
        ids = {c["Id"] for c in docker_api.containers(all=True)}
        assert orphan not in ids
        assert {alive, elsewhere} <= ids
        assert len(removed) == 1
        assert not (folder / "crashed-instance.lease").exists()  # released once reaped
    finally:
        holder.kill()
        holder.wait()
        for container_id in (orphan, alive, elsewhere):
            try:
                docker_api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass  # the reaper removed it


@pytest.mark.parametrize(
    "jp_server_config", [{"MLContainerExtension": {"prepull": True}}], indirect=True
)
async def test_prepull_fetches_kernelspec_images_at_startup(
    jp_serverapp, jp_fetch, kernelspec, docker_api, local_registry
):
    image = f"{local_registry}/team/python:prepull"
    only_in_registry(docker_api, IMAGE, image)
    kernelspec("needs-prepull", image=image)
    await jp_serverapp._post_start()  # what the server does once its event loop runs

    async def finished():
        pulls = await get(jp_fetch, "mlcontainer", "images", "pull")
        status = {p["image"]: p["status"] for p in pulls["pulls"]}.get(image)
        return status if status in ("done", "error") else None

    assert await eventually(finished, f"the pre-pull of {image} ended", timeout=60) == "done"
    assert docker_api.inspect_image(image)["RepoDigests"]


async def test_instance_containers_are_removed_at_shutdown(docker_api):
    from jupyter_mlcontainer.docker.reaper import reap_instance

    own = {labels.MANAGED: "true", labels.SERVER_INSTANCE: labels.server_instance_id()}
    leftover = docker_api.create_container(IMAGE, command=["true"], labels=own)["Id"]
    removed = await reap_instance(Engine.for_url(None), logging.getLogger("test"))
    assert leftover not in {c["Id"] for c in docker_api.containers(all=True)}
    assert len(removed) == 1


class GrantsOnly(Authorizer):
    """Grants exactly the (action, resource) pairs in :attr:`granted`."""

    granted: ClassVar[set[tuple[str, str]]] = set()

    def is_authorized(self, handler, user, action, resource):
        return (action, resource) in self.granted


@pytest.mark.parametrize(
    "jp_server_config", [{"ServerApp": {"authorizer_class": GrantsOnly}}], indirect=True
)
async def test_making_a_kernelspec_needs_the_right_to_run_kernels(jp_fetch, jp_kernel_dir):
    body = json.dumps({"image": IMAGE, "name": "python3", "replace": True, "gpus": "none"})
    GrantsOnly.granted = {("read", "mlcontainer"), ("write", "mlcontainer")}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=body)
    assert info.value.code == 403
    assert "execute:kernels" in info.value.response.body.decode()
    assert not (jp_kernel_dir / "python3").exists()
    # With it, the request is judged on its merits.
    GrantsOnly.granted |= {("execute", "kernels")}
    body = json.dumps({"image": IMAGE, "name": "granted", "gpus": "none"})
    created = await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=body)
    assert created.code == 201


@pytest.mark.parametrize("tail", ["-1", "lots", "1.5"])
async def test_a_bad_tail_is_a_clear_400(jp_fetch, kernelspec, tail):
    kernel_id = await _start_session(jp_fetch, kernelspec("tails"), f"tail{tail}.ipynb")
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "kernels", kernel_id, params={"tail": tail})
    assert info.value.code == 400
    assert "tail must be a number of lines" in info.value.response.body.decode()
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_details_while_the_container_is_removed_never_fail(jp_fetch, kernelspec, docker_api):
    kernel_id = await _start_session(jp_fetch, kernelspec("going"), "going.ipynb")
    detail = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    removal = asyncio.get_running_loop().run_in_executor(
        None, lambda: docker_api.remove_container(detail["container_id"], force=True)
    )
    states = set()
    while not removal.done():  # every answer during the engine's teardown is a 200
        states.add((await get(jp_fetch, "mlcontainer", "kernels", kernel_id))["state"])
    await removal
    states.add((await get(jp_fetch, "mlcontainer", "kernels", kernel_id))["state"])
    assert states <= {"running", "removing", "exited", "gone"}, states
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_volumes_list_home_caches_with_sizes(jp_fetch, kernelspec, notebook_dir):
    kernel_id = await _start_session(jp_fetch, kernelspec("caches"), "caches.ipynb")
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    found = (await get(jp_fetch, "mlcontainer", "volumes"))["volumes"]
    homes = {v["name"]: v for v in found if v["kind"] == "home"}
    home = homes[f"mlc-home-{TEST_UID}-mlcontainer-python"]
    assert home["image"] == IMAGE
    assert home["uid"] == str(TEST_UID)
    assert home["size"] is not None
    assert home["needed"] is True  # the kernelspec of this test uses its image


@pytest.fixture
def home_volumes(docker_api):
    """Make HOME volumes labelled as the provisioner labels them; removed at teardown."""
    made: list[str] = []

    def make(uid: int, image: str = "team/uitest:1") -> str:
        name = f"mlc-home-{uid}-uitest-{uuid.uuid4().hex[:8]}"
        docker_api.create_volume(
            name,
            labels={
                labels.MANAGED: "true",
                labels.PURPOSE: labels.PURPOSE_HOME,
                labels.HOME_UID: str(uid),
                labels.HOME_IMAGE: image,
            },
        )
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            docker_api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass


async def test_volumes_list_only_the_users_own_homes(jp_fetch, home_volumes):
    # The server's user is the uid its kernels run as: its own, or as root the owner of its
    # root dir (notebook_dir belongs to TEST_UID).
    own_uid = os.getuid() or TEST_UID
    other_uid = own_uid + 1
    own = home_volumes(own_uid)
    other = home_volumes(other_uid)
    found = (await get(jp_fetch, "mlcontainer", "volumes"))["volumes"]
    names = {v["name"] for v in found}
    assert own in names
    assert other not in names
    assert {v["uid"] for v in found if v["kind"] == "home"} == {str(own_uid)}


@pytest.mark.parametrize(
    "jp_server_config",
    [{"MLContainerProvisioner": {"uid": 2468}}],
    indirect=True,
)
async def test_volumes_follow_the_configured_kernel_uid(jp_fetch, home_volumes):
    configured = home_volumes(2468)
    server_user = home_volumes(os.getuid() or TEST_UID)
    names = {v["name"] for v in (await get(jp_fetch, "mlcontainer", "volumes"))["volumes"]}
    assert configured in names
    assert server_user not in names


async def test_a_taken_name_is_answered_in_the_api_terms(jp_fetch, jp_kernel_dir, kernelspec_file):
    body = {"image": IMAGE, "name": "taken", "gpus": "none"}
    await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    assert info.value.code == 409
    answer = json_decode(info.value.response.body)
    assert {"reason": "name-taken", "name": "taken", "replaceable": True}.items() <= answer.items()
    assert "--" not in answer["message"]  # the CLI's flags mean nothing to an API client
    assert "`replace`" in answer["message"]
    body["replace"] = True
    replaced = await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    assert replaced.code == 201

    kernelspec_file("hand-written")  # not made by `add`: never replaced
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "mlcontainer", "kernelspecs", method="POST",
            body=json.dumps({"image": IMAGE, "name": "hand-written", "replace": True}),
        )  # fmt: skip
    answer = json_decode(info.value.response.body)
    assert info.value.code == 409
    assert answer["replaceable"] is False
    assert "--" not in answer["message"]


@pytest.mark.no_gpu
async def test_a_gpu_kernel_made_for_an_engine_without_gpus_comes_with_a_warning(
    jp_fetch, jp_kernel_dir
):
    body = {"image": IMAGE, "name": "wants-gpus", "gpus": "all"}
    response = await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    created = json_decode(response.body)
    (warning,) = created["warnings"]
    assert "all GPUs" in warning and "will not start here" in warning
    assert "--gpus" not in warning
    body = {"image": IMAGE, "name": "cpu-only", "gpus": "none"}
    response = await jp_fetch("mlcontainer", "kernelspecs", method="POST", body=json.dumps(body))
    assert json_decode(response.body)["warnings"] == []

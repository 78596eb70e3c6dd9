"""Warm pools in a real server: a start claims a ready kernel, moved into its notebook."""

from __future__ import annotations

import json
import os

import pytest
from tornado.escape import json_decode

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import TEST_GID, TEST_UID, eventually, execute

pytestmark = pytest.mark.engine

POOL = {"MLContainerPool": {"prefill": ["pooled"], "refill_delay": 0.0}}


async def get(jp_fetch, *parts, **kwargs):
    return json_decode((await jp_fetch(*parts, **kwargs)).body)


async def start_extensions(serverapp):
    """What a real server does once its loop runs (ServerApp._post_start, which pytest-jupyter
    never calls): start its extensions, and so the pool's prefill."""
    await serverapp.extension_manager.start_all_extensions()


async def ready(jp_fetch, count=1):
    async def listed():
        pool = await get(jp_fetch, "mlcontainer", "pool")
        return pool["kernels"] if len(pool["kernels"]) >= count else None

    return await eventually(listed, f"{count} ready kernel(s) in the pool", timeout=60)


async def start_session(jp_fetch, kernel_name, path):
    body = {"path": path, "type": "notebook", "name": path, "kernel": {"name": kernel_name}}
    session = await get(jp_fetch, "api", "sessions", method="POST", body=json.dumps(body))
    return session["kernel"]["id"]


async def run(manager, code):
    """Run ``code`` in the server's kernel; its output."""
    kc = manager.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        out, _ = await execute(kc, code)
    finally:
        kc.stop_channels()
    return out


@pytest.fixture
def pooled_spec(kernelspec_file, docker_api):
    """Installed before the server starts (tests name it before jp_serverapp)."""
    return kernelspec_file("pooled")


@pytest.mark.parametrize("jp_server_config", [POOL], indirect=True)
async def test_a_start_claims_a_ready_kernel_in_its_notebooks_folder(
    pooled_spec, jp_serverapp, jp_fetch, notebook_dir, docker_api
):
    await start_extensions(jp_serverapp)
    (notebook_dir / "project").mkdir()
    (notebook_dir / "data.csv").write_text("a,b\n")
    if os.getuid() == 0:  # the user's own folder, as in notebook_dir
        os.chown(notebook_dir / "project", TEST_UID, TEST_GID)
    [waiting] = await ready(jp_fetch)
    assert waiting["kernelspec"] == "pooled" and waiting["image"]
    pooled_container = waiting["container_id"]
    assert docker_api.inspect_container(pooled_container)["Config"]["Labels"][labels.POOLED]

    kernel_id = await start_session(jp_fetch, "pooled", "project/analysis.ipynb")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    assert manager.provisioner.container_id == pooled_container  # claimed, not started
    out = await run(
        manager,
        "import os; print(os.getcwd()); print(os.environ['JPY_SESSION_NAME']);"
        "print(__session__); print(open('../data.csv').read().strip()); print(os.getuid())",
    )
    cwd, session_env, session_var, data, uid = out.strip().splitlines()
    assert cwd == str(notebook_dir / "project")  # the notebook's folder, as a cold start
    assert session_env.endswith("project/analysis.ipynb") and session_var == session_env
    assert data == "a,b"  # the server's root is mounted: the notebook's neighbours are there
    assert int(uid) == TEST_UID
    # A restart keeps the claimed container and moves the new kernel process in again.
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="{}")
    assert manager.provisioner.container_id == pooled_container
    out = await run(manager, "import os; print(os.getcwd(), __session__)")
    assert out.split() == [str(notebook_dir / "project"), session_env]
    # Once claimed, never pooled again; the pool makes a new one.
    [refilled] = await ready(jp_fetch)
    assert refilled["container_id"] != pooled_container
    details = await get(jp_fetch, "mlcontainer", "kernels", kernel_id)
    assert details["container_id"] == pooled_container and details["state"] == "running"


@pytest.mark.parametrize("jp_server_config", [POOL], indirect=True)
async def test_a_ready_kernel_that_no_longer_fits_is_never_served(
    pooled_spec, kernelspec_file, jp_serverapp, jp_fetch, notebook_dir, docker_api
):
    await start_extensions(jp_serverapp)
    [waiting] = await ready(jp_fetch)
    kernelspec_file("pooled", mem_limit="300m")  # the admin changed the kernelspec meanwhile
    kernel_id = await start_session(jp_fetch, "pooled", "changed.ipynb")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    assert manager.provisioner.container_id != waiting["container_id"]
    started = docker_api.inspect_container(manager.provisioner.container_id)
    assert started["HostConfig"]["Memory"] == 300 * 2**20
    assert labels.POOLED not in started["Config"]["Labels"]

    def gone():
        ids = [c["Id"] for c in docker_api.containers(all=True)]
        return waiting["container_id"] not in ids

    await eventually(gone, "the stale ready kernel was removed")


@pytest.mark.parametrize("jp_server_config", [POOL], indirect=True)
async def test_a_server_stopping_while_a_ready_kernel_starts_leaves_nothing(
    pooled_spec, jp_serverapp, docker_api
):
    await start_extensions(jp_serverapp)
    pooled = {"label": [f"{labels.POOLED}=true", f"{labels.KERNEL_NAME}=pooled"]}

    def being_started():
        return docker_api.containers(all=True, filters=pooled)

    await eventually(being_started, "the pool's kernel container exists", timeout=60)
    pool = jp_serverapp.web_app.settings["mlcontainer"]["pool"]
    await pool.stop()  # before the kernel answers: its start finishes, then it is shut down
    await Engine.for_url(None).drain()  # the removal a shutdown leaves to the background
    assert being_started() == []
    assert pool.describe()["kernels"] == []


@pytest.fixture
def encrypted_pooled_spec(kernelspec_file, docker_api):
    return kernelspec_file("pooled", metadata={"supported_encryption": ["curve"]})


@pytest.mark.parametrize(
    "jp_server_config",
    [{**POOL, "KernelManager": {"transport_encryption": "auto"}}],
    indirect=True,
)
async def test_an_encrypted_ready_kernel_is_claimed_and_moved_in(
    encrypted_pooled_spec, jp_serverapp, jp_fetch, notebook_dir
):
    await start_extensions(jp_serverapp)
    [waiting] = await ready(jp_fetch)
    kernel_id = await start_session(jp_fetch, "pooled", "encrypted.ipynb")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    assert manager.provisioner.container_id == waiting["container_id"]
    assert manager.get_connection_info().get("curve_secretkey")
    out = await run(manager, "import os; print(os.getcwd())")
    assert out.strip() == str(notebook_dir)  # moved in over the encrypted shell channel
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


@pytest.fixture
def default_like_spec(kernelspec_file, docker_api):
    """Like the default kernel that `add` and `scripts/dev lab` make: gpus auto, CurveZMQ."""
    return kernelspec_file("auto", gpus="auto", metadata={"supported_encryption": ["curve"]})


@pytest.mark.no_gpu
@pytest.mark.parametrize(
    "jp_server_config", [{"MLContainerPool": {"refill_delay": 0.0}}], indirect=True
)
async def test_a_kernel_whose_gpus_auto_means_the_cpu_gets_a_warm_pool(
    default_like_spec, jp_serverapp, jp_fetch, notebook_dir, docker_api
):
    """On an engine without GPUs, ``gpus: auto`` runs on the CPU: its kernels are pooled like
    ``none`` (no prefill: the first start fills the pool, the next start claims from it)."""
    await start_extensions(jp_serverapp)
    first = await start_session(jp_fetch, "auto", "first.ipynb")
    [waiting] = await ready(jp_fetch)
    assert waiting["kernelspec"] == "auto"
    second = await start_session(jp_fetch, "auto", "second.ipynb")
    manager = jp_serverapp.kernel_manager.get_kernel(second)
    assert manager.provisioner.container_id == waiting["container_id"]  # claimed
    assert manager.get_connection_info().get("curve_secretkey")  # encrypted by default
    out = await run(manager, "import os; print(os.getcwd())")
    assert out.strip() == str(notebook_dir)
    for kernel_id in (first, second):
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")

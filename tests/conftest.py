"""Shared fixtures: a real Docker engine, the test images, kernelspecs, running kernels."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.docker import containers
from jupyter_mlcontainer.docker.engine import Engine

from . import leftovers
from .engines import SecondEngine, SimulatedGpuEngine
from .swarm import SwarmCluster, SwarmUnavailable

pytest_plugins = ["pytest_jupyter.jupyter_server"]
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

#: Built by scripts/images.sh (cached by tag).
IMAGE = os.environ.get("MLC_TEST_IMAGE", "mlcontainer/python:3.11")
TORCH_IMAGE = os.environ.get("MLC_TEST_TORCH_IMAGE", "mlcontainer/pytorch-cpu:2.13.0")
BARE_IMAGE = os.environ.get("MLC_TEST_BARE_IMAGE", "mlcontainer-base:bookworm")
KERNEL_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
#: A uid:gid that is not root and not the test runner's, for ownership checks.
TEST_UID, TEST_GID = 4321, 4322


@pytest.fixture(scope="session", autouse=True)
def no_temporary_files_left() -> Any:
    """Nothing new named ``mlc-…`` in the temporary folder when the session ends (set up
    first, so checked last: after the engines' own teardown); what is there is removed."""
    before = leftovers.temporary_entries()
    yield
    left = sorted(leftovers.temporary_entries() - before)
    for path in left:
        leftovers.remove_entry(path)
    if left:
        pytest.fail(f"left in the temporary folder: {', '.join(str(p) for p in left)}")


@pytest.fixture(scope="session")
def docker_api() -> Any:
    """The real engine; the session's own containers must all be gone at the end."""
    try:
        api = docker.APIClient(version="auto")
        api.ping()
    except docker.errors.DockerException as e:
        pytest.skip(f"no Docker engine ({e}): run scripts/engine.sh")
    missing = []
    for image in (IMAGE, TORCH_IMAGE, BARE_IMAGE):
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        pytest.skip(f"test images missing ({', '.join(missing)}): run scripts/images.sh")
    # Containers of this project that exist already are not the session's (another run, a
    # JupyterLab); every other one at the end was left by a test, the CLI or a subprocess
    # (`jupyter mlcontainer run`, nbconvert, a server) that the tests started.
    before = {c["Id"] for c in api.containers(all=True, filters=labels.managed_filter())}
    # Volumes, networks and images too (tests/leftovers.py): what the session makes, it removes.
    snapshot = leftovers.Snapshot.take(api)
    yield api
    Engine.for_url(None).drain_blocking()
    deadline = time.monotonic() + 10  # removals the engine has under way finish
    while True:
        stale = new_containers(api, before)
        if not stale or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for container in stale:
        # Who made it (this process or a server/CLI subprocess), and its last words.
        print(describe_container(api, container["Id"]), file=sys.stderr)
        print(f"labels: {container.get('Labels')} (this process: {os.getpid()})", file=sys.stderr)
        try:
            api.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            pass
    removed, left = leftovers.settle(api, snapshot)
    if removed:
        print(f"\nproduct caches the session made, removed: {', '.join(removed)}", file=sys.stderr)
    if left:
        leftovers.remove_leftovers(api, snapshot)
    problems = [f"{c['Names'][0]} ({c['Status']})" for c in stale] + left
    if problems:
        pytest.fail(f"left behind by the test session: {', '.join(problems)}")


def new_containers(api: Any, before: set[str]) -> list[dict[str, Any]]:
    """Containers of this project that were not in ``before`` and whose owner is not a process
    still running beside the tests (what a finished test or tool left behind)."""
    return [
        c
        for c in api.containers(all=True, filters=labels.managed_filter())
        if c["Id"] not in before and not _owned_by_another_live_process(c)
    ]


def _owned_by_another_live_process(container: dict[str, Any]) -> bool:
    """A container of a server that still runs beside the tests (a developer's JupyterLab,
    the UI tests); the processes the tests start have all exited by the session's end."""
    container_labels = container.get("Labels") or {}
    if container_labels.get(labels.SERVER_HOST) != socket.gethostname():
        return False
    pid = int(container_labels.get(labels.SERVER_PID) or 0)
    if pid in (0, os.getpid()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory, docker_api: Any) -> Any:
    """Debian's docker-registry serving on 127.0.0.1 (a real registry: pushes, digests, pulls)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    address = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the local registry did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        _forget_registry_images(docker_api, address)


def _forget_registry_images(api: Any, address: str) -> None:
    """Drop every local name under the registry's address (a new port each session, so its
    tags would otherwise pile up on the engine); the layers stay with their other names."""
    for image in api.images(all=True):
        names = (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
        for name in names:
            if name.startswith(address + "/"):
                try:  # by name, never by id: the id is shared with the images pushed
                    api.remove_image(name)
                except Exception as e:
                    print(f"could not remove {name}: {e}")


def serving(engine: Any) -> Any:
    """Start an engine of the tests' own (tests/engines.py) with the test image; yield it;
    close it whatever happens (for session fixtures: ``yield from serving(...)``)."""
    try:
        engine.start()
        engine.load(IMAGE)
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="session")
def second_engine(docker_api: Any) -> Any:
    """A second Docker engine with the test image, to stop and restart (tests/engines.py)."""
    yield from serving(SecondEngine())


@pytest.fixture(scope="session")
def gpu_engine(docker_api: Any) -> Any:
    """SIMULATED GPUs: an engine that accepts GPU requests, and a stand-in nvidia-smi that
    lists four GPUs (tests/engines.py)."""
    yield from serving(SimulatedGpuEngine())


@pytest.fixture(scope="session")
def swarm_cluster() -> Any:
    """A 3-node Docker Swarm (tests/swarm.py): a manager, a worker and a worker with SIMULATED
    GPUs, each node with the bare test image. Skips where the machine cannot run it (the
    engine guard then fails the run); fails at teardown if anything of it is left.

    It makes nothing on the suite's engine (it only reads the image from it), so it does not
    take ``docker_api`` and its session-wide leftover checks."""
    try:
        cluster = SwarmCluster()
    except SwarmUnavailable as e:
        pytest.skip(f"no test swarm: {e}")
    if subprocess.run(["docker", "image", "inspect", BARE_IMAGE], capture_output=True).returncode:
        cluster.close()
        pytest.skip(f"test image missing ({BARE_IMAGE}): run scripts/images.sh")
    try:
        cluster.start()
        cluster.load(BARE_IMAGE)
        yield cluster
    finally:
        cluster.close()
    left = cluster.leftovers()
    if left:
        pytest.fail(f"the test swarm left: {', '.join(left)}")


def push(api: Any, image: str, remote: str) -> str:
    """Tag ``image`` as ``remote``, push it, return its ``repo@sha256:…`` digest reference."""
    api.tag(image, remote)
    for line in api.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    repo = remote.rsplit(":", 1)[0]
    return next(d for d in api.inspect_image(remote)["RepoDigests"] if d.startswith(repo + "@"))


def only_in_registry(api: Any, image: str, remote: str) -> str:
    """Push ``image`` as ``remote`` and drop the local tag, so that a start must pull it."""
    digest = push(api, image, remote)
    api.remove_image(remote, force=True)  # only the tag goes; layers stay shared
    return digest


@pytest.fixture
def kernelspec(kernelspec_file: Callable[..., str], docker_api: Any) -> Callable[..., str]:
    """Write a container kernelspec for a test that runs it on the engine; returns its name."""
    return kernelspec_file


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest, notebook_dir: Path) -> dict[str, Any]:
    """A server with this package enabled, serving ``notebook_dir``; tests add sections with
    ``@pytest.mark.parametrize("jp_server_config", [{...}], indirect=True)``."""
    config: dict[str, Any] = {
        "ServerApp": {
            "root_dir": str(notebook_dir),
            "jpserver_extensions": {"jupyter_mlcontainer": True},
        },
        "MLContainerExtension": {"reap_orphans": False},
    }
    for section, values in getattr(request, "param", {}).items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture
def policy(jp_environ: None, jp_config_dir: Path) -> Callable[..., None]:
    """Set the admin policy (``mlcontainer_policy.json`` in the Jupyter config dir), as an
    admin would for every process that starts kernels."""

    def set_rules(**rules: Any) -> None:
        (Path(jp_config_dir) / "mlcontainer_policy.json").write_text(
            json.dumps({"MLContainerPolicy": rules})
        )

    return set_rules


@pytest.fixture
def kernelspec_file(jp_environ: None, jp_kernel_dir: Path) -> Callable[..., str]:
    """Write a container kernelspec (no engine needed); returns its name."""

    def make(
        name: str = "mlc",
        *,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        **config: Any,
    ) -> str:
        config.setdefault("image", IMAGE)
        config.setdefault("gpus", "none")
        config.setdefault("pull_policy", "never")
        spec = {
            "argv": argv or KERNEL_ARGV,
            "display_name": f"Container {name}",
            "language": "python",
            "env": env or {},
            "metadata": {
                **(metadata or {}),
                "kernel_provisioner": {"provisioner_name": "mlcontainer", "config": config},
            },
        }
        folder = Path(jp_kernel_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernel.json").write_text(json.dumps(spec))
        return name

    return make


@pytest.fixture
def notebook_dir(tmp_path: Path) -> Path:
    """A notebook directory owned by a non-root user, as a user's home would be."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    if os.getuid() == 0:
        os.chown(folder, TEST_UID, TEST_GID)
    return folder


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Keep each phase's report on the item, for fixtures that act on failures."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(autouse=True)
def _containers_of_a_failed_test(request: pytest.FixtureRequest, monkeypatch: Any) -> Any:
    """When an engine test fails, print the state and log of every container it removed
    (captured just before removal) and of those it left."""
    if request.node.get_closest_marker("engine") is None:
        yield
        return
    captured: dict[str, str] = {}
    real_remove = containers.remove_now

    def remove(api: Any, container_id: str) -> None:
        captured[container_id] = describe_container(api, container_id)
        real_remove(api, container_id)

    monkeypatch.setattr(containers, "remove_now", remove)
    started = int(time.time()) - 1
    yield
    reports = request.node.stash.get(_REPORTS, {})
    if not any(r.failed for r in reports.values()):
        return
    api = docker.APIClient(version="auto")
    for c in api.containers(all=True, filters=labels.managed_filter()):
        if c["Created"] >= started and c["Id"] not in captured:
            captured[c["Id"]] = describe_container(api, c["Id"])
    for text in captured.values():
        print(text, file=sys.stderr)


def describe_container(api: Any, container_id: str) -> str:
    """A container's name, state and last log lines, as text."""
    try:
        info = api.inspect_container(container_id)
        log = api.logs(container_id, tail=50).decode(errors="replace")
    except docker.errors.APIError as e:
        return f"container {container_id[:12]}: {e}"
    return (
        f"---- container {info['Name'].lstrip('/')} ({container_id[:12]}), image "
        f"{info['Config']['Image']}\nstate: {json.dumps(info['State'])}\nlog:\n{log}"
    )


def dump_container(api: Any, container_id: str | None) -> None:
    """Print a container's state and log (called when a test fails)."""
    if container_id:
        print(describe_container(api, container_id), file=sys.stderr)


@asynccontextmanager
async def running_kernel(
    kernel_name: str,
    cwd: Path | str,
    manager: type[AsyncKernelManager] = AsyncKernelManager,
    extra_arguments: list[str] | None = None,
    **manager_kwargs: Any,
) -> AsyncIterator[tuple[Any, Any]]:
    """Start a kernel, yield (manager, client); always shut it down; dump the container on error."""
    km = manager(kernel_name=kernel_name, **manager_kwargs)
    await km.start_kernel(cwd=str(cwd), extra_arguments=extra_arguments or [])
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        yield km, kc
    except BaseException:
        dump_container(
            docker.APIClient(version="auto"), getattr(km.provisioner, "container_id", None)
        )
        raise
    finally:
        kc.stop_channels()
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
        elif km.provisioner is not None:
            await km.provisioner.cleanup()


async def execute(kc: Any, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """Run ``code``; return (stdout text, reply content)."""
    chunks: list[str] = []

    def on_output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            chunks.append("\n".join(msg["content"]["traceback"]))

    reply = await kc.execute_interactive(code, output_hook=on_output, timeout=timeout)
    return "".join(chunks), reply["content"]


def containers_of(api: Any, kernel_id: str) -> list[dict[str, Any]]:
    return list(api.containers(all=True, filters={"label": [f"{labels.KERNEL_ID}={kernel_id}"]}))


async def assert_removed(api: Any, kernel_id: str) -> None:
    """After a final shutdown the container goes in the background: wait for it, then check."""
    await Engine.for_url(None).drain()
    assert containers_of(api, kernel_id) == []


async def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; return that. Fails the
    test with ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f} s, still not: {what}")
        await asyncio.sleep(0.2)


async def start_fails(name: str, cwd: Path, error: type[BaseException]) -> tuple[Any, str]:
    """Start kernel ``name``, which must fail with ``error``; return (manager, message)."""
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(error) as info:
        await km.start_kernel(cwd=str(cwd))
    return km, str(info.value)


async def wait_for_stream(kc: Any, msg_id: str, text: str, timeout: float = 30) -> None:
    """Wait until request ``msg_id`` prints ``text``: its code is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        if (
            msg["header"]["msg_type"] == "stream"
            and msg["parent_header"].get("msg_id") == msg_id
            and text in msg["content"]["text"]
        ):
            return
    msg = f"request {msg_id} did not print {text!r} within {timeout:.0f} s"
    raise TimeoutError(msg)


async def wait_for_iopub(kc: Any, timeout: float = 60) -> None:
    """After a restart, wait until IOPub carries the *new* kernel's messages.

    ``wait_for_ready`` can return on a stale IOPub message of the old kernel while the SUB
    socket is still reconnecting, and the next cell's output would be lost (JupyterLab's
    server "nudges" the same way).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = kc.kernel_info()
        try:
            while True:
                msg = await kc.get_iopub_msg(timeout=0.5)
                if msg["parent_header"].get("msg_id") == msg_id:
                    return
        except queue.Empty:  # not reconnected yet, ask again
            continue
    msg = "IOPub did not reconnect after the restart"
    raise TimeoutError(msg)

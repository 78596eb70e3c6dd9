"""DockerBackend is a Backend: every verb of the seam, typed state, and the engine's refusals
as typed errors (checked against the real engine)."""

from __future__ import annotations

import contextlib
import inspect
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import docker.errors
import pytest
import requests

from jupyter_mlcontainer.core import backend as seam
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.backend import Backend, ContainerState
from jupyter_mlcontainer.core.exceptions import (
    AddressTaken,
    CommandNotFound,
    ConfigurationError,
    Conflict,
    EngineError,
    EngineUnavailableError,
    ImageNotFoundError,
    NetworkGoneError,
    NotFound,
    PortTaken,
)
from jupyter_mlcontainer.core.plan import ContainerPlan
from jupyter_mlcontainer.docker import containers
from jupyter_mlcontainer.docker.backend import DockerBackend, state_of
from jupyter_mlcontainer.docker.engine import Engine, _explain_api_error

from .conftest import IMAGE, eventually

#: A port the test containers publish (nothing listens on it inside).
INSIDE = 8888


def _members(protocol: type) -> set[str]:
    own = {name for name in vars(protocol) if not name.startswith("_")}
    return own | set(getattr(protocol, "__annotations__", {}))


def test_every_verb_of_the_seam_with_the_same_parameters():
    for name in sorted(_members(Backend)):
        assert hasattr(DockerBackend, name), f"DockerBackend has no {name}"
        wanted = inspect.getattr_static(Backend, name, None)
        have = inspect.getattr_static(DockerBackend, name)
        if isinstance(wanted, property):
            assert isinstance(have, property), name
        elif callable(wanted):
            assert inspect.iscoroutinefunction(have) == inspect.iscoroutinefunction(wanted), name
            expected = list(inspect.signature(wanted).parameters)
            assert list(inspect.signature(have).parameters) == expected, name


def test_connecting_asks_nothing_of_the_engine(monkeypatch):
    """connect() names a backend; only a verb finds out that its address leads nowhere, so
    that doctor, list and the server extension can report it instead of failing to start."""
    monkeypatch.setenv("DOCKER_CONTEXT", "no-such-context")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(Engine, "_instances", {})  # not the engine other tests resolved
    backend = seam.connect(None)
    assert isinstance(backend, DockerBackend)
    assert seam.connect(None) == backend and hash(seam.connect(None)) == hash(backend)
    with pytest.raises(EngineUnavailableError, match="no-such-context"):
        _ = backend.remote


def test_a_backend_that_lacks_a_verb_is_refused_by_name(monkeypatch):
    class Partial:
        capabilities = seam.Capabilities()

        @classmethod
        def for_url(cls, address: str | None) -> Partial:
            return cls()

        @classmethod
        def known(cls) -> list[Partial]:
            return []

    monkeypatch.setitem(seam.BUILT_IN, "partial", f"{__name__}:Partial")
    monkeypatch.setitem(globals(), "Partial", Partial)
    seam._factory.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=r"lacks .*create"):
            seam.connect(None, kind="partial")
    finally:
        seam._factory.cache_clear()
    assert seam.missing_verbs(DockerBackend) == []


def test_state_of_an_inspect_record():
    record = {
        "Id": "abc",
        "Name": "/mlc-k-1",
        "Image": "sha256:1234",
        "Config": {"Image": "python:3.11", "Labels": {"a": "b"}},
        "State": {
            "Running": False,
            "Status": "exited",
            "ExitCode": 137,
            "OOMKilled": True,
            "Error": "",
            "StartedAt": "2024-01-01T00:00:00Z",
            "FinishedAt": "2024-01-01T00:01:00Z",
        },
        "HostConfig": {"Memory": 1 << 30, "DeviceRequests": [{"Count": -1}]},
    }
    assert state_of(record) == ContainerState(
        id="abc",
        name="mlc-k-1",
        image="python:3.11",
        image_id="sha256:1234",
        running=False,
        status="exited",
        exit_code=137,
        oom_killed=True,
        started_at="2024-01-01T00:00:00Z",
        finished_at="2024-01-01T00:01:00Z",
        labels={"a": "b"},
        device_requests=[{"Count": -1}],
        memory_limit=1 << 30,
    )
    # What an engine leaves out (null HostConfig, no State yet) is the defaults.
    bare = state_of({"Id": "x", "HostConfig": None})
    assert (bare.running, bare.exit_code, bare.labels, bare.memory_limit) == (False, 0, {}, 0)


def _api_error(status: int, text: str, kind: type = docker.errors.APIError) -> Any:
    response = requests.Response()
    response.status_code = status
    return kind("x", response=response, explanation=text)


@pytest.mark.parametrize(
    ("status", "text", "typed"),
    [
        (500, "Bind for 127.0.0.1:32768 failed: port is already allocated", PortTaken),
        (
            500,
            "driver failed programming external connectivity on endpoint x (y): Error starting "
            "userland proxy: listen tcp4 127.0.0.1:39671: bind: address already in use",
            PortTaken,
        ),
        (403, "Address already in use", AddressTaken),
        (500, "IPAM error: requested ip address 10.89.0.5 is already allocated to c", AddressTaken),
        (404, "No such container: abc", NotFound),
        (409, 'Conflict. The container name "/x" is already in use by container "y"', Conflict),
        (
            400,
            'failed to create task for container: OCI runtime create failed: exec: "python3": '
            "executable file not found in $PATH: unknown",
            CommandNotFound,
        ),
        (
            400,
            'OCI runtime create failed: exec: "/opt/py/bin/python": stat /opt/py/bin/python: '
            "no such file or directory: unknown",
            CommandNotFound,
        ),
        (500, "something else", EngineError),
    ],
)
def test_refusals_are_typed_with_the_engines_words(status, text, typed):
    error = _explain_api_error(_api_error(status, text), "start the kernel's container")
    assert type(error) is typed
    assert str(error) == f"The Docker engine refused to start the kernel's container: {text}"


def test_missing_images_and_networks_keep_their_types():
    image = _api_error(404, "No such image: x:1", docker.errors.ImageNotFound)
    assert type(_explain_api_error(image, "create")) is ImageNotFoundError
    network = _api_error(404, "network mlc-kernels not found", docker.errors.NotFound)
    assert type(_explain_api_error(network, "create")) is NetworkGoneError


# --- against the engine -----------------------------------------------------------------


@pytest.fixture
def docker_backend(docker_api: Any) -> Iterator[tuple[DockerBackend, list[str]]]:
    """The shared backend, and a list of container ids the test made (all removed after)."""
    made: list[str] = []
    yield DockerBackend.for_url(None), made
    for container_id in made:
        with contextlib.suppress(docker.errors.NotFound):
            docker_api.remove_container(container_id, force=True, v=True)


def _plan(command: list[str], name: str = "", port: int | None = None) -> ContainerPlan:
    create_args: dict[str, Any] = {
        "image": IMAGE,
        "command": command,
        "entrypoint": [],
        "labels": {**labels.owner_labels(), "test.backend": "docker"},
    }
    host_config: dict[str, Any] = {"init": True}
    if name:
        create_args["name"] = name
    if port is not None:
        create_args["ports"] = [INSIDE]
        host_config["port_bindings"] = {INSIDE: ("127.0.0.1", port)}
    return ContainerPlan(name=name, create_args=create_args, host_config=host_config, archive=b"")


async def _created(
    backend: DockerBackend, made: list[str], plan: ContainerPlan
) -> tuple[str, Callable[[], Awaitable[None]]]:
    container_id = await backend.create(plan)
    made.append(container_id)
    return container_id, lambda: backend.start(container_id)


@pytest.mark.engine
async def test_connect_gives_the_shared_docker_backend(docker_backend):
    backend, _ = docker_backend
    connected = seam.connect()
    assert connected == backend == DockerBackend.for_url(None)
    assert connected.engine is backend.engine  # one shared engine: its pool, its executor
    assert isinstance(connected, Backend)
    assert backend in seam.known()
    assert (await backend.kind()).product in ("Docker", "Podman")


@pytest.mark.engine
async def test_a_host_port_in_use_is_port_taken(docker_backend):
    backend, made = docker_backend
    # Taken by a process of the host...
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        _, start = await _created(backend, made, _plan(["sleep", "60"], port=port))
        with pytest.raises(PortTaken) as info:
            await start()
        assert f"127.0.0.1:{port}" in str(info.value)
    # ... and by another container (the engine's own allocator).
    first, start = await _created(backend, made, _plan(["sleep", "60"], port=0))
    await start()
    ports = (await containers.inspect(backend.engine, first) or {})["NetworkSettings"]["Ports"]
    port = int(ports[f"{INSIDE}/tcp"][0]["HostPort"])
    _, start = await _created(backend, made, _plan(["sleep", "60"], port=port))
    with pytest.raises(PortTaken, match="refused to start the kernel's container"):
        await start()


@pytest.mark.engine
async def test_a_second_container_of_one_name_is_a_conflict(docker_backend):
    backend, made = docker_backend
    name = f"mlc-test-backend-{uuid.uuid4().hex[:8]}"
    await _created(backend, made, _plan(["true"], name=name))
    with pytest.raises(Conflict) as info:
        await _created(backend, made, _plan(["true"], name=name))
    assert type(info.value) is Conflict
    assert name in str(info.value)


@pytest.mark.engine
async def test_a_removed_container_is_gone_and_removing_again_is_fine(docker_backend):
    backend, made = docker_backend
    container_id, start = await _created(backend, made, _plan(["sleep", "60"]))
    await start()
    assert (await backend.inspect(container_id)).running
    await backend.remove(container_id)
    assert await backend.inspect(container_id) is None
    await backend.remove(container_id)  # idempotent
    await backend.remove("0" * 64)  # never existed
    assert await backend.signal(container_id, "SIGINT") is False
    assert await backend.logs(container_id) == ""
    assert await backend.stats(container_id) is None


@pytest.mark.engine
async def test_the_state_of_a_container_that_exits_with_code_3(docker_backend):
    backend, made = docker_backend
    container_id, start = await _created(backend, made, _plan(["sh", "-c", "echo bye; exit 3"]))
    created = await backend.inspect(container_id)
    assert (created.running, created.status) == (False, "created")
    await start()

    async def exited() -> ContainerState | None:
        state = await backend.inspect(container_id)
        return state if state is not None and not state.running else None

    state = await eventually(exited, "the container exited")
    assert (state.id, state.status, state.exit_code, state.oom_killed) == (
        container_id,
        "exited",
        3,
        False,
    )
    assert state.image == IMAGE
    assert state.labels["test.backend"] == "docker"
    assert state.finished_at
    assert await backend.signal(container_id, "SIGINT") is False  # not running
    assert "bye" in await backend.logs(container_id)
    listed = await backend.containers(labels.managed_filter(**{"test.backend": "docker"}))
    [entry] = [c for c in listed if c.id == container_id]
    assert (entry.status, entry.running, entry.image) == ("exited", False, IMAGE)
    assert entry.description.startswith("Exited (3)")


@pytest.mark.engine
async def test_a_running_container_takes_signals(docker_backend):
    backend, made = docker_backend
    container_id, start = await _created(backend, made, _plan(["sleep", "60"]))
    await start()
    assert await backend.signal(container_id, "SIGKILL") is True

    async def stopped() -> ContainerState | None:
        state = await backend.inspect(container_id)
        return state if state is not None and not state.running else None

    state = await eventually(stopped, "the container stopped")
    assert state.exit_code == 137
    assert await backend.signal(container_id, "SIGKILL") is False

"""Fuzz: hypothesis-made kernel.json configs and REST requests get a working kernel or a clear
error: never an unhandled exception, a 500, or a container left behind."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client import KernelManager
from traitlets import TraitError

from jupyter_mlcontainer.core.exceptions import MLContainerError
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import IMAGE, new_containers
from .servers import TOKEN, Server

pytestmark = pytest.mark.engine
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
SETTINGS = {
    "gpus": st.sampled_from(["none", "auto", "all", "lots", "0,1", -1, 2, True, []]) | ANY_JSON,
    "mem_limit": st.sampled_from(["512m", "1g", "huge", "-5", 0]) | ANY_JSON,
    "shm_size": st.sampled_from(["64m", "2g", "x"]) | ANY_JSON,
    "cpus": st.floats(-2, 4, allow_nan=False) | ANY_JSON,
    "network": st.sampled_from(["bridge", "none", "host", "weird"]) | ANY_JSON,
    "mounts": st.lists(st.sampled_from(["/etc:/x", "data:/d", "", "::", "/:/host"]), max_size=2),
    "pull_policy": st.sampled_from(["never", "missing", "always", "sometimes"]),
    "env": st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=2)
    | ANY_JSON,
    "inject_runtime": st.sampled_from(["auto", "never", "always", "maybe"]),
    "no_such_setting": ANY_JSON,
}
CONFIGS = st.fixed_dictionaries(
    {
        "image": st.sampled_from(
            [IMAGE, IMAGE, IMAGE, "UPPER/Case::bad", "", "127.0.0.1:9/never/built:1"]
        )
        | st.text(max_size=16)
    },
    optional=SETTINGS,
)


@FUZZ
@given(config=CONFIGS)
def test_any_kernel_json_gives_a_kernel_or_a_clear_error(
    kernelspec, notebook_dir, docker_api, config
):
    before = {c["Id"] for c in docker_api.containers(all=True)}
    name = kernelspec("fuzzed", **config)
    km = KernelManager(kernel_name=name)
    refusal = None
    try:
        km.start_kernel(cwd=str(notebook_dir))
    except (MLContainerError, TraitError) as e:
        refusal = str(e).strip()
    if refusal is not None:  # a clear error: words, not a traceback
        assert refusal
        assert "Traceback" not in refusal
    else:
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive("1 + 1", timeout=60, output_hook=lambda _: None)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    Engine.for_url(None).drain_blocking()
    assert new_containers(docker_api, before) == []


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "notebooks").mkdir()
    server = Server(root / "notebooks", root / "runtime", root / "server.log")
    yield server
    server.stop()
    server.close()


def send(server: Server, method: str, path: str, body: bytes | None) -> int:
    request = urllib.request.Request(
        server.base + path, method=method, data=body, headers={"Authorization": f"token {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


BODIES = st.one_of(
    st.binary(max_size=40),
    st.dictionaries(
        st.sampled_from(["image", "name", "display_name", "gpus", "shm_size", "mem_limit",
                         "replace", "junk"]),
        ANY_JSON | st.sampled_from([IMAGE, "UPPER/Case::bad", "..", "python3"]),
        max_size=5,
    ).map(lambda d: json.dumps(d).encode()),
)  # fmt: skip


@FUZZ
@given(body=BODIES)
def test_any_kernelspec_request_gets_a_clear_answer(fuzz_server, body):
    status = send(fuzz_server, "POST", "/mlcontainer/kernelspecs", body)
    assert status in (201, 400, 403, 409), (status, body, fuzz_server.text()[-2000:])


@FUZZ
@given(body=BODIES, tail=st.text(max_size=6) | st.integers(-5, 10**6).map(str))
def test_any_pull_or_details_request_gets_a_clear_answer(fuzz_server, body, tail):
    status = send(fuzz_server, "POST", "/mlcontainer/images/pull", body)
    assert status in (202, 400), (status, body, fuzz_server.text()[-2000:])
    kernel = uuid.uuid4()
    status = send(
        fuzz_server, "GET", f"/mlcontainer/kernels/{kernel}?tail={urllib.parse.quote(tail)}", None
    )
    assert status in (400, 404), (status, tail)

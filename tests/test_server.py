"""Container kernels through a real Jupyter server: REST API and websocket."""

from __future__ import annotations

import json

import pytest
from tornado.escape import json_decode

from .conftest import assert_removed, containers_of
from .servers import run_code

pytestmark = pytest.mark.engine


@pytest.fixture
def jp_server_config(notebook_dir):
    return {"ServerApp": {"root_dir": str(notebook_dir)}}


async def test_start_execute_and_delete_through_the_server(
    kernelspec, notebook_dir, jp_fetch, jp_ws_fetch, docker_api
):
    name = kernelspec("mlc-server")
    specs = json_decode((await jp_fetch("api", "kernelspecs")).body)
    assert name in specs["kernelspecs"]

    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    kernel = json_decode(response.body)
    kernel_id = kernel["id"]
    try:
        (container,) = containers_of(docker_api, kernel_id)
        ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
        out = await run_code(ws, "import os, socket; print(socket.gethostname(), os.getcwd())")
        ws.close()
        hostname, cwd = out.split()
        assert container["Id"].startswith(hostname)
        assert cwd == str(notebook_dir)
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    await assert_removed(docker_api, kernel_id)


async def test_failed_start_reaches_the_api_caller(kernelspec, jp_fetch):
    from tornado.httpclient import HTTPClientError

    name = kernelspec("mlc-missing", image="mlcontainer/not-here:0")
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    assert info.value.code == 500
    body = info.value.response.body.decode()
    assert "mlcontainer/not-here:0" in body and "pull_policy" in body

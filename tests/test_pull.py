"""Real pulls from a real (local) registry: progress is logged, policies are honoured."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from .conftest import IMAGE, execute, running_kernel

pytestmark = pytest.mark.engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory, docker_api):
    """Debian's docker-registry on 127.0.0.1, with our test image pushed to it."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
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
            pytest.fail(
                f"registry did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        remote = f"{address}/mlc/python:pull-test"
        docker_api.tag(IMAGE, remote)
        for line in docker_api.push(remote, stream=True, decode=True):
            assert "error" not in line, line
        yield remote
    finally:
        proc.terminate()
        proc.wait(10)
        try:
            docker_api.remove_image(f"{address}/mlc/python:pull-test", force=True)
        except Exception:
            pass


async def test_missing_image_is_pulled_with_progress(
    kernelspec, notebook_dir, docker_api, registry, caplog
):
    caplog.set_level(logging.INFO)
    docker_api.remove_image(registry, force=True)  # only the tag goes; layers stay shared
    name = kernelspec(image=registry, pull_policy="missing")
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print(1 + 1)")
        assert out.strip() == "2"
    assert f"Pulling image {registry}" in caplog.text
    assert f"pulling {registry}:" in caplog.text  # a progress line
    assert f"Pulled image {registry} (sha256:" in caplog.text
    digests = docker_api.inspect_image(registry)["RepoDigests"]
    assert any(d.startswith(registry.rsplit(":", 1)[0] + "@sha256:") for d in digests)


async def test_always_pulls_and_pinned_digest_works(
    kernelspec, notebook_dir, docker_api, registry, caplog
):
    caplog.set_level(logging.INFO)
    docker_api.pull(registry)
    digest = next(
        d for d in docker_api.inspect_image(registry)["RepoDigests"] if d.startswith("127.0.0.1")
    )
    name = kernelspec(image=digest, pull_policy="always")
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print('pinned')")
        assert out.strip() == "pinned"
        assert (
            docker_api.inspect_container(km.provisioner.container_id)["Config"]["Image"] == digest
        )
    assert f"Pulling image {digest}" in caplog.text

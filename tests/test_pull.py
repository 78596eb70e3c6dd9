"""Real pulls from a real (local) registry: progress is logged, policies are honoured."""

from __future__ import annotations

import contextlib
import logging

import pytest

from .conftest import IMAGE, execute, running_kernel

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def registry(local_registry, docker_api):
    """Our test image, pushed to the local registry."""
    remote = f"{local_registry}/mlc/python:pull-test"
    docker_api.tag(IMAGE, remote)
    for line in docker_api.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    yield remote
    with contextlib.suppress(Exception):
        docker_api.remove_image(remote, force=True)


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
        d
        for d in docker_api.inspect_image(registry)["RepoDigests"]
        if d.startswith(registry.rsplit(":", 1)[0] + "@")
    )
    name = kernelspec(image=digest, pull_policy="always")
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print('pinned')")
        assert out.strip() == "pinned"
        assert (
            docker_api.inspect_container(km.provisioner.container_id)["Config"]["Image"] == digest
        )
    assert f"Pulling image {digest}" in caplog.text

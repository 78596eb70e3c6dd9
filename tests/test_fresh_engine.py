"""What a new engine meets first: concurrent first starts, HOME volumes made by others, and
networks made twice by an older version."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from typing import Any

import docker
import docker.errors
import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.exceptions import KernelStartError
from jupyter_mlcontainer.core.plan import KERNEL_NETWORK, home_volume_name
from jupyter_mlcontainer.docker import networks
from jupyter_mlcontainer.docker.engine import Engine

from .conftest import IMAGE, TEST_UID, execute, running_kernel

pytestmark = pytest.mark.engine


def _named(api: Any, name: str) -> list[dict[str, Any]]:
    return [n for n in api.networks(names=[name]) if n["Name"] == name]


def _remove_networks(api: Any, name: str) -> None:
    for network in _named(api, name):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(network["Id"])


async def test_first_starts_at_once_make_one_kernels_network(
    kernelspec, notebook_dir, second_engine, policy
):
    """Four kernels started at once on an engine that has never run one (its kernels'
    network does not exist yet): one network, every kernel answers, and so does the next."""
    api = docker.APIClient(base_url=second_engine.url, version="auto")
    _remove_networks(api, KERNEL_NETWORK)
    Engine.for_url(second_engine.url).kernel_networks.forget(KERNEL_NETWORK)
    policy(allowed_engines=[second_engine.url])
    name = kernelspec(docker_host=second_engine.url)

    async def one(i: int) -> str:
        async with running_kernel(name, notebook_dir) as (_, kc):
            out, _ = await execute(kc, f"print({i} * 2)")
            return out.strip()

    try:
        assert await asyncio.gather(*(one(i) for i in range(4))) == ["0", "2", "4", "6"]
        made = _named(api, KERNEL_NETWORK)
        assert len(made) == 1, made
        assert made[0]["Labels"][labels.PURPOSE] == networks.PURPOSE_NETWORK
        assert await one(5) == "10"  # a later start finds it
    finally:
        _remove_networks(api, KERNEL_NETWORK)
        Engine.for_url(second_engine.url).kernel_networks.forget(KERNEL_NETWORK)


def test_processes_making_the_network_at_once_settle_on_one(second_engine):
    """Separate processes (each its own client, no shared lock) making the network at the
    same moment: Docker may keep several of one name; all agree on one and the rest go."""
    name = "mlc-test-race"
    clients = [docker.APIClient(base_url=second_engine.url, version="auto") for _ in range(5)]
    _remove_networks(clients[0], name)
    barrier = threading.Barrier(len(clients))
    found: list[str] = []
    errors: list[BaseException] = []

    def make(api: Any) -> None:
        barrier.wait()
        try:
            found.append(networks.ensure(api, name).id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=make, args=(api,)) for api in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        left = _named(clients[0], name)
        assert len(left) == 1, left
        assert set(found) == {left[0]["Id"]}
    finally:
        _remove_networks(clients[0], name)


def test_doctor_removes_unused_copies_of_a_network(second_engine, jp_environ):
    """An engine that an older version left with two networks of one name (starts failed
    there with "network mlc-kernels is ambiguous"): doctor says so and removes the copy."""
    api = docker.APIClient(base_url=second_engine.url, version="auto")
    name = "mlc-test-twice"
    ours = {labels.MANAGED: "true", labels.PURPOSE: networks.PURPOSE_NETWORK}
    try:
        first = api.create_network(name, driver="bridge", labels=ours)["Id"]
        api.create_network(name, driver="bridge", labels=ours)
        assert len(_named(api, name)) == 2
        doctor = subprocess.run(
            [sys.executable, "-m", "jupyter_mlcontainer.cli", "doctor"],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": second_engine.url},
            timeout=120,
        )
        row = next(line for line in doctor.stdout.splitlines() if line.startswith("network"))
        assert name in row and "fixed" in row, doctor.stdout
        assert [n["Id"] for n in _named(api, name)] == [first]
    finally:
        _remove_networks(api, name)


def _root_owned_home(api: Any, image_family_ref: str, labelled: bool) -> str:
    """A HOME volume for uid TEST_UID as someone else made it: empty, owned by root."""
    name = home_volume_name(TEST_UID, image_family_ref)
    own = {
        labels.MANAGED: "true",
        labels.PURPOSE: labels.PURPOSE_HOME,
        labels.HOME_UID: str(TEST_UID),
        labels.HOME_IMAGE: image_family_ref,
    }
    api.create_volume(name, labels=own if labelled else {})
    return name


@pytest.mark.parametrize("labelled", [True, False], ids=["ours", "someone-elses"])
async def test_a_home_volume_the_user_cannot_write(
    kernelspec, notebook_dir, docker_api, labelled, caplog
):
    """Ours (made by an older version, or by hand with our labels): given to the user, and the
    kernel writes its HOME. Anyone else's: refused in one line that says what to run."""
    family = f"mlc-test/home-{'ours' if labelled else 'theirs'}:1"
    docker_api.tag(IMAGE, family)
    volume = _root_owned_home(docker_api, family, labelled)
    name = kernelspec(image=family)
    try:
        if labelled:
            async with running_kernel(name, notebook_dir) as (_, kc):
                out, _ = await execute(
                    kc,
                    "import os, pathlib; (pathlib.Path.home() / 'probe').write_text('x'); "
                    "print(os.stat(pathlib.Path.home()).st_uid)",
                )
                assert out.strip() == str(TEST_UID)
            assert "giving it to that user" in caplog.text
        else:
            km = AsyncKernelManager(kernel_name=name)
            with pytest.raises(KernelStartError) as raised:
                await km.start_kernel(cwd=str(notebook_dir))
            text = str(raised.value)
            assert f"docker volume rm {volume}" in text, text
            assert "not made by jupyter-mlcontainer" in text
            if km.provisioner is not None:
                await km.provisioner.cleanup()
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_api.remove_volume(volume)
        docker_api.remove_image(family)


async def test_a_kernels_network_pruned_while_the_server_runs_is_made_again(
    kernelspec, notebook_dir, docker_api
):
    """`docker network prune` (or `docker system prune`) between two starts of one server:
    the second start makes the network again instead of failing for good."""
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (_, kc):
        assert (await execute(kc, "print('first')"))[0].strip() == "first"
    for network in _named(docker_api, KERNEL_NETWORK):
        docker_api.remove_network(network["Id"])  # what a prune does to an unused network
    async with running_kernel(name, notebook_dir) as (km, kc):
        assert (await execute(kc, "print('second')"))[0].strip() == "second"
        networks_now = _named(docker_api, KERNEL_NETWORK)
        assert len(networks_now) == 1
        attached = docker_api.inspect_container(km.provisioner.container_id)
        assert networks_now[0]["Id"] in {
            n["NetworkID"] for n in attached["NetworkSettings"]["Networks"].values()
        }

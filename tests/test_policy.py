"""The admin policy: each rule refuses what it forbids, in one line naming the rule and the
setting to change, before anything exists on the engine; kernel.json cannot loosen it."""

from __future__ import annotations

import json

import pytest

from jupyter_mlcontainer.core.exceptions import ConfigurationError
from jupyter_mlcontainer.kernel.policy import PolicyError

from .conftest import IMAGE, containers_of, execute, running_kernel, start_fails

pytestmark = pytest.mark.engine


@pytest.mark.parametrize(
    ("rules", "config", "rule", "fix"),
    [
        ({"allowed_images": ["registry.example.com/*"]}, {}, "allowed_images", "allowed image"),
        ({"require_digest": True}, {}, "require_digest", "pin it"),
        ({"allowed_registries": ["registry.example.com"]}, {}, "allowed_registries", "allowed"),
        ({}, {"network": "host"}, "allowed_networks", "use one of bridge, none"),
        ({}, {"mounts": ["/:/host"]}, "allow_engine_mounts", "remove the mount"),
        (
            {},
            {"mounts": ["/var/run/docker.sock:/var/run/docker.sock"]},
            "allow_engine_mounts",
            "remove",
        ),
        ({}, {"mounts": ["/etc:/host-etc:ro"]}, "allowed_mount_roots", "mount something under"),
        (
            {"allow_named_volumes": False},
            {"mounts": ["data:/data"]},
            "allow_named_volumes",
            "remove",
        ),
        ({}, {"docker_host": "tcp://10.0.0.9:2376"}, "allowed_engines", "remove docker_host"),
        ({"max_memory": "1g"}, {"mem_limit": "2g"}, "max_memory", "set mem_limit to 1g or less"),
        ({"max_memory": "1g"}, {}, "max_memory", "set mem_limit to 1g or less"),
        ({"max_cpus": 2}, {"cpus": 4}, "max_cpus", "set cpus to 2 or less"),
        ({"max_gpus": 1}, {"gpus": "all"}, "max_gpus", "ask for 1 GPUs or fewer"),
        ({}, {"runtime_packages": ["ipykernel==7.4.0"]}, "allow_runtime_packages", "remove"),
        ({}, {"wheelhouse": "/tmp/somewhere"}, "allow_runtime_packages", "remove wheelhouse"),
        ({}, {"env_allowlist": ["AWS_SECRET_ACCESS_KEY"]}, "allowed_env_passthrough", "remove"),
    ],
)
async def test_each_rule_refuses_its_case(
    kernelspec, policy, notebook_dir, docker_api, rules, config, rule, fix
):
    policy(**rules)
    km, message = await start_fails(kernelspec(**config), notebook_dir, PolicyError)
    assert message.startswith(f"Not allowed by the admin policy ({rule}):"), message
    assert fix in message
    assert f"MLContainerPolicy.{rule}" in message
    assert "\n" not in message  # one line
    assert containers_of(docker_api, km.kernel_id) == []


async def test_runtime_packages_are_plain_requirements_even_when_allowed(
    kernelspec, policy, notebook_dir
):
    policy(allow_runtime_packages=True)
    name = kernelspec(runtime_packages=["ipykernel==7.4.0", "-r /etc/passwd"])
    _, message = await start_fails(name, notebook_dir, PolicyError)
    assert "'-r /etc/passwd' is not a plain requirement" in message


async def test_root_needs_the_policy(kernelspec, policy, tmp_path, docker_api):
    root_owned = tmp_path / "root-owned"  # the tests run as root
    root_owned.mkdir()
    km, message = await start_fails(kernelspec(), root_owned, PolicyError)
    assert "(allow_root): the kernel would run as 0:0" in message
    assert containers_of(docker_api, km.kernel_id) == []
    # kernel.json cannot allow it: policy settings are not the kernel's, and unknown ones fail.
    _, message = await start_fails(
        kernelspec("sneaky", allow_root=True), root_owned, ConfigurationError
    )
    assert "Unknown setting(s) 'allow_root' in the kernelspec's" in message
    assert "belong in the server's configuration" in message
    policy(allow_root=True)
    async with running_kernel(kernelspec(), root_owned) as (km, kc):
        out, _ = await execute(kc, "import os; print(os.getuid())")
        assert out.strip() == "0"


async def test_what_the_policy_allows_works(kernelspec, policy, notebook_dir, tmp_path):
    data = tmp_path / "datasets"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    policy(allowed_mount_roots=[str(tmp_path)], max_memory="1g", allowed_images=["mlcontainer/*"])
    name = kernelspec(mounts=[f"{data}:/data:ro"], mem_limit="512m")
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "print(open('/data/train.csv').read().split()[1])")
        assert out.strip() == "1,2"


@pytest.mark.parametrize(
    "jp_server_config",
    [{"MLContainerPolicy": {"allowed_networks": ["bridge", "host", "none"]}}],
    indirect=True,
)
async def test_the_servers_configuration_sets_the_policy(jp_fetch, kernelspec):
    name = kernelspec("hostnet", network="host")
    reply = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    kernel = json.loads(reply.body)
    await jp_fetch("api", "kernels", kernel["id"], method="DELETE")


async def test_a_broken_policy_file_is_explained(kernelspec, notebook_dir, jp_config_dir):
    (jp_config_dir / "mlcontainer_policy.json").write_text("{not json")
    _, message = await start_fails(kernelspec(), notebook_dir, PolicyError)
    assert "mlcontainer_policy.json is not valid JSON" in message
    assert IMAGE  # the image itself is fine: only the policy file is wrong


@pytest.mark.parametrize("volume", ["mlcontainer-runtime-cp311-x86_64-abc", "mlc-home-1000-torch"])
async def test_our_own_volumes_are_never_mounted_by_a_kernelspec(
    kernelspec, policy, notebook_dir, volume
):
    policy(allow_named_volumes=True)
    _, message = await start_fails(kernelspec(mounts=[f"{volume}:/x"]), notebook_dir, PolicyError)
    assert f"mounting {volume!r}, a volume of jupyter-mlcontainer" in message


async def test_kernels_get_a_memory_limit_by_default(kernelspec, policy, notebook_dir, docker_api):
    host = docker_api.info()["MemTotal"]
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        limit = docker_api.inspect_container(km.provisioner.container_id)["HostConfig"]["Memory"]
        assert limit == int(host * 0.9)  # the default: 90% of the engine host's memory
    policy(default_memory="1g")
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        limit = docker_api.inspect_container(km.provisioner.container_id)["HostConfig"]["Memory"]
        assert limit == 2**30
    async with running_kernel(kernelspec(mem_limit="512m"), notebook_dir) as (km, kc):
        limit = docker_api.inspect_container(km.provisioner.container_id)["HostConfig"]["Memory"]
        assert limit == 512 * 2**20  # the kernelspec's own wins
    policy(default_memory="")
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        limit = docker_api.inspect_container(km.provisioner.container_id)["HostConfig"]["Memory"]
        assert limit == 0


async def test_the_admins_policy_file_wins_over_a_users(
    kernelspec, policy, notebook_dir, jp_system_config_path
):
    policy(allowed_networks=["bridge", "host", "none"])  # the user's own config dir
    (jp_system_config_path / "mlcontainer_policy.json").write_text(
        json.dumps({"MLContainerPolicy": {"allowed_networks": ["bridge"]}})
    )
    _, message = await start_fails(kernelspec(network="host"), notebook_dir, PolicyError)
    assert "(allowed_networks)" in message

"""Per-user quotas (MLContainerPolicy.quotas): kernels, GPUs and memory a user holds at once,
counted from the backend's containers; refused with what the user holds."""

from __future__ import annotations

import asyncio

import pytest
from jupyter_client import AsyncKernelManager
from traitlets import TraitError

from jupyter_mlcontainer.kernel.policy import MLContainerPolicy, QuotaExceededError

from .conftest import running_kernel, start_fails


def test_a_users_limit_is_their_own_else_their_groups_highest_else_anyones():
    policy = MLContainerPolicy(
        quotas={
            "*": {"kernels": 2, "gpus": 1, "memory": "8g"},
            "alice": {"gpus": 4},
            "@ml": {"gpus": 2, "kernels": 3},
            "@big": {"gpus": 3},
        }
    )
    assert policy.quota_for("alice", ["ml"]) == {"kernels": 3, "gpus": 4, "memory": 8 * 2**30}
    assert policy.quota_for("bob", ["ml", "big"])["gpus"] == 3
    assert policy.quota_for("carol") == {"kernels": 2, "gpus": 1, "memory": 8 * 2**30}
    assert MLContainerPolicy().quota_for("anyone") == {}


@pytest.mark.parametrize(
    ("quotas", "words"),
    [
        ({"*": {"cpus": 2}}, "has cpus: a quota limits kernels, gpus, memory"),
        ({"*": {"kernels": -1}}, "must be a whole number >= 0"),
        ({"bob": {"memory": "lots"}}, "quotas['bob']['memory']"),
    ],
)
def test_a_bad_quota_says_what_a_quota_is(quotas, words):
    with pytest.raises(TraitError, match=words.replace("[", r"\[").replace("]", r"\]")):
        MLContainerPolicy(quotas=quotas)


@pytest.mark.engine
async def test_a_kernel_over_the_users_kernel_quota_is_refused(kernelspec, notebook_dir, policy):
    policy(quotas={"*": {"kernels": 1}})
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (running, kc):
        km, message = await start_fails(name, notebook_dir, QuotaExceededError)
        assert "Over the admin's quota: root may hold 1 kernel at once (1 running" in message
        assert "Shut down a kernel you no longer need" in message
        assert km.provisioner is None or km.provisioner.container_id is None  # nothing made
        await running.restart_kernel()  # a restart is no second kernel
        await kc.wait_for_ready(timeout=60)
    async with running_kernel(name, notebook_dir):  # the first one ended: room again
        pass


@pytest.mark.engine
async def test_memory_quota_adds_up_the_kernels_limits(kernelspec, notebook_dir, policy):
    policy(quotas={"root": {"memory": "1g"}, "*": {"memory": "100g"}})
    name = kernelspec(mem_limit="768m")
    async with running_kernel(name, notebook_dir):
        _, message = await start_fails(name, notebook_dir, QuotaExceededError)
        assert "1 GiB of kernel memory at once (768 MiB held by 1 kernel(s)" in message
        async with running_kernel(kernelspec("small", mem_limit="200m"), notebook_dir):
            pass


@pytest.mark.engine
async def test_a_group_quota_raises_the_default(kernelspec, notebook_dir, policy):
    policy(quotas={"*": {"kernels": 1}, "@root": {"kernels": 2}})
    name = kernelspec()
    async with running_kernel(name, notebook_dir), running_kernel(name, notebook_dir):
        await start_fails(name, notebook_dir, QuotaExceededError)


@pytest.mark.engine
async def test_starts_at_the_same_moment_cannot_both_pass_the_last_place(
    kernelspec, notebook_dir, policy
):
    """Four starts at once under a quota of two: the two containers created first count,
    the others are refused (checked again right after each container was created)."""
    policy(quotas={"*": {"kernels": 2}})
    name = kernelspec()
    managers = [AsyncKernelManager(kernel_name=name) for _ in range(4)]
    results = await asyncio.gather(
        *(km.start_kernel(cwd=str(notebook_dir)) for km in managers), return_exceptions=True
    )
    try:
        refused = [r for r in results if isinstance(r, QuotaExceededError)]
        assert len(refused) == 2, results
        assert sum(r is None for r in results) == 2, results
    finally:
        await asyncio.gather(
            *(km.shutdown_kernel(now=True) for km in managers if km.has_kernel),
            return_exceptions=True,
        )
        for km in managers:
            if not km.has_kernel and km.provisioner is not None:
                await km.provisioner.cleanup()

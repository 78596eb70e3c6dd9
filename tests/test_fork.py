"""Kernels start in worker processes of a process that already runs a container kernel, as
papermill or nbclient pools do: forked (Linux's default before Python 3.14) and spawned."""

from __future__ import annotations

import multiprocessing

import pytest
from jupyter_client.manager import start_new_kernel

from jupyter_mlcontainer.core import labels

pytestmark = pytest.mark.engine


def run_in_a_new_kernel(args: tuple[str, str, int]) -> str:
    """A worker's job: start a container kernel, run one cell, shut it down."""
    name, cwd, n = args
    km, kc = start_new_kernel(kernel_name=name, cwd=cwd, startup_timeout=60)
    try:
        out = []
        reply = kc.execute_interactive(
            f"print({n} * 3)",
            timeout=60,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok"
        return "".join(out).strip()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_start_kernels_after_the_parent_did(kernelspec, notebook_dir, method, docker_api):
    name = kernelspec()
    km, kc = start_new_kernel(kernel_name=name, cwd=str(notebook_dir), startup_timeout=60)
    try:
        context = multiprocessing.get_context(method)
        with context.Pool(2) as pool:
            jobs = [(name, str(notebook_dir), n) for n in range(2)]
            results = pool.map_async(run_in_a_new_kernel, jobs).get(timeout=120)
        assert results == ["0", "3"]
        # The pool terminates its workers without exit handlers: their kernels' containers
        # were removed before the workers answered, or they would wait for their leases.
        ours = docker_api.containers(all=True, filters=labels.managed_filter())
        assert [c["Id"] for c in ours if c["Labels"].get(labels.KERNEL_NAME) == name] == [
            km.provisioner.container_id
        ]
        # The parent's own kernel still works after its children came and went.
        reply = kc.execute_interactive("1 + 1", timeout=30)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

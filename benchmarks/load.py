"""Load: many container kernels at once, and many start/stop cycles, in one process.

1. ``--concurrent`` kernels (16) started at once, each runs a cell, all shut down; the same
   with local ipykernels, for the ratio.
2. ``--cycles`` start → execute → shutdown cycles (500 by hand; CI's test runs a short form),
   watching what a long-lived server would leak: open files and threads of this process,
   containers and volumes on the engine.

Prints a table; ``--json FILE`` also writes the figures (tests/test_load.py reads them).
Usage: .venv/bin/python benchmarks/load.py [--cycles 500] [--concurrent 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
from jupyter_client import AsyncKernelManager

from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.docker.engine import Engine

NOBODY = 65534


def write_kernelspecs(root: Path, image: str) -> None:
    specs = {
        "load-local": {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        },
        "load-container": {
            "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "metadata": {
                "kernel_provisioner": {
                    "provisioner_name": "mlcontainer",
                    "config": {"image": image, "gpus": "none", "pull_policy": "never"},
                }
            },
        },
    }
    for name, spec in specs.items():
        folder = root / "kernels" / name
        folder.mkdir(parents=True)
        spec.update({"display_name": name, "language": "python"})
        (folder / "kernel.json").write_text(json.dumps(spec))


async def one_kernel(name: str, cwd: str, ready_timeout: float = 120) -> None:
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=ready_timeout)
        reply = await kc.execute_interactive("1 + 1", timeout=60, output_hook=lambda _: None)
        assert reply["content"]["status"] == "ok", reply
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=False)


#: Local kernels that lost jupyter_client's port race (a port it picked free was taken, by a
#: client's own outgoing connection, before the kernel bound it) and were started again.
LOCAL_PORT_RACES = [0]


async def one_local_kernel(name: str, cwd: str) -> None:
    """A local kernel, started again once when it lost jupyter_client's port race (ports are
    picked free, then bound by the kernel process a moment later: 16 at once on a small
    machine sometimes collide). Not a container kernel's problem: they have ports of their
    own, inside their containers."""
    try:
        await one_kernel(name, cwd, ready_timeout=30)
    except RuntimeError:  # it failed to bind and hangs in its exit: shut down (now=False)
        LOCAL_PORT_RACES[0] += 1
        await one_kernel(name, cwd)


async def concurrent(name: str, cwd: str, n: int) -> float:
    started = time.monotonic()
    one = one_local_kernel if name == "load-local" else one_kernel
    await asyncio.gather(*(one(name, cwd) for _ in range(n)))
    return time.monotonic() - started


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def ours(api: docker.APIClient) -> tuple[int, int]:
    """(containers of this process, volumes of this project) on the engine."""
    mine = {f"{labels.SERVER_INSTANCE}={labels.server_instance_id()}"}
    containers = api.containers(all=True, filters={"label": [*mine, f"{labels.MANAGED}=true"]})
    volumes = api.volumes(filters={"label": [f"{labels.MANAGED}=true"]}).get("Volumes") or []
    return len(containers), len(volumes)


async def run(args: argparse.Namespace, cwd: str) -> dict[str, float]:
    api = docker.APIClient(version="auto")
    figures: dict[str, float] = {}
    figures["concurrent"] = args.concurrent
    figures["concurrent_local_s"] = await concurrent("load-local", cwd, args.concurrent)
    figures["concurrent_container_s"] = await concurrent("load-container", cwd, args.concurrent)
    figures["concurrent_ratio"] = figures["concurrent_container_s"] / figures["concurrent_local_s"]
    figures["local_port_races"] = LOCAL_PORT_RACES[0]
    await one_kernel("load-container", cwd)  # warm: caches, the watcher, the executor threads
    await Engine.for_url(None).drain()
    files_before, threads_before = open_files(), threading.active_count()
    containers_before, volumes_before = ours(api)
    started = time.monotonic()
    for _ in range(args.cycles):
        await one_kernel("load-container", cwd)
    figures["cycles"] = args.cycles
    figures["cycle_s"] = (time.monotonic() - started) / max(args.cycles, 1)
    await Engine.for_url(None).drain()
    containers_after, volumes_after = ours(api)
    figures["open_files_growth"] = open_files() - files_before
    figures["threads_growth"] = threading.active_count() - threads_before
    figures["containers_left"] = containers_after - containers_before
    figures["volumes_growth"] = volumes_after - volumes_before
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="mlc-load-"))
    write_kernelspecs(root, args.image)
    os.environ["JUPYTER_PATH"] = str(root)
    cwd = root / "notebooks"  # a user's folder: kernels do not run as root
    cwd.mkdir()
    if os.getuid() == 0:
        os.chown(cwd, NOBODY, NOBODY)
    try:
        figures = asyncio.run(run(args, str(cwd)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value:.3g} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

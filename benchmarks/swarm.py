"""Kernels on a Docker Swarm worker against the same kernels on this machine's engine, and a
local ipykernel, measured in one run (issue 21's targets).

The swarm is the test suite's (tests/swarm.py): three engines in network namespaces of this
machine, a manager and two workers. It proves what the scheduling, the node's host-mode ports
and the encrypted link cost, not a real network's latency. Needs root (namespaces, dockerd).

Modes, interleaved each round so machine noise hits them alike:

- ``local``: an ipykernel on this machine (the baseline of every benchmark here);
- ``engine``: a container kernel on this machine's engine (the default bridge network,
  CurveZMQ-encrypted), started without a warm pool: a cold start;
- ``swarm``: the same image as a Swarm service placed on a worker (``node.role!=manager``),
  the image already on the node, reached at the node's address, CurveZMQ-encrypted.

Measured as in benchmarks/kernels.py: start → first ``kernel_info`` reply, kernel_info and
execute round trips (medians of ``--trips``), restart → ready (in place, through the
supervisor, on the swarm) and shutdown (until the service is gone).

    sudo .venv/bin/python benchmarks/swarm.py                    # 5 rounds
    sudo .venv/bin/python benchmarks/swarm.py --rounds 1 --trips 5   # CI's smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/swarm.py

from benchmarks.kernels import ROUND_METRICS, Bench, container_spec, local_spec, write_specs
from tests.swarm import SwarmCluster, SwarmUnavailable

#: Ratios against the same kernel on this machine's engine (issue 21).
TARGETS = {"start": 2.0, "kernel_info": 1.1, "execute": 1.1}
MODES = ["local", "engine", "swarm"]


def write_kernelspecs(root: Path, image: str, manager_url: str) -> None:
    specs = {
        "local": local_spec(),
        "engine": container_spec(image, pool_size=0),
        "swarm": container_spec(
            image,
            pool_size=0,
            backend="swarm",
            docker_host=manager_url,
            placement=["node.role!=manager"],
            persistent_home=False,  # a HOME volume is per node
            mount_cwd=False,  # the notebook folder is on this machine only
        ),
    }
    write_specs(root, specs)


def configure(root: Path, manager_url: str) -> None:
    """The admin's policy for this run: the manager's API (plain TCP, reachable from this
    machine only; kernel traffic is still encrypted) and root kernels (a root user's
    temporary folder is the kernels' directory here); no proxy for the swarm's addresses."""
    config = root / "config"
    config.mkdir()
    rules = {
        "allowed_engines": [manager_url],
        "allow_unencrypted_remote": True,
        "allow_root": True,
    }
    (config / "mlcontainer_policy.json").write_text(json.dumps({"MLContainerPolicy": rules}))
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ["JUPYTER_CONFIG_DIR"] = str(config)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = ",".join(filter(None, [os.environ.get(name), "10.214.0.0/16"]))


async def run(args: argparse.Namespace, cwd: str) -> dict[str, dict[str, float]]:
    bench = Bench(args, cwd)
    try:
        return await bench.interleaved(MODES)
    finally:
        await bench.close()


def table(medians: dict[str, dict[str, float]]) -> str:
    local, engine = medians["local"], medians["engine"]
    lines = [
        "| mode | start | kernel_info rt | execute rt | restart | shutdown |",
        "|---|---|---|---|---|---|",
    ]
    for mode, m in medians.items():
        cells = []
        for key in ROUND_METRICS:
            value = m[key]
            trip = key in ("kernel_info", "execute")
            shown = f"{value * 1000:.2f} ms" if trip else f"{value:.2f} s"
            ratio = f"{value / local[key]:.2f}× local"
            if mode == "swarm":
                against = value / engine[key]
                limit = TARGETS.get(key)
                flag = " ✗" if limit is not None and against > limit else ""
                ratio += f", {against:.2f}× engine{flag}"
            cells.append(f"{shown} ({ratio})")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines.append(
        "Targets (issue 21), swarm vs this machine's engine: start ≤ 2×, round trips ≤ 1.1× "
        "(✗ = missed)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=50, help="round trips per measurement")
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    args.concurrent = 0  # what Bench reads and this benchmark does not measure
    logging.basicConfig(level=logging.ERROR)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mlc-bench-swarm-"))
    try:
        cluster = SwarmCluster()
    except SwarmUnavailable as e:
        shutil.rmtree(root, ignore_errors=True)
        print(f"no test swarm on this machine: {e}", file=sys.stderr)
        return 2
    try:
        cluster.start()
        cluster.load(args.image)
        write_kernelspecs(root, args.image, cluster.manager_url)
        configure(root, cluster.manager_url)
        cwd = root / "notebooks"
        cwd.mkdir()
        medians = asyncio.run(run(args, str(cwd)))
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.rounds} rounds, {args.trips} round trips each; image {args.image}; "
        f"a 3-node test swarm in network namespaces of this machine; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(table(medians))
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

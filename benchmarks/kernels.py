"""Container kernels against a local ipykernel, measured in the same run.

For each mode (a local ipykernel, then the container kernel on each network) and each round,
rounds interleaved so that machine noise hits every mode alike:

- start → ready: ``start_kernel`` until the first ``kernel_info`` reply;
- kernel_info and execute (``pass``) round trips: medians of ``--trips`` requests;
- shutdown: ``shutdown_kernel`` until the kernel (and its container) is gone.

Prints medians and ratios against the local kernel. Targets (issue 2): start ≤ 1.25×,
round trips ≤ 1.05×, shutdown ≤ 1.2× in the default (bridge) mode.

    python benchmarks/kernels.py                 # 5 rounds
    python benchmarks/kernels.py --rounds 1      # smoke run (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"start": 1.25, "kernel_info": 1.05, "execute": 1.05, "shutdown": 1.2}


def write_kernelspecs(root: Path, image: str, modes: list[str]) -> None:
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    local = root / "kernels" / "bench-local"
    local.mkdir(parents=True)
    spec = {"argv": [sys.executable, *argv[1:]], "display_name": "local", "language": "python"}
    (local / "kernel.json").write_text(json.dumps(spec))
    for mode in modes:
        folder = root / "kernels" / f"bench-{mode}"
        folder.mkdir(parents=True)
        config = {
            "image": image,
            "network": mode,
            "pull_policy": "never",
        }  # gpus: the default, auto
        spec = {
            "argv": argv,
            "display_name": mode,
            "language": "python",
            "metadata": {
                "kernel_provisioner": {"provisioner_name": "mlcontainer", "config": config}
            },
        }
        (folder / "kernel.json").write_text(json.dumps(spec))


async def one_round(kernel: str, cwd: str, trips: int) -> dict[str, float]:
    from jupyter_client import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel)
    t0 = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    start = time.perf_counter() - t0

    infos, execs = [], []
    for _ in range(trips):
        t = time.perf_counter()
        await kc.kernel_info(reply=True, timeout=30)
        infos.append(time.perf_counter() - t)
    for _ in range(trips):
        t = time.perf_counter()
        await kc.execute("pass", reply=True, timeout=30)
        execs.append(time.perf_counter() - t)
    kc.stop_channels()

    t = time.perf_counter()
    await km.shutdown_kernel()
    shutdown = time.perf_counter() - t
    return {
        "start": start,
        "kernel_info": statistics.median(infos),
        "execute": statistics.median(execs),
        "shutdown": shutdown,
    }


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    modes = ["local", *args.modes]
    samples: dict[str, dict[str, list[float]]] = {m: {k: [] for k in TARGETS} for m in modes}
    cwd = tempfile.mkdtemp(prefix="mlc-bench-cwd-")
    # Warm-up: the first start of anything pays for cold caches (page cache, image layers).
    for mode in modes:
        await one_round(f"bench-{mode}", cwd, 2)
    for r in range(args.rounds):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in order:
            result = await one_round(f"bench-{mode}", cwd, args.trips)
            for key, value in result.items():
                samples[mode][key].append(value)
    return {m: {k: statistics.median(v) for k, v in s.items()} for m, s in samples.items()}


def table(medians: dict[str, dict[str, float]]) -> str:
    base = medians["local"]
    head = "| mode | start (s) | kernel_info rt (ms) | execute rt (ms) | shutdown (s) |"
    lines = [head, "|---|---|---|---|---|"]
    for mode, m in medians.items():
        cells = []
        for key, scale, unit_fmt in (
            ("start", 1, "{:.2f}"),
            ("kernel_info", 1000, "{:.2f}"),
            ("execute", 1000, "{:.2f}"),
            ("shutdown", 1, "{:.2f}"),
        ):
            ratio = m[key] / base[key]
            flag = "" if mode == "local" or ratio <= TARGETS[key] else " ✗"
            cells.append(f"{unit_fmt.format(m[key] * scale)} ({ratio:.2f}×{flag})")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines.append(
        "targets vs local: start ≤ 1.25×, round trips ≤ 1.05×, shutdown ≤ 1.2× (✗ = missed)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--trips", type=int, default=50, help="round trips per kernel for the medians"
    )
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument("--modes", nargs="+", default=["bridge", "host", "none"])
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)

    # gpus=auto warns on every start on a GPU-less engine; the table is what matters here.
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="mlc-bench-"))
    write_kernelspecs(root, args.image, args.modes)
    os.environ["JUPYTER_PATH"] = str(root)
    # The benchmark is the admin's own tool: its policy allows the network modes it compares,
    # and root (a temporary folder of a root user is the kernels' directory here).
    config = root / "config"
    config.mkdir()
    rules = {"allowed_networks": ["bridge", "host", "none"], "allow_root": True}
    (config / "mlcontainer_policy.json").write_text(json.dumps({"MLContainerPolicy": rules}))
    os.environ["JUPYTER_CONFIG_DIR"] = str(config)
    medians = asyncio.run(run(args))
    print(f"{args.rounds} rounds, {args.trips} round trips each, image {args.image}")
    print(table(medians))
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two revisions' benchmark figures, measured in one run on this machine.

For a change that must not make anything slower (a refactor): each revision's package is
checked out in a worktree of its own, and this checkout's benchmarks (``server_start.py``, then
``kernels.py``) run against each in turn, alternating (base, head, base, head...), with the same
engine, images and venv (``PYTHONPATH`` picks the revision's code, in every process the
benchmarks start). Figures are ratios against the local ipykernel measured in the same
benchmark run, as everywhere in ``benchmarks/``; the last column is head's ratio over base's.

    python benchmarks/compare.py 84286cb              # base 84286cb against this checkout
    python benchmarks/compare.py v0.1 HEAD --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: kernels.py figures compared (medians per mode), and whether more is better.
KERNEL_FIGURES = {
    "start": False,
    "kernel_info": False,
    "execute": False,
    "restart": False,
    "shutdown": False,
    "throughput": True,
}


def worktree(rev: str, where: Path) -> Path:
    """``rev`` checked out at ``where`` (the working tree itself for "WORKTREE")."""
    if rev == "WORKTREE":
        return ROOT
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(where), rev],
        check=True,
        capture_output=True,
    )
    return where


def run(side: str, tree: Path, script: str, args: list[str], out: Path) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)]
    print(f"==> {side}: {script} {' '.join(args)}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # From the revision's own tree: `python -m jupyter_server` puts its working directory
    # ahead of PYTHONPATH, so run from this checkout it would import this checkout's code.
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, cwd=tree)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def ratios(kernels: dict[str, dict[str, float]], server: dict[str, float]) -> dict[str, float]:
    """Every figure as a ratio against the same run's local kernel."""
    out = {}
    for mode, figures in kernels.items():
        if mode == "local":
            continue
        for key in KERNEL_FIGURES:
            out[f"{mode} {key}"] = figures[key] / kernels["local"][key]
    for name, value in server.items():
        if name != "local":
            out[f"server: {name}"] = value / server["local"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against")
    parser.add_argument("head", nargs="?", default="WORKTREE", help="default: this checkout")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--modes", nargs="+", default=["bridge", "bridge-ports", "host"])
    parser.add_argument("--rounds", type=int, default=3, help="kernels.py rounds per run")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlc-compare-"))
    trees = {"base": worktree(args.base, work / "base"), "head": worktree(args.head, work / "head")}
    kernel_args = ["--modes", *args.modes, "--rounds", str(args.rounds), "--trips", "30"]
    kernel_args += ["--stream-mb", "10", "--concurrent", "4"]
    found: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    try:
        for repeat in range(args.repeats):
            for side, tree in trees.items():
                server = run(
                    side, tree, "server_start.py", ["--rounds", "3"], work / f"s{side}{repeat}"
                )
                kernels = run(side, tree, "kernels.py", kernel_args, work / f"k{side}{repeat}")
                found[side].append(ratios(kernels, server))
    finally:
        for tree in trees.values():
            if tree != ROOT:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.repeats} runs of each, alternating; ratios against local (median of runs)")
    print(f"| figure | base {args.base} | head {args.head} | head / base |\n|---|---|---|---|")
    for key in found["base"][0]:
        base = statistics.median(run[key] for run in found["base"])
        head = statistics.median(run[key] for run in found["head"])
        print(f"| {key} | {base:.2f}× | {head:.2f}× | {head / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

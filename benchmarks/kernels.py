"""Container kernels against a local ipykernel and a peer (dockernel), measured in one run.

Modes (``--modes``): ``local`` (an ipykernel on this machine, the baseline), ``bridge`` (the
default: the kernels' network, reached at the container's address, CurveZMQ-encrypted),
``bridge-plain`` (the same in clear text), ``bridge-ports`` (the same
through ports published on 127.0.0.1), ``host``, ``none``, ``pooled`` (bridge, claimed from a
warm pool) and ``dockernel`` (dockernel 1.0.2 from PyPI, in a venv of its own).

Every round runs each mode once, modes interleaved so that machine noise hits them alike:

- start → ready: ``start_kernel`` until the first ``kernel_info`` reply (``first_reply``);
- kernel_info and execute (``pass``) round trips: medians of ``--trips`` requests;
- restart → ready: ``restart_kernel(now=False)`` until the next ``kernel_info`` reply;
- shutdown: ``shutdown_kernel`` until the kernel (and its container) is gone.

Once per mode: stream output throughput (``--stream-mb`` of ``print``), the memory of an idle
kernel (local: the kernel's PSS; containers: the container's memory without page cache, plus
the engine's own processes for it: containerd-shim and any docker-proxy), and
``--concurrent`` kernels started at once (all must answer).

Prints medians and ratios against the local kernel, and the targets (issue 12).

    python benchmarks/kernels.py                       # 5 rounds, every mode
    python benchmarks/kernels.py --rounds 1 --trips 5 --stream-mb 5 --concurrent 4   # CI
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Ratios against the local kernel (issue 12); "max" targets are upper bounds.
TARGETS = {
    "start": 1.25,
    "pooled start": 0.15,
    "restart": 0.5,
    "kernel_info": 1.05,
    "execute": 1.05,
    "shutdown": 1.2,
    "throughput": 0.9,  # a lower bound
    "concurrent": 1.5,
}
ROUND_METRICS = ("start", "kernel_info", "execute", "restart", "shutdown")
ALL_MODES = [
    "local", "bridge", "bridge-plain", "bridge-ports", "host", "none", "pooled", "dockernel"
]  # fmt: skip
DOCKERNEL_IMAGE = "mlc-bench/dockernel:1"
ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


# --- kernelspecs ---------------------------------------------------------------------------


def container_spec(image: str, **config: Any) -> dict[str, Any]:
    config = {"image": image, "pull_policy": "never", "gpus": "none", **config}
    return {
        "argv": ARGV,
        "display_name": "bench",
        "language": "python",
        "metadata": {
            "kernel_provisioner": {"provisioner_name": "mlcontainer", "config": config},
            # As `add` writes it for ipykernel >= 7: local kernels' traffic is encrypted.
            "supported_encryption": ["curve"],
        },
    }


def local_spec() -> dict[str, Any]:
    """The baseline: an ipykernel of this Python, on this machine."""
    return {"argv": [sys.executable, *ARGV[1:]], "display_name": "local", "language": "python"}


def write_specs(root: Path, specs: dict[str, dict[str, Any]]) -> None:
    """Each mode's kernelspec as ``bench-MODE`` under ``root/kernels``."""
    for mode, spec in specs.items():
        folder = root / "kernels" / f"bench-{mode}"
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(json.dumps(spec))


def write_kernelspecs(root: Path, image: str, modes: list[str], dockernel: Path | None) -> None:
    specs: dict[str, dict[str, Any]] = {
        "local": local_spec(),
        "bridge": container_spec(image, pool_size=0),
        "bridge-ports": container_spec(image, pool_size=0, bridge_access="ports"),
        "bridge-plain": container_spec(image, pool_size=0, local_encryption="none"),
        "host": container_spec(image, pool_size=0, network="host"),
        "none": container_spec(image, pool_size=0, network="none"),
        "pooled": container_spec(image, pool_size=1),
    }
    if dockernel is not None:
        specs["dockernel"] = {
            "argv": [
                str(dockernel),
                "-m",
                "dockernel",
                "start",
                DOCKERNEL_IMAGE,
                "{connection_file}",
            ],
            "display_name": "dockernel",
            "language": "python",
        }
    write_specs(root, {mode: specs[mode] for mode in modes})


def set_up_dockernel(image: str, where: Path) -> Path:
    """dockernel from PyPI in its own venv, and an image whose command starts the kernel the
    way dockernel expects (from $DOCKERNEL_CONNECTION_FILE)."""
    venv = where / "dockernel-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "dockernel==1.0.2"], check=True
        )
    context = Path(tempfile.mkdtemp(prefix="mlc-bench-dockernel-"))
    (context / "Dockerfile").write_text(
        f"FROM {image}\nUSER root\n"
        'CMD ["sh", "-c", "exec python3 -m ipykernel_launcher -f $DOCKERNEL_CONNECTION_FILE"]\n'
    )
    try:
        subprocess.run(
            ["docker", "build", "--quiet", "-t", DOCKERNEL_IMAGE, str(context)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return python


# --- one kernel ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, cwd: str):
        from jupyter_client.multikernelmanager import AsyncMultiKernelManager

        from jupyter_mlcontainer.kernel.pool import MLContainerPool

        self.args = args
        self.cwd = cwd
        self.manager = AsyncMultiKernelManager(connection_dir=tempfile.mkdtemp(prefix="mlc-bench-"))
        self.manager.root_dir = cwd  # what a server's root is to its kernels
        self.pool = MLContainerPool(kernel_manager=self.manager, size=1, refill_delay=0.5)
        self.pool.install()

    async def pool_ready(self) -> None:
        """Wait until the pooled kernelspec has its ready kernel (started outside timings)."""
        deadline = time.monotonic() + 120
        while not self.pool.ready_count("bench-pooled"):
            if time.monotonic() > deadline:
                raise RuntimeError("the warm pool did not fill within 120 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the pooled kernel's own start settle

    async def interleaved(self, modes: list[str]) -> dict[str, dict[str, float]]:
        """A warm-up start of each mode (the first start of anything pays for cold caches:
        page cache, layers), then ``--rounds`` rounds of every mode, in an order that turns
        each round so machine noise hits the modes alike; the medians of each metric."""
        for mode in modes:
            kernel_id, kc, _ = await self.start(mode)
            await self.stop(kernel_id, kc)
        samples: dict[str, dict[str, list[float]]] = {
            m: {k: [] for k in ROUND_METRICS} for m in modes
        }
        for r in range(self.args.rounds):
            for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
                for key, value in (await self.one_round(mode)).items():
                    samples[mode][key].append(value)
        return {m: {k: statistics.median(v) for k, v in s.items()} for m, s in samples.items()}

    async def close(self) -> None:
        """Stop the pool and every kernel; remove the connection files' folder."""
        await self.pool.stop()
        await self.manager.shutdown_all(now=True)
        shutil.rmtree(self.manager.connection_dir, ignore_errors=True)

    async def start(self, mode: str) -> tuple[str, Any, float]:
        if mode == "pooled":
            if not self.pool.in_use("bench-pooled"):  # its first start fills the pool
                kernel_id, kc, _ = await self._start("bench-pooled")
                await self.stop(kernel_id, kc)
            await self.pool_ready()
        return await self._start(f"bench-{mode}")

    async def _start(self, name: str) -> tuple[str, Any, float]:
        t0 = time.perf_counter()
        kernel_id = await self.manager.start_kernel(kernel_name=name, cwd=self.cwd)
        kc = self.manager.get_kernel(kernel_id).client()
        kc.start_channels()
        await first_reply(kc)
        elapsed = time.perf_counter() - t0
        await kc.wait_for_ready(timeout=120)  # IOPub too, before anything is measured on it
        return kernel_id, kc, elapsed

    async def stop(self, kernel_id: str, kc: Any) -> float:
        kc.stop_channels()
        t = time.perf_counter()
        await self.manager.shutdown_kernel(kernel_id)
        return time.perf_counter() - t

    async def one_round(self, mode: str) -> dict[str, float]:
        kernel_id, kc, start = await self.start(mode)
        infos, execs = [], []
        for _ in range(self.args.trips):
            t = time.perf_counter()
            await kc.kernel_info(reply=True, timeout=30)
            infos.append(time.perf_counter() - t)
        for _ in range(self.args.trips):
            t = time.perf_counter()
            await kc.execute("pass", reply=True, timeout=30)
            execs.append(time.perf_counter() - t)
        if mode == "pooled":
            await self.pool_ready()
        km = self.manager.get_kernel(kernel_id)
        t = time.perf_counter()
        await km.restart_kernel(now=False)
        await first_reply(kc)
        restart = time.perf_counter() - t
        await kc.wait_for_ready(timeout=120)
        shutdown = await self.stop(kernel_id, kc)
        return {
            "start": start,
            "kernel_info": statistics.median(infos),
            "execute": statistics.median(execs),
            "restart": restart,
            "shutdown": shutdown,
        }

    async def throughput(self, mode: str) -> float:
        """Stream output received, in MB/s."""
        kernel_id, kc, _ = await self.start(mode)
        lines = self.args.stream_mb * 1024
        code = (
            f"import sys\nline = 'x' * 1023 + '\\n'\n"
            f"for _ in range({lines}):\n    sys.stdout.write(line)"
        )
        received = 0

        def count(msg: dict[str, Any]) -> None:
            nonlocal received
            if msg["msg_type"] == "stream":
                received += len(msg["content"]["text"])

        t = time.perf_counter()
        await kc.execute_interactive(code, output_hook=count, timeout=600)
        elapsed = time.perf_counter() - t
        await self.stop(kernel_id, kc)
        if received < lines * 1024:
            raise RuntimeError(f"{mode}: {received} of {lines * 1024} bytes of output arrived")
        return received / 2**20 / elapsed

    async def memory(self, mode: str) -> float:
        """MiB used by one idle kernel, the engine's processes for it included."""
        kernel_id, kc, _ = await self.start(mode)
        await asyncio.sleep(2)
        km = self.manager.get_kernel(kernel_id)
        container = getattr(km.provisioner, "container_id", None)
        if container is None and mode == "dockernel":
            container = dockernel_container()
        used = container_memory(container) if container else pss(km.provisioner.pid)
        await self.stop(kernel_id, kc)
        return used / 2**20

    async def concurrent(self, mode: str) -> float:
        """Seconds until ``--concurrent`` kernels started at once all answered."""
        t = time.perf_counter()
        started = await asyncio.gather(
            *(self._start(f"bench-{mode}") for _ in range(self.args.concurrent))
        )
        elapsed = time.perf_counter() - t
        for _, kc, _ in started:
            reply = await kc.execute("1", reply=True, timeout=60)
            assert reply["content"]["status"] == "ok"
        await asyncio.gather(*(self.stop(kernel_id, kc) for kernel_id, kc, _ in started))
        return elapsed


async def first_reply(kc: Any, timeout: float = 120) -> None:
    """Until the kernel answers ``kernel_info``: the moment it is ready. (jupyter_client's
    ``wait_for_ready`` then also waits for an IOPub message, up to 0.2 s more whenever the
    kernel answered before IOPub's subscription reached it: a client artefact, timed out.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await kc.kernel_info(reply=True, timeout=0.5)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def pss(pid: int) -> int:
    """A process's proportional set size in bytes (shared pages split among their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def engine_processes(container_id: str, address: str) -> list[int]:
    """This machine's processes serving one container: its containerd-shim, and docker-proxy
    for each published port."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        shim = "containerd-shim" in cmdline and container_id in cmdline
        proxy = "docker-proxy" in cmdline and address and f"-container-ip {address} " in cmdline
        if shim or proxy:
            found.append(int(proc.name))
    return found


def container_memory(container_id: str) -> int:
    import docker

    api = docker.APIClient(version="auto")
    stats = api.stats(container_id, stream=False)
    memory = stats.get("memory_stats") or {}
    details = memory.get("stats") or {}
    cache = details.get("total_inactive_file", details.get("inactive_file", 0))
    used = int(memory.get("usage", 0)) - int(cache)
    networks = api.inspect_container(container_id)["NetworkSettings"]["Networks"] or {}
    address = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
    return used + sum(pss(pid) for pid in engine_processes(container_id, address))


def dockernel_container() -> str | None:
    import docker

    api = docker.APIClient(version="auto")
    running = api.containers(filters={"ancestor": DOCKERNEL_IMAGE})
    return running[0]["Id"] if running else None


# --- the run -------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    modes = ["local", *[m for m in args.modes if m != "local"]]
    bench = Bench(args, tempfile.mkdtemp(prefix="mlc-bench-cwd-"))
    try:
        medians = await bench.interleaved(modes)
        for mode in modes:
            medians[mode]["throughput"] = await bench.throughput(mode)
            medians[mode]["memory"] = await bench.memory(mode)
            if mode in ("local", "bridge", "dockernel") and args.concurrent:
                medians[mode]["concurrent"] = await bench.concurrent(mode)
        return medians
    finally:
        await bench.close()
        shutil.rmtree(bench.cwd, ignore_errors=True)


def table(medians: dict[str, dict[str, float]]) -> str:
    base = medians["local"]
    head = (
        "| mode | start | kernel_info rt | execute rt | restart | shutdown | output "
        "| idle memory | concurrent starts |"
    )
    lines = [head, "|" + "---|" * 9]

    def cell(mode: str, key: str, value: float, shown: str, target: str | None = None) -> str:
        ratio = value / base[key]
        limit = TARGETS.get(target or key)
        if mode == "local" or limit is None:
            flag = ""
        elif key == "throughput":
            flag = "" if ratio >= limit else " ✗"
        else:
            flag = "" if ratio <= limit else " ✗"
        return f"{shown} ({ratio:.2f}×{flag})"

    for mode, m in medians.items():
        start_target = "pooled start" if mode == "pooled" else "start"
        cells = [
            cell(mode, "start", m["start"], f"{m['start']:.2f} s", start_target),
            cell(mode, "kernel_info", m["kernel_info"], f"{m['kernel_info'] * 1000:.2f} ms"),
            cell(mode, "execute", m["execute"], f"{m['execute'] * 1000:.2f} ms"),
            cell(mode, "restart", m["restart"], f"{m['restart']:.2f} s"),
            cell(mode, "shutdown", m["shutdown"], f"{m['shutdown']:.2f} s"),
            cell(mode, "throughput", m["throughput"], f"{m['throughput']:.0f} MB/s"),
            f"{m['memory']:.0f} MiB ({m['memory'] - base['memory']:+.0f})",
            cell(mode, "concurrent", m["concurrent"], f"{m['concurrent']:.1f} s")
            if "concurrent" in m
            else "–",
        ]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines.append(
        "Targets vs local (issue 12): start ≤ 1.25×, pooled start ≤ 0.15×, restart ≤ 0.5×, round "
        "trips ≤ 1.05×, shutdown ≤ 1.2×, output ≥ 0.9×, idle memory ≤ local + 15 MiB, "
        "concurrent starts ≤ 1.5× (✗ = missed)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=50, help="round trips per kernel")
    parser.add_argument("--stream-mb", type=int, default=50, help="MB of output to stream")
    parser.add_argument("--concurrent", type=int, default=16, help="kernels started at once")
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument("--modes", nargs="+", default=ALL_MODES[1:], choices=ALL_MODES)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.ERROR)
    dockernel = None
    if "dockernel" in args.modes:
        cache = Path(__file__).resolve().parent.parent / ".build"
        dockernel = set_up_dockernel(args.image, cache)
    root = Path(tempfile.mkdtemp(prefix="mlc-bench-"))  # after what may fail before the run
    write_kernelspecs(root, args.image, ["local", *args.modes], dockernel)
    os.environ["JUPYTER_PATH"] = str(root)
    # The benchmark is the admin's own tool: its policy allows the network modes it compares,
    # and root (a temporary folder of a root user is the kernels' directory here).
    config = root / "config"
    config.mkdir()
    rules = {"allowed_networks": ["bridge", "host", "none"], "allow_root": True}
    (config / "mlcontainer_policy.json").write_text(json.dumps({"MLContainerPolicy": rules}))
    os.environ["JUPYTER_CONFIG_DIR"] = str(config)
    try:
        medians = asyncio.run(run(args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{args.rounds} rounds, {args.trips} round trips each, {args.stream_mb} MB of output, "
        f"{args.concurrent} concurrent starts; image {args.image}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    )
    print(table(medians))
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Container kernels through the gateway against the same kernels started direct, measured in
one run (issue 19).

Servers, each a subprocess on a free port, all in one temporary folder with its own Jupyter
paths (kernelspecs, config, runtime dirs) and tokens file:

- ``plain``: ``jupyter server`` without this extension; its own ipykernel (``python3``) is the
  baseline of the pooled start ("local ipykernel");
- ``direct``: ``jupyter server`` with this extension, holding the engine itself, no warm pool:
  the container kernelspec started there is the baseline of the gateway's start and round trip;
- ``gateway``: ``jupyter mlcontainer gateway`` (``MLContainerPool.size=0``), and a user's
  ``jupyter server --gateway-url`` in front of it (the user's own token);
- ``gateway, pooled``: the same with a warm pool (``MLContainerPool.size=1``): a gateway's
  pools are per user, filled after the user's first start (the warm-up round's).

Every round runs each mode once, modes interleaved (the order rotates) so that machine noise
hits them alike, and measures through the server's REST API and websocket, as JupyterLab does:

- start: ``POST /api/kernels`` until the kernel answers ``kernel_info`` on its
  ``/api/kernels/ID/channels`` websocket;
- execute round trip: ``execute_request`` of ``pass`` until its ``execute_reply`` on that
  websocket, the median of ``--trips``;
- delete: ``DELETE /api/kernels/ID``.

A pooled start waits first until the gateway's pool holds a ready kernel (outside timings),
and the next mode waits until it refilled; where the pool does not fill, the run says so after
the table, with the gateway's reason, and those starts are cold.

Prints medians, ratios against the baselines and the targets (issue 19): gateway start ≤ 1.2×
direct, pooled gateway start ≤ 0.3× a local ipykernel's, execute round trip through the gateway
≤ 1.3× direct. ``--nodelay`` shows the round trips without the Nagle stalls of jupyter_server's
kernel websockets (see ``NODELAY_CONFIG``). Everything started is stopped and removed at the
end, on Ctrl-C or an error too (the servers' logs are kept on an error).

    python benchmarks/gateway.py                       # 5 rounds, 50 round trips each
    python benchmarks/gateway.py --rounds 1 --trips 5  # the CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

#: Ratios (issue 19): (mode, figure) -> (baseline mode, upper bound).
TARGETS = {
    ("gateway", "start"): ("direct", 1.2),
    ("gateway", "execute"): ("direct", 1.3),
    ("gateway, pooled", "start"): ("local", 0.3),
    ("gateway, pooled", "execute"): ("direct", 1.3),
}
MODES = ["local", "direct", "gateway", "gateway, pooled"]
KERNEL = "bench-gateway"  # the container kernelspec
LOCAL_KERNEL = "python3"
USER, USER_UID = "bench-user", 4591  # the gateway's user (kernels run as this uid)
ADMIN = "bench-admin"  # the benchmark's own view of the gateways (pools, leftovers)
MANAGED = "org.jupyter-mlcontainer.managed"
SERVER_PID = "org.jupyter-mlcontainer.server-pid"
SERVER_HOST = "org.jupyter-mlcontainer.server-host"
#: ``--nodelay``: kernel websockets without Nagle's algorithm (TCP_NODELAY) in every server.
#: jupyter_server's kernel websocket leaves it on: a reply written while the kernel's previous
#: message (IOPub ``busy``) is not acknowledged yet waits for the client's delayed ACK (up to
#: 40 ms on Linux), which then dominates every round trip and hides what the gateway adds.
NODELAY_CONFIG = """\
from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

_open = KernelWebsocketHandler.open


def _open_nodelay(self, *args, **kwargs):
    self.set_nodelay(True)
    return _open(self, *args, **kwargs)


KernelWebsocketHandler.open = _open_nodelay
"""
#: Seconds between kernel_info requests while a kernel starts (JupyterLab asks again too).
ASK_EVERY = 0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def folder(path: Path, mode: int = 0o755, owner: int | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owner is not None and os.getuid() == 0:
        os.chown(path, owner, owner)
    return path


# --- servers -------------------------------------------------------------------------------


class Server:
    """A Jupyter server subprocess (its own session: Ctrl-C reaches this script alone, which
    stops it), reached with ``token``."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], work: Path, token: str | None
    ):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token or secrets.token_hex(16)
        self.command = [c.format(port=self.port, token=self.token) for c in command]
        self.env = env
        self.log = work / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def wait_until_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            with contextlib.suppress(Exception):
                await self.request("GET", "/api/kernelspecs", timeout=5)
                return
            await asyncio.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the {self.name} server did not answer:\n{tail}")

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None, timeout=180
    ) -> Any:
        request = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {token or self.token}"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=timeout,
        )
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body) if response.body else None

    def stop(self) -> None:
        """SIGTERM (its kernels shut down, their containers go), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Setup:
    """The temporary folder, kernelspecs, tokens file and servers of one run."""

    def __init__(self, image: str, nodelay: bool = False):
        self.work = Path(tempfile.mkdtemp(prefix="mlc-bench-gateway-"))
        self.work.chmod(0o755)  # the kernels' user reaches its mounted folders through it
        jupyter = folder(self.work / "jupyter")
        spec = folder(jupyter / "kernels" / KERNEL)
        config = {
            "image": image,
            "pull_policy": "never",
            "gpus": "none",
            "persistent_home": False,  # no HOME volume left behind
        }
        (spec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "bench (container)",
                    "language": "python",
                    "metadata": {
                        "kernel_provisioner": {"provisioner_name": "mlcontainer", "config": config},
                        "supported_encryption": ["curve"],  # as `add` writes it
                    },
                }
            )
        )
        self.tokens = {USER: secrets.token_hex(16), ADMIN: secrets.token_hex(16)}
        from jupyter_mlcontainer.core.tokens import line_for

        tokens_file = self.work / "gateway-tokens"
        tokens_file.touch(mode=0o600)
        tokens_file.write_text(
            line_for(USER, self.tokens[USER], uid=str(USER_UID))
            + "\n"
            + line_for(ADMIN, self.tokens[ADMIN], admin=True, uid=str(USER_UID + 1))
            + "\n"
        )
        tokens_file.chmod(0o600)
        self.base_env = {
            **os.environ,
            "JUPYTER_PATH": str(jupyter),
            "JUPYTER_DATA_DIR": str(folder(self.work / "data")),
            "JUPYTER_CONFIG_DIR": str(folder(self.work / "config")),
            "PYTHONUNBUFFERED": "1",
        }
        if nodelay:  # every server of this run loads it (their JUPYTER_CONFIG_DIR)
            (self.work / "config" / "jupyter_server_config.py").write_text(NODELAY_CONFIG)
        root_flag = ["--allow-root"] if os.getuid() == 0 else []
        server = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", "--port={port}"]
        server += ["--ServerApp.port_retries=0", "--IdentityProvider.token={token}"]
        server += ["--ServerApp.open_browser=False", *root_flag]
        mlc_on = "--ServerApp.jpserver_extensions=jupyter_mlcontainer=True"
        mlc_off = "--ServerApp.jpserver_extensions=jupyter_mlcontainer=False"

        def root(name: str) -> Path:
            # The kernels' folder, their user's (as the docs have it): they run as that uid.
            return folder(self.work / name / "root", owner=USER_UID)

        def gateway(name: str, pool: list[str]) -> Server:
            gateway_root = folder(self.work / name / "root")
            folder(gateway_root / USER, 0o700, owner=USER_UID)  # the user's own folder
            return self.server(
                name,
                [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway",
                 f"--tokens-file={tokens_file}", "--ip=127.0.0.1", "--port={port}",
                 f"--root-dir={gateway_root}", "--", *root_flag, *pool],
                token=self.tokens[ADMIN],
            )  # fmt: skip

        def user(name: str, gateway: Server) -> Server:
            # A user's own server: no engine here, so not this extension either.
            return self.server(
                name,
                [*server, f"--ServerApp.root_dir={folder(self.work / name / 'root')}", mlc_off,
                 f"--gateway-url={gateway.url}", f"--GatewayClient.auth_token={self.tokens[USER]}",
                 "--GatewayClient.request_timeout=120"],
            )  # fmt: skip

        self.servers: list[Server] = []
        self.plain = self.server(
            "plain", [*server, f"--ServerApp.root_dir={root('plain')}", mlc_off]
        )
        self.direct = self.server(
            "direct",
            [*server, f"--ServerApp.root_dir={root('direct')}", mlc_on, "--MLContainerPool.size=0"],
        )
        self.gateway = gateway("gateway", ["--MLContainerPool.size=0"])
        self.pooled_gateway = gateway(
            "gateway-pooled", ["--MLContainerPool.size=1", f"--MLContainerPool.prefill={KERNEL}"]
        )
        self.user = user("user", self.gateway)
        self.pooled_user = user("user-pooled", self.pooled_gateway)
        #: Where each mode's kernels are started, and which kernelspec.
        self.modes = {
            "local": (self.plain, LOCAL_KERNEL),
            "direct": (self.direct, KERNEL),
            "gateway": (self.user, KERNEL),
            "gateway, pooled": (self.pooled_user, KERNEL),
        }
        self.kernels: set[tuple[Server, str]] = set()  # started and not deleted yet
        self.pool_seen = False  # the pooled gateway held a ready kernel once
        self.pool_waits = 0
        self.pool_hits: list[bool] = []  # per measured pooled start: a ready kernel waited

    def server(self, name: str, command: list[str], token: str | None = None) -> Server:
        runtime = folder(self.work / name / "runtime", 0o700)
        env = {**self.base_env, "JUPYTER_RUNTIME_DIR": str(runtime)}
        server = Server(name, command, env, self.work, token)
        self.servers.append(server)
        return server

    async def start_servers(self) -> None:
        for server in (self.plain, self.direct, self.gateway, self.pooled_gateway):
            server.start()
        await asyncio.gather(*(s.wait_until_up() for s in self.servers if s.process))
        for server in (self.user, self.pooled_user):
            server.start()
        await asyncio.gather(self.user.wait_until_up(), self.pooled_user.wait_until_up())

    async def pool_ready(self) -> bool:
        """Until the pooled gateway holds a ready kernel of ours, and it settled: True; False
        when it did not within 30 s (3 s once it never had one: its pool does not work)."""
        timeout = 30.0 if self.pool_seen or not self.pool_waits else 3.0
        self.pool_waits += 1
        deadline = time.monotonic() + timeout
        while True:
            pool = await self.pooled_gateway.request(
                "GET", "/mlcontainer/pool", token=self.tokens[ADMIN]
            )
            if any(k["kernelspec"] == KERNEL for k in pool["kernels"]):
                break
            if time.monotonic() > deadline or (not self.pool_seen and self.pool_failures()):
                return False  # it said why it could not fill (reported at the end)
            await asyncio.sleep(0.1)
        self.pool_seen = True
        await asyncio.sleep(0.5)
        return True

    def pool_failures(self) -> list[str]:
        """The pooled gateway's own words on why its pool did not fill."""
        text = self.pooled_gateway.log.read_text(errors="replace")
        found = [
            line.split("] ", 1)[-1]
            for line in text.splitlines()
            if "Warm pool:" in line and ("could not" in line or "no longer fits" in line)
        ]
        return list(dict.fromkeys(found))  # each reason once

    async def delete_kernels(self) -> None:
        """Every kernel still started, shut down through its server (best effort)."""
        for server, kernel_id in list(self.kernels):
            with contextlib.suppress(Exception):
                await server.request("DELETE", f"/api/kernels/{kernel_id}", timeout=60)
            self.kernels.discard((server, kernel_id))

    def stop(self) -> list[str]:
        """Stop every server (users' first, then the gateways and the rest), remove what is
        left of theirs in the engine (there should be nothing) and the temporary folder.
        Returns the containers that were left."""
        for server in (self.user, self.pooled_user, *self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        left = leftovers({s.pid for s in self.servers if s.pid})
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True, check=False)
        shutil.rmtree(self.work, ignore_errors=True)
        return left


def leftovers(pids: set[int]) -> list[str]:
    """Our servers' containers still in the engine (by the server-pid label, on this host)."""
    columns = f'{{{{.ID}}}} {{{{.Label "{SERVER_PID}"}}}} {{{{.Label "{SERVER_HOST}"}}}}'
    done = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={MANAGED}=true", "--format", columns],
        capture_output=True,
        text=True,
        check=False,
    )
    host = socket.gethostname()
    found = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) in pids and parts[2] == host:
            found.append(parts[0])
    return found


# --- one kernel ----------------------------------------------------------------------------


def message(msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "bench",
            "session": uuid.uuid4().hex,
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


async def reply_to(ws: WebSocketClientConnection, msg_id: str, msg_type: str) -> None:
    while True:
        text = await ws.read_message()
        if text is None:
            raise RuntimeError("the kernel's websocket closed")
        if isinstance(text, bytes):
            continue
        data = json.loads(text)
        if data.get("msg_type") == msg_type and data["parent_header"].get("msg_id") == msg_id:
            return


async def start_kernel(
    setup: Setup, server: Server, name: str
) -> tuple[str, WebSocketClientConnection, float]:
    """POST /api/kernels until the kernel answers kernel_info on its websocket."""
    t0 = time.perf_counter()
    kernel = await server.request("POST", "/api/kernels", {"name": name})
    setup.kernels.add((server, kernel["id"]))
    url = server.url.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels"
    ws = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {server.token}"}, request_timeout=120)
    )
    request = message("kernel_info_request", {})
    deadline = time.monotonic() + 120
    while True:  # asked again until the kernel answers, as JupyterLab does
        ws.write_message(json.dumps(request))
        try:
            await asyncio.wait_for(
                reply_to(ws, request["header"]["msg_id"], "kernel_info_reply"), ASK_EVERY
            )
            break
        except asyncio.TimeoutError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name}: no kernel_info_reply within 120 s") from None
    return kernel["id"], ws, time.perf_counter() - t0


async def execute(ws: WebSocketClientConnection) -> float:
    request = message(
        "execute_request",
        {"code": "pass", "silent": False, "store_history": False, "user_expressions": {},
         "allow_stdin": False, "stop_on_error": True},
    )  # fmt: skip
    t = time.perf_counter()
    ws.write_message(json.dumps(request))
    await asyncio.wait_for(reply_to(ws, request["header"]["msg_id"], "execute_reply"), 30)
    return time.perf_counter() - t


async def one_round(
    setup: Setup, mode: str, trips: int, hits: list[bool] | None = None
) -> dict[str, float]:
    server, name = setup.modes[mode]
    if mode == "gateway, pooled":
        ready = await setup.pool_ready()
        if hits is not None:
            hits.append(ready)
    kernel_id, ws, start = await start_kernel(setup, server, name)
    try:
        await asyncio.sleep(0.2)  # the start's own last messages (IOPub status) go by
        rts = [await execute(ws) for _ in range(trips)]
    finally:
        ws.close()
    t = time.perf_counter()
    await server.request("DELETE", f"/api/kernels/{kernel_id}")
    delete = time.perf_counter() - t
    setup.kernels.discard((server, kernel_id))
    if mode == "gateway, pooled":
        await setup.pool_ready()  # its refill does not overlap the next mode's timings
    return {"start": start, "execute": statistics.median(rts), "delete": delete}


async def run(setup: Setup, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {
        m: {"start": [], "execute": [], "delete": []} for m in MODES
    }
    try:
        await setup.start_servers()
        for mode in MODES:  # warm-up: cold caches, the pool's first fill
            await one_round(setup, mode, 2)
        for r in range(args.rounds):
            for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
                figures = await one_round(setup, mode, args.trips, setup.pool_hits)
                for key, value in figures.items():
                    samples[mode][key].append(value)
    finally:
        await setup.delete_kernels()
    return {m: {k: statistics.median(v) for k, v in s.items()} for m, s in samples.items()}


# --- the report ----------------------------------------------------------------------------


def verdicts(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    out = {}
    for (mode, figure), (base, limit) in TARGETS.items():
        ratio = medians[mode][figure] / medians[base][figure]
        out[f"{mode} {figure}"] = {
            "baseline": base,
            "ratio": ratio,
            "target": limit,
            "met": ratio <= limit,
        }
    return out


def table(medians: dict[str, dict[str, float]]) -> str:
    found = verdicts(medians)
    names = {
        "local": "local ipykernel (plain server)",
        "direct": "direct (server holds the engine)",
    }
    lines = [
        "| mode | start | start ratio | execute rt | rt ratio | delete | target | ✓/✗ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        m = medians[mode]
        start_v = found.get(f"{mode} start")
        rt_v = found.get(f"{mode} execute")
        if mode == "local":
            start_ratio, rt_ratio, target, flag = "1× (baseline: pooled start)", "–", "", ""
        elif mode == "direct":
            start_ratio, rt_ratio = "1× (baseline: gateway start)", "1× (baseline: rt)"
            target, flag = "", ""
        else:
            assert start_v is not None
            assert rt_v is not None
            start_ratio = f"{start_v['ratio']:.2f}× {start_v['baseline']}"
            rt_ratio = f"{rt_v['ratio']:.2f}× {rt_v['baseline']}"
            target = (
                f"start ≤ {start_v['target']}× {start_v['baseline']}, "
                f"rt ≤ {rt_v['target']}× {rt_v['baseline']}"
            )
            flag = " ".join("✓" if v["met"] else "✗" for v in (start_v, rt_v))
        lines.append(
            f"| {names.get(mode, mode)} | {m['start']:.2f} s | {start_ratio} "
            f"| {m['execute'] * 1000:.2f} ms | {rt_ratio} | {m['delete']:.2f} s | {target} "
            f"| {flag} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    done = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "arch": platform.machine(),
        "docker": done.stdout.strip() or "?",
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=50, help="execute round trips per kernel")
    parser.add_argument("--image", default="mlcontainer/python:3.11")
    parser.add_argument(
        "--nodelay",
        action="store_true",
        help="kernel websockets with TCP_NODELAY in every server (see NODELAY_CONFIG)",
    )
    parser.add_argument("--json", type=Path, help="also write the medians and ratios here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    setup = Setup(args.image, args.nodelay)
    try:
        medians = asyncio.run(run(setup, args))
        failures = setup.pool_failures()
    except Exception:
        logs = Path(tempfile.mkdtemp(prefix="mlc-bench-gateway-logs-"))
        for server in setup.servers:  # what went wrong, from the servers' side
            if server.log.exists():
                shutil.copy(server.log, logs)
        print(f"the servers' logs: {logs}", file=sys.stderr)
        raise
    finally:
        left = setup.stop()
        if left:
            print(f"removed containers left by the servers: {' '.join(left)}", file=sys.stderr)
    box = machine()
    print(
        f"{args.rounds} rounds, {args.trips} execute round trips each; image {args.image}; "
        f"kernel websockets {'with' if args.nodelay else 'without'} TCP_NODELAY; "
        f"{box['cpus']} CPUs ({box['arch']}), Docker {box['docker']}, Python {box['python']}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(table(medians))
    print(
        "Baselines: direct = the same container kernelspec started by a server that holds the "
        "engine itself; local = a plain jupyter server's own ipykernel. Targets (issue 19): "
        "gateway start ≤ 1.2× direct, pooled gateway start ≤ 0.3× local, execute rt through "
        "the gateway ≤ 1.3× direct (✗ = missed)."
    )
    hits = setup.pool_hits
    pool = {"ready_before": sum(hits), "starts": len(hits), "failures": failures[:3]}
    if sum(hits) < len(hits) or failures:
        # A ready kernel that "no longer fits" was not claimed either: that start was cold.
        print(
            f"The pooled gateway had a ready kernel before {sum(hits)} of {len(hits)} measured "
            "pooled starts (the others started cold)."
            + (f" Its log: {' / '.join(failures)}" if failures else "")
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "medians": medians,
                    "ratios": verdicts(medians),
                    "pool": pool,
                    "machine": box,
                    "rounds": args.rounds,
                    "nodelay": args.nodelay,
                    "trips": args.trips,
                    "image": args.image,
                },
                indent=2,
            )
        )
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A Docker Swarm of three "machines" on this one, for the Swarm backend's tests.

Each node is a ``dockerd`` in a network namespace of its own (and a UTS namespace, so that each
has its own hostname, which Swarm takes as the node's name), with its own data root, exec root,
pidfile, socket, containerd and cgroup parent. The namespaces' veths hang on one host bridge
(a private /24 of 10.214.N.0/16); the manager's API also listens on plain TCP at its address,
which only this machine reaches. One worker advertises SIMULATED GPUs as Swarm generic
resources (``NVIDIA-GPU``) and carries the node label ``gpu=true``: Swarm hands them out as
``DOCKER_RESOURCE_NVIDIA-GPU``; no GPU and no NVIDIA runtime are involved. The dispatcher's
heartbeat is one second, so a stopped node is seen ``down`` within seconds.

The namespaces reach no registry: :meth:`SwarmCluster.load` copies an image from the suite's
engine into every node. :meth:`SwarmCluster.close` removes everything the cluster made (its
processes, mounts, namespaces, links, iptables rule, cgroups and files), whatever state it is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from . import subnets
from .leftovers import mounts_under, unmount_under

#: The SIMULATED GPUs the GPU worker advertises (no such devices exist).
SIMULATED_GPUS = ("GPU-simulated-0000-aaaa", "GPU-simulated-0000-bbbb")
GPU_KIND = "NVIDIA-GPU"
MANAGER, WORKER, GPU_WORKER = "sw-manager", "sw-worker", "sw-gpu"
API_PORT = 2375
HEARTBEAT_S = 1


class SwarmUnavailable(RuntimeError):
    """This machine cannot run the test swarm (the reason says why): tests skip."""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        msg = f"{' '.join(cmd)} failed: {done.stderr.strip()}{done.stdout.strip()}"
        raise RuntimeError(msg)
    return done


def check_machine() -> None:
    """Raise :class:`SwarmUnavailable` unless this machine can run the test swarm."""
    if os.geteuid() != 0:
        raise SwarmUnavailable("the test swarm needs root (network namespaces, dockerd)")
    for tool in ("dockerd", "docker", "ip", "nsenter", "unshare", "iptables", "umount"):
        if shutil.which(tool) is None:
            raise SwarmUnavailable(f"{tool} is not installed (.ci/run installs docker.io)")
    if _run("ip", "netns", "list", check=False).returncode != 0:
        raise SwarmUnavailable("`ip netns` does not work here")


@dataclass
class Node:
    """One engine of the swarm: its namespace, address, files and daemon."""

    name: str
    index: int
    address: str
    root: Path
    netns: str
    veth: str
    generic_resources: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    node_id: str = ""
    extra_args: list[str] = field(default_factory=list)

    @property
    def socket_url(self) -> str:
        return f"unix://{self.root}/docker.sock"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"mlc-{self.netns}"

    def api(self, timeout: int = 60) -> docker.APIClient:
        return docker.APIClient(base_url=self.socket_url, version="auto", timeout=timeout)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class SwarmCluster:
    """Three engines in network namespaces, one manager and two workers, in one swarm."""

    def __init__(self) -> None:
        check_machine()
        self.root = Path(tempfile.mkdtemp(prefix="mlc-sw-", dir="/tmp"))  # short socket paths
        tag = self.root.name[-5:].lower().replace("_", "0")
        self.bridge = f"mlcsw{tag}"
        with subnets.claim("10.214.{}.", range(1, 200)) as self.subnet:
            self.host_address = f"10.214.{self.subnet}.1"
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        self._rule_added = False
        self.nodes: dict[str, Node] = {}
        for index, name in enumerate((MANAGER, WORKER, GPU_WORKER)):
            resources = tuple(f"{GPU_KIND}={gpu}" for gpu in SIMULATED_GPUS)
            self.nodes[name] = Node(
                name=name,
                index=index,
                address=f"10.214.{self.subnet}.{index + 2}",
                root=self.root / name,
                netns=f"mlc-sw-{tag}-{index}",
                veth=f"mlcsw{tag}{index}",
                generic_resources=resources if name == GPU_WORKER else (),
            )

    # --- the cluster ----------------------------------------------------------------------

    @property
    def manager(self) -> Node:
        return self.nodes[MANAGER]

    @property
    def manager_url(self) -> str:
        """The manager's API over TCP, as a server on another machine would reach it."""
        return f"tcp://{self.manager.address}:{API_PORT}"

    def manager_api(self, timeout: int = 60) -> docker.APIClient:
        """A client on :attr:`manager_url` (no proxy: the address is only reachable here)."""
        api = docker.APIClient(base_url=self.manager_url, version="auto", timeout=timeout)
        api.trust_env = False
        return api

    def start(self, timeout: float = 120) -> None:
        """Make the network, start the engines and form the swarm (each worker joined and
        ``ready``, the GPU worker labelled ``gpu=true``)."""
        self._network()
        for node in self.nodes.values():
            self._start_engine(node, timeout)
        manager = self.manager
        api = manager.api()
        spec = api.create_swarm_spec(
            dispatcher_heartbeat_period=HEARTBEAT_S * 1_000_000_000,
            task_history_retention_limit=2,
        )
        api.init_swarm(
            advertise_addr=manager.address,
            listen_addr=f"{manager.address}:2377",
            swarm_spec=spec,
        )
        token = api.inspect_swarm()["JoinTokens"]["Worker"]
        for node in self.nodes.values():
            if node is not manager:
                node.api(timeout=int(timeout)).join_swarm(
                    [f"{manager.address}:2377"],
                    token,
                    listen_addr=f"{node.address}:2377",
                    advertise_addr=node.address,
                )
        for node in self.nodes.values():
            self.wait_node_state(node.name, "ready", timeout)
        self.label_node(GPU_WORKER, {"gpu": "true"})

    def _network(self) -> None:
        _run("ip", "link", "set", self.bridge, "up")
        # The suite's engine sets FORWARD's policy to DROP: nodes must reach each other.
        _run("iptables", "-I", *self._forward_rule)
        self._rule_added = True
        for node in self.nodes.values():
            node.root.mkdir()
            _run("ip", "netns", "add", node.netns)
            _run("ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth-sw")
            _run("ip", "link", "set", node.veth, "master", self.bridge, "up")
            _run("ip", "link", "set", "eth-sw", "netns", node.netns)
            inside = ("ip", "-n", node.netns)
            _run(*inside, "addr", "add", f"{node.address}/24", "dev", "eth-sw")
            _run(*inside, "link", "set", "eth-sw", "up")
            _run(*inside, "link", "set", "lo", "up")
            _run(*inside, "route", "add", "default", "via", self.host_address)

    def _start_engine(self, node: Node, timeout: float) -> None:
        config = node.root / "daemon.json"
        config.write_text(json.dumps({}))
        hosts = [f"--host={node.socket_url}"]
        if node.name == MANAGER:
            hosts.append(f"--host=tcp://{node.address}:{API_PORT}")
        dockerd = [
            shutil.which("dockerd") or "dockerd",
            f"--config-file={config}",
            f"--data-root={node.root / 'data'}",
            f"--exec-root={node.root / 'exec'}",
            f"--pidfile={node.root / 'dockerd.pid'}",
            *hosts,
            f"--bip=10.214.{200 + node.index}.1/24",
            "--iptables=false",
            "--ip6tables=false",
            f"--cgroup-parent={node.cgroup_parent}",
            *(f"--node-generic-resource={r}" for r in node.generic_resources),
        ]
        # A UTS namespace of its own: Swarm names a node after its engine's hostname.
        enter = ["nsenter", f"--net=/run/netns/{node.netns}", "unshare", "--uts", "--"]
        named = ["sh", "-c", f'hostname {node.name} && exec "$@"', "dockerd"]
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [*enter, *named, *dockerd], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                node.api(timeout=5).ping()
                return
            except Exception:
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    msg = f"the swarm node {node.name} did not start:\n{node.tail()}"
                    raise RuntimeError(msg) from None
                time.sleep(0.2)

    # --- nodes ----------------------------------------------------------------------------

    def node_record(self, name: str) -> dict[str, Any]:
        """The manager's record of the node whose hostname is ``name`` (``GET /nodes``)."""
        for record in self.manager_api().nodes():
            if record["Description"]["Hostname"] == name:
                return dict(record)
        msg = f"the manager knows no node {name!r}"
        raise LookupError(msg)

    def node_state(self, name: str) -> str:
        """``ready``, ``down``, ``unknown`` or ``disconnected``, as the manager sees it."""
        return str(self.node_record(name)["Status"]["State"])

    def wait_node_state(self, name: str, state: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the manager sees the node in ``state``; its record."""
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            with contextlib.suppress(LookupError):
                record = self.node_record(name)
                seen = record["Status"]["State"]
                if seen == state:
                    return record
            if time.monotonic() > deadline:
                msg = f"node {name} is {seen or 'unknown to the manager'}, not {state}"
                raise TimeoutError(msg)
            time.sleep(0.3)

    def label_node(self, name: str, node_labels: dict[str, str]) -> None:
        api = self.manager_api()
        record = self.node_record(name)
        spec = dict(record["Spec"])
        spec["Labels"] = {**(spec.get("Labels") or {}), **node_labels}
        api.update_node(record["ID"], record["Version"]["Index"], spec)

    def set_availability(self, name: str, availability: str) -> None:
        """``active``, ``pause`` (no new task placed there) or ``drain`` (its tasks moved
        away), as an admin sets it (``docker node update --availability``)."""
        api = self.manager_api()
        record = self.node_record(name)
        spec = dict(record["Spec"])
        spec["Availability"] = availability
        api.update_node(record["ID"], record["Version"]["Index"], spec)

    def stop_node(self, name: str, timeout: float = 30) -> None:
        """Stop a node's engine as an admin would (SIGTERM: it stops its containers)."""
        node = self.nodes[name]
        if node.proc is None:
            return
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)
        node.proc = None

    def start_node(self, name: str, timeout: float = 60) -> None:
        """Start a stopped node's engine again: it rejoins the swarm by itself."""
        node = self.nodes[name]
        if node.proc is None:
            self._start_engine(node, timeout)

    def load(self, image: str, nodes: tuple[str, ...] = ()) -> None:
        """Copy ``image`` from the suite's engine into every node (or these ``nodes``): no
        registry is reachable from them."""
        archive = self.root / "image.tar"
        _run("docker", "save", "-o", str(archive), image)
        try:
            for node in self.nodes.values():
                if nodes and node.name not in nodes:
                    continue
                _run("docker", "--host", node.socket_url, "load", "-i", str(archive))
        finally:
            archive.unlink(missing_ok=True)

    # --- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every engine and remove everything the cluster made; safe to call twice."""
        for name in self.nodes:
            with contextlib.suppress(Exception):
                self.stop_node(name)
        for node in self.nodes.values():
            self._close_node(node)
        if self._rule_added:
            _run("iptables", "-D", *self._forward_rule, check=False)
            self._rule_added = False
        _run("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _close_node(self, node: Node) -> None:
        """What a stopped engine may leave: processes in its namespace (shims, proxies), mounts
        under its root, the namespace, its veth, its cgroups."""
        if Path(f"/run/netns/{node.netns}").exists():
            pids = _run("ip", "netns", "pids", node.netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        unmount_under(node.root)
        _run("ip", "netns", "del", node.netns, check=False)
        _run("ip", "link", "del", node.veth, check=False)
        for cgroup in sorted(Path("/sys/fs/cgroup").glob(f"*/{node.cgroup_parent}"), reverse=True):
            for child in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                cgroup.rmdir()

    def leftovers(self) -> list[str]:
        """What of the cluster is still on this machine (empty after :meth:`close`)."""
        found = [f"namespace {n.netns}" for n in self.nodes.values() if n.netns in netns_names()]
        links = _run("ip", "-o", "link", "show").stdout
        found += [f"link {name}" for name in (self.bridge, *(n.veth for n in self.nodes.values()))
                  if f" {name}:" in links or f" {name}@" in links]  # fmt: skip
        found += [f"mount {m}" for m in mounts_under(self.root)]
        found += [f"process {p}" for p in processes_mentioning(str(self.root))]
        rules = _run("iptables", "-S", "FORWARD", check=False).stdout
        if f"-i {self.bridge} " in rules:
            found.append(f"iptables rule for {self.bridge}")
        if self.root.exists():
            found.append(f"folder {self.root}")
        return found


def netns_names() -> set[str]:
    return {line.split()[0] for line in _run("ip", "netns", "list").stdout.splitlines() if line}


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                found.append(int(proc.name))
    return found

"""A second Docker engine, for tests that stop or restart an engine under a running kernel
(the suite's own engine keeps serving every other test).

It shares the host's network namespace with the first: a default bridge of its own (never
``--bridge=none``, with which dockerd deletes the first engine's docker0), no iptables rules
(so it cannot disturb the first engine's), its own data, exec root, containerd, cgroup parent
and socket. Kernels on it use the host network.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker


class SecondEngine:
    def __init__(self) -> None:
        binary = shutil.which("dockerd")
        if binary is None:
            raise RuntimeError("dockerd is not installed (scripts/engine.sh installs docker.io)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="mlc-e2-", dir="/tmp"))  # short socket paths
        self.url = f"unix://{self.root}/docker.sock"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = f"mlc-e2-{self.root.name[-6:]}"
        for cmd in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", "10.231.7.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version="auto", timeout=60)

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.root / 'dockerd.pid'}",
                    f"--host={self.url}",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--cgroup-parent=mlc-second-engine",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api().ping()
                return
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the second engine did not start:\n{self.tail()}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        """Stop it as an admin would (SIGTERM): it stops its containers first."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def load(self, image: str) -> None:
        """Copy ``image`` from the suite's engine (no registry is reachable)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "--host", self.url, "load"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        if save.wait() != 0 or loaded.returncode != 0:
            raise RuntimeError(f"could not copy {image} to the second engine: {loaded.stderr}")

    def containers(self) -> list[dict[str, object]]:
        return list(self.api().containers(all=True))

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        """Remove what is left on it, stop it, delete its files."""
        if self.proc is not None:
            api = self.api()
            for container in api.containers(all=True):
                api.remove_container(container["Id"], force=True)
            for volume in (api.volumes() or {}).get("Volumes") or []:
                api.remove_volume(volume["Name"], force=True)
            self.stop()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

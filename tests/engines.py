"""A second Docker engine, for tests that stop or restart an engine under a running kernel
(the suite's own engine keeps serving every other test).

It shares the host's network namespace with the first: a default bridge of its own (never
``--bridge=none``, with which dockerd deletes the first engine's docker0), no iptables rules
(so it cannot disturb the first engine's), its own data, exec root, containerd, cgroup parent
and socket. Kernels on it use the host network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from . import subnets
from .leftovers import unmount_under


def stop_group(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a service started in a session of its own, and what it started (SIGTERM, then
    SIGKILL)."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class OwnEngine:
    """What the tests do with an engine of their own: a client on its socket, images copied
    from the suite's engine (no registry is reachable), its containers, its log."""

    socket_url: str
    log: Path
    #: Where its commands run (None: here); a user's own engine needs a folder it may enter.
    workdir: Path | None = None

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.socket_url, version="auto", timeout=60)

    def load_command(self) -> list[str]:
        return ["docker", "--host", self.socket_url, "load"]

    def load(self, image: str) -> None:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            self.load_command(),
            stdin=save.stdout,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.workdir,
        )
        if save.wait() != 0 or loaded.returncode != 0:
            msg = f"could not copy {image} to {type(self).__name__}: {loaded.stderr}"
            raise RuntimeError(msg)

    def wait_until_up(self, died: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait until the API answers; fail with the log when ``died`` or on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api().ping()
                return
            except Exception:
                if died() or time.monotonic() > deadline:
                    raise RuntimeError(f"{what}:\n{self.tail()}") from None
                time.sleep(0.2)

    def containers(self) -> list[dict[str, object]]:
        return list(self.api().containers(all=True))

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class SecondEngine(OwnEngine):
    cgroup_parent = "mlc-second-engine"
    #: What its daemon finds on its PATH before the host's (None: the host's PATH).
    extra_path: Path | None = None

    def __init__(self) -> None:
        binary = shutil.which("dockerd")
        if binary is None:
            raise RuntimeError("dockerd is not installed (scripts/engine.sh installs docker.io)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="mlc-e2-", dir="/tmp"))  # short socket paths
        self.url = self.socket_url = f"unix://{self.root}/docker.sock"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = f"mlc-e2-{self.root.name[-6:]}"
        # Each engine's bridge has a subnet of its own (test_compose's kernels use 10.231.97).
        with subnets.claim("10.231.{}.", range(1, 90)) as n:
            for cmd in (
                ["ip", "link", "add", self.bridge, "type", "bridge"],
                ["ip", "addr", "add", f"10.231.{n}.1/24", "dev", self.bridge],
                ["ip", "link", "set", self.bridge, "up"],
            ):
                subprocess.run(cmd, check=True, capture_output=True)

    def start(self, timeout: float = 60) -> None:
        env = dict(os.environ)
        if self.extra_path is not None:
            env["PATH"] = f"{self.extra_path}:{env.get('PATH', '')}"
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
                    f"--cgroup-parent={self.cgroup_parent}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.wait_until_up(
            lambda: self.proc.poll() is not None, "the second engine did not start", timeout
        )

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

    def close(self) -> None:
        """Remove what is left on it, stop it, delete its files."""
        if self.proc is not None:
            api = self.api()
            for container in api.containers(all=True):
                api.remove_container(container["Id"], force=True)
            for volume in (api.volumes() or {}).get("Volumes") or []:
                api.remove_volume(volume["Name"], force=True)
            self.stop()
        unmount_under(self.root)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


#: The simulated host's GPUs, as ``nvidia-smi --query-gpu=index,uuid,name,memory.total
#: --format=csv,noheader`` lists them.
SIMULATED_GPUS = [f"GPU-5171a7ed-0000-4000-8000-00000000000{n}" for n in range(4)]
#: The MIG instances of its first two GPUs (``nvidia-smi -L``), two each.
SIMULATED_MIG = [f"MIG-5171a7ed-0000-4000-9000-00000000000{n}" for n in range(4)]


class SimulatedGpuEngine(SecondEngine):
    """SIMULATED GPUs: a second engine whose daemon finds a stand-in
    ``nvidia-container-runtime-hook`` (it only exits 0) on its PATH, so Docker registers its
    NVIDIA device driver, accepts GPU requests and passes ``NVIDIA_VISIBLE_DEVICES`` to the
    container, with no GPU and no registered ``nvidia`` runtime; and a stand-in ``nvidia-smi``
    (:attr:`nvidia_smi`) that lists four GPUs as the real one answers the ledger's query. It
    proves the plumbing (requests, the ledger, labels), not the hardware."""

    cgroup_parent = "mlc-gpu-engine"

    def __init__(self) -> None:
        super().__init__()
        self.extra_path = self.root / "bin"
        self.extra_path.mkdir()
        hook = self.extra_path / "nvidia-container-runtime-hook"
        hook.write_text(
            "#!/bin/sh\n# SIMULATED: a stand-in for the NVIDIA hook\ncat >/dev/null\nexit 0\n"
        )
        lines = "".join(
            f"{n}, {uuid}, Simulated GPU, 81559 MiB\\n" for n, uuid in enumerate(SIMULATED_GPUS)
        )
        listing = "".join(
            f"GPU {n}: Simulated GPU (UUID: {SIMULATED_GPUS[n]})\\n"
            + "".join(
                f"  MIG 3g.40gb     Device  {m}: (UUID: {SIMULATED_MIG[2 * n + m]})\\n"
                for m in range(2)
            )
            for n in range(2)
        )
        self.nvidia_smi = self.extra_path / "nvidia-smi"
        self.nvidia_smi.write_text(
            "#!/bin/sh\n# SIMULATED: the GPUs of a host that has none (two with MIG instances)\n"
            f"if [ \"$1\" = -L ]; then printf '{listing}'; else printf '{lines}'; fi\n"
        )
        for tool in (hook, self.nvidia_smi):
            tool.chmod(0o755)


class RemoteEngine(OwnEngine):
    """A Docker engine on "another host": its own network namespace behind a veth pair, as a
    GPU server on the LAN would be, reached over TCP with TLS (certificates made here) and
    over ssh (an sshd of its own in the namespace). Only its host address (:attr:`ip`, in a
    free 10.213.N.0/30) is reachable from here: nothing it publishes appears on this machine's loopback.

    It shares this machine's filesystem (a namespace is not a machine), so tests give it
    folders of its own (``remote_dir``) and map to them, as they would map to an NFS share.
    """

    def __init__(self) -> None:
        for tool in ("dockerd", "sshd", "openssl", "nsenter", "ssh-keygen"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise RuntimeError(f"{tool} is not installed (.ci/run installs it)")
        self.root = Path(tempfile.mkdtemp(prefix="mlc-r-", dir="/tmp"))
        suffix = self.root.name[-5:]
        self.netns = f"mlc-r-{suffix}"
        self.veth = f"mlcr{suffix}"
        self.socket = self.socket_url = f"unix://{self.root}/docker.sock"
        self.host_ip = self.ip = ""  # set with the veth pair
        self.procs: list[subprocess.Popen[bytes]] = []
        self._netns()
        self.tcp_url = f"tcp://{self.ip}:2376"
        self.certs = self.root / "certs"
        self.client_certs = self.root / "client"  # ca.pem cert.pem key.pem, as DOCKER_CERT_PATH
        self.ssh = self.root / "ssh"
        self.log = self.root / "dockerd.log"
        self._certificates()
        self._ssh_keys()

    # --- setting up ---------------------------------------------------------------------

    def _run(self, *cmd: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr}{done.stdout}")
        return done  # type: ignore[no-any-return]

    def _netns(self) -> None:
        self._run("ip", "netns", "add", self.netns)
        self._run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth-r")
        self._run("ip", "link", "set", "eth-r", "netns", self.netns)
        with subnets.claim("10.213.{}.", range(256)) as n:
            self.host_ip, self.ip = f"10.213.{n}.1", f"10.213.{n}.2"
            self._run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        self._run("ip", "link", "set", self.veth, "up")
        inside = ("ip", "netns", "exec", self.netns, "ip")
        self._run(*inside, "addr", "add", f"{self.ip}/30", "dev", "eth-r")
        self._run(*inside, "link", "set", "eth-r", "up")
        self._run(*inside, "link", "set", "lo", "up")
        self._run(*inside, "route", "add", "default", "via", self.host_ip)

    def _certificates(self) -> None:
        """A CA, the engine's certificate (for its IP) and a client certificate."""
        self.certs.mkdir()
        self.client_certs.mkdir()
        c = self.certs
        ssl = ("openssl",)
        self._run(*ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", "/CN=mlc-test-ca", "-keyout", str(c / "ca-key.pem"),
                  "-out", str(c / "ca.pem"))  # fmt: skip
        for name, ext in (
            ("server", f"subjectAltName=IP:{self.ip}\nextendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ):
            (c / f"{name}.ext").write_text(ext)
            self._run(*ssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                      "-keyout", str(c / f"{name}-key.pem"), "-out", str(c / f"{name}.csr"))  # fmt: skip
            self._run(*ssl, "x509", "-req", "-in", str(c / f"{name}.csr"), "-CA", str(c / "ca.pem"),
                      "-CAkey", str(c / "ca-key.pem"), "-CAcreateserial", "-days", "2",
                      "-extfile", str(c / f"{name}.ext"), "-out", str(c / f"{name}.pem"))  # fmt: skip
        shutil.copy(c / "ca.pem", self.client_certs / "ca.pem")
        shutil.copy(c / "client.pem", self.client_certs / "cert.pem")
        shutil.copy(c / "client-key.pem", self.client_certs / "key.pem")

    def _ssh_keys(self) -> None:
        self.ssh.mkdir(mode=0o700)
        self._run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh / "host"))
        self._run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh / "user"))
        shutil.copy(self.ssh / "user.pub", self.ssh / "authorized_keys")
        (self.ssh / "sshd_config").write_text(
            f"ListenAddress {self.ip}:22\nHostKey {self.ssh / 'host'}\n"
            f"PidFile {self.ssh / 'sshd.pid'}\nAuthorizedKeysFile {self.ssh / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"SetEnv DOCKER_HOST={self.socket}\n"
        )

    def client_home(self, home: Path) -> None:
        """What a user's ~/.ssh needs for ``ssh://gpu-box``: an alias with the host's
        address, the key, and the host key in known_hosts (paramiko trusts nothing else)."""
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        (home / ".ssh" / "config").write_text(
            f"Host gpu-box\n  HostName {self.ip}\n  User root\n  IdentityFile {self.ssh / 'user'}\n"
        )
        host_key = (self.ssh / "host.pub").read_text().split()
        (home / ".ssh" / "known_hosts").write_text(f"{self.ip} {host_key[0]} {host_key[1]}\n")

    def start(self, timeout: float = 60) -> None:
        enter = ["nsenter", f"--net=/run/netns/{self.netns}"]
        Path("/run/sshd").mkdir(exist_ok=True)
        c = self.certs
        with self.log.open("ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [
                        *enter,
                        shutil.which("dockerd") or "dockerd",
                        f"--data-root={self.root / 'data'}",
                        f"--exec-root={self.root / 'exec'}",
                        f"--pidfile={self.root / 'dockerd.pid'}",
                        f"--host={self.socket}",
                        f"--host={self.tcp_url}",
                        "--tlsverify",
                        f"--tlscacert={c / 'ca.pem'}",
                        f"--tlscert={c / 'server.pem'}",
                        f"--tlskey={c / 'server-key.pem'}",
                        "--bip=192.168.213.1/24",  # inside its namespace only
                        "--cgroup-parent=mlc-remote-engine",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            self.procs.append(
                subprocess.Popen(
                    [*enter, "/usr/sbin/sshd", "-D", "-e", "-f", str(self.ssh / "sshd_config")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        self.wait_until_up(
            lambda: any(p.poll() is not None for p in self.procs),
            "the remote engine did not start",
            timeout,
        )

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        try:
            api = self.api()
            for container in api.containers(all=True):
                api.remove_container(container["Id"], force=True)
        except Exception:
            pass
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        unmount_under(self.root)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        for cgroup in Path("/sys/fs/cgroup").glob("**/mlc-remote-engine"):
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        shutil.rmtree(self.root, ignore_errors=True)


class RootlessPodman(OwnEngine):
    """Podman run by an unprivileged user, reached through its Docker-compatible API socket
    (``podman system service``), as on a GPU host where users have no Docker daemon."""

    USER = "mlc-podman"

    def __init__(self) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed (.ci/run installs it)")
        if subprocess.run(["id", self.USER], capture_output=True, check=False).returncode:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", self.USER], check=True)
        import pwd

        entry = pwd.getpwnam(self.USER)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.workdir = self.home  # not this process's folder, which the user may not enter
        self.runtime_dir = Path(f"/run/user/{self.uid}")
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.runtime_dir, self.uid, self.gid)
        self.runtime_dir.chmod(0o700)
        storage = self.home / ".config" / "containers"
        storage.mkdir(parents=True, exist_ok=True)
        (storage / "storage.conf").write_text('[storage]\ndriver = "overlay"\n')
        for path in (self.home / ".config", storage, storage / "storage.conf"):
            os.chown(path, self.uid, self.gid)
        self.socket_path = self.runtime_dir / "podman" / "podman.sock"
        self.socket_path.parent.mkdir(exist_ok=True)
        os.chown(self.socket_path.parent, self.uid, self.gid)
        self.url = self.socket_url = f"unix://{self.socket_path}"
        self.log = Path(tempfile.mkdtemp(prefix="mlc-podman-")) / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def as_user(self, *cmd: str) -> list[str]:
        return [
            "runuser", "-u", self.USER, "--", "env", f"HOME={self.home}",
            f"XDG_RUNTIME_DIR={self.runtime_dir}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *cmd,
        ]  # fmt: skip

    def load_command(self) -> list[str]:
        return self.as_user("podman", "load")

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.as_user("podman", "system", "service", "--time=0", self.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        self.wait_until_up(
            lambda: self.proc.poll() is not None, "podman's service did not start", timeout
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            api = self.api()
            for container in api.containers(all=True):
                api.remove_container(container["Id"], force=True)
        stop_group(self.proc)
        # Its pause process (the user namespace's keeper) and any conmon left.
        subprocess.run(["pkill", "-u", self.USER], capture_output=True, check=False)
        shutil.rmtree(self.log.parent, ignore_errors=True)


class RootfulPodman(OwnEngine):
    """Podman run by root, through its Docker-compatible API socket, with storage, networks
    and socket of its own (nothing in /var/lib/containers or /etc/containers). Its
    containers.conf lowers the default ulimits: root here may not raise them."""

    def __init__(self) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed (.ci/run installs it)")
        self.root = Path(tempfile.mkdtemp(prefix="mlc-pr-", dir="/tmp"))
        (self.root / "networks").mkdir()
        self.conf = self.root / "containers.conf"
        self.conf.write_text(
            '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            f'[network]\nnetwork_config_dir = "{self.root / "networks"}"\n'
        )
        self.url = self.socket_url = f"unix://{self.root}/podman.sock"
        self.log = self.root / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def podman(self, *args: str) -> list[str]:
        return [
            "env", f"CONTAINERS_CONF={self.conf}", "podman", "--root", str(self.root / "storage"),
            "--runroot", str(self.root / "run"), *args,
        ]  # fmt: skip

    def load_command(self) -> list[str]:
        return self.podman("load")

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.podman("system", "service", "--time=0", self.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until_up(
            lambda: self.proc is None or self.proc.poll() is not None,
            "rootful podman's service did not start",
            timeout,
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            api = self.api()
            for container in api.containers(all=True):
                api.remove_container(container["Id"], force=True)
            for network in api.networks():
                if network["Name"] != "podman":  # its bridge goes with it
                    api.remove_network(network["Id"])
        stop_group(self.proc)
        subprocess.run(self.podman("system", "reset", "--force"), capture_output=True, check=False)
        unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

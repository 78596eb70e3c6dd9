"""How a kernel whose argv is ``python -m MODULE …`` starts in its container.

Run as ``python -c PROGRAM MODULE ARGS…`` (the program is this module with the protocol and
the digest before it, see ``program`` in this package), by the image's own Python, standard
library only (Python 3.6+; the supervisor needs 3.9+). In order:

1. an injected runtime is checked against its seal and appended to ``sys.path`` (the image's
   own packages always win);
2. a persistent HOME must be writable by the kernel's user;
3. the container announces its address to the host (when the server connects to it);
4. the connection file is written from the environment (0600, in a temporary file), and
   its TCP ports must be free (on the host's network one may be taken meanwhile);
5. the lease watchdog listens: any byte renews the lease; without renewals for the timeout
   (the Jupyter process stopped or was killed) it stops the kernel; a control connection that
   proves it knows the kernel's key commands the supervisor;
6. MODULE runs as ``python -m`` would run it, or under the supervisor, which restarts it in
   place (a fresh process in the same container) when the server asks.

Any step that refuses exits with a code of its own (``*_EXIT`` in the protocol), which the
server recognises and acts on.
"""

import errno
import hashlib
import hmac
import os
import runpy
import select
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

# <host-only> (the shipped program has the protocol and the digest inline, before this)
from .digest import tree_digest
from .protocol import (
    CONTAINER_CONNECTION_FILE,
    CONTROL,
    CONTROL_OK,
    ENV_ANNOUNCE,
    ENV_CONNECTION,
    ENV_HOME_CHECK,
    ENV_LEASE,
    ENV_LEASE_TIMEOUT,
    ENV_RUNTIME,
    ENV_RUNTIME_DIGEST,
    ENV_SUPERVISE,
    EXITED,
    HOLD,
    HOME_NOT_WRITABLE,
    HOME_NOT_WRITABLE_EXIT,
    INTERRUPT,
    KILL,
    LEASE_EXPIRED,
    NONCE_BYTES,
    PORT_TAKEN,
    PORT_TAKEN_EXIT,
    RUNTIME_MISMATCH,
    RUNTIME_MISMATCH_EXIT,
    START,
    STARTED,
    TERMINATE,
)

# </host-only>

#: The kernel's pid while the supervisor runs it (else 0: the kernel is this process).
_child = [0]
#: Commands read by the watchdog thread for the supervisor, and the pipe that wakes it
#: (made by main()).
_commands: List[Tuple[bytes, socket.socket]] = []
_wake_commands = (-1, -1)
#: The container's log (main() keeps a copy: ipykernel later captures sys.stderr and fd 2).
_stderr = 2


def say(text: str) -> None:
    os.write(_stderr, text.encode() + b"\n")


def use_runtime() -> None:
    """Append an injected runtime to sys.path, once its files match their seal."""
    runtime = os.environ.get(ENV_RUNTIME)
    if not runtime:
        return
    sealed = os.environ.pop(ENV_RUNTIME_DIGEST, "")
    if sealed and tree_digest(runtime) != sealed:
        say(RUNTIME_MISMATCH)
        os._exit(RUNTIME_MISMATCH_EXIT)
    sys.path.append(runtime)


def user_site() -> None:
    """Put the user-site folder (PYTHONUSERBASE: in the container) on sys.path before
    anything is installed there: Python adds it only when it exists at startup, and a `pip
    install --user` in the kernel should import at once."""
    import site

    if not os.environ.get("PYTHONUSERBASE") or not site.ENABLE_USER_SITE:
        return
    path = site.getusersitepackages()
    if path in sys.path:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    site.addsitedir(path)


def check_home() -> None:
    """A persistent HOME its user may not write would fail deep inside IPython: stop now."""
    home = os.environ.get("HOME") or "/"
    if os.environ.pop(ENV_HOME_CHECK, "") and not os.access(home, os.W_OK):
        say("%s (uid %d)" % (HOME_NOT_WRITABLE, os.getuid()))
        os._exit(HOME_NOT_WRITABLE_EXIT)


def announce() -> None:
    """One datagram to the default gateway (the engine host's end of the bridge): the ARP
    request it needs tells the host this container's address at once, instead of after the
    host's own probes for an address a removed container had (up to a second)."""
    import struct

    with open("/proc/net/route") as routes:
        lines = routes.read().splitlines()[1:]
    for line in lines:
        fields = line.split()
        if fields[1] == "00000000":
            gateway = socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (gateway, 9))
            return


def write_connection_file() -> None:
    """The connection file from the environment, 0600 in a temporary file; argv names it."""
    connection = os.environ.pop(ENV_CONNECTION, "")
    if not connection:
        return
    import tempfile

    try:
        os.makedirs(os.environ.get("HOME") or "/", mode=0o700, exist_ok=True)
    except OSError:
        pass
    fd, path = tempfile.mkstemp(prefix="mlc-connection-", suffix=".json")  # 0600
    os.write(fd, connection.encode())
    os.close(fd)
    sys.argv = [path if a == CONTAINER_CONNECTION_FILE else a for a in sys.argv]


def bind(server: socket.socket, where: Tuple[str, int]) -> None:
    """Bind; a port taken meanwhile (on the host's network, another process may take a port
    between its choice and this bind) ends the start with PORT_TAKEN_EXIT: the server picks
    fresh ports and tries again."""
    try:
        server.bind(where)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        say("%s: %s:%d" % (PORT_TAKEN, where[0], where[1]))
        os._exit(PORT_TAKEN_EXIT)


def check_ports() -> None:
    """Each TCP port of the connection file can be bound (else PORT_TAKEN_EXIT), so that a
    port taken meanwhile is not a crash deep inside the kernel."""
    info = connection_info()
    if info.get("transport", "tcp") != "tcp":
        return
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        if info.get(name):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as zmq binds
                bind(probe, (info.get("ip") or "0.0.0.0", int(info[name])))  # noqa: S104


def connection_info() -> Dict[str, Any]:
    """The kernel's connection file (argv's ``-f``), {} when there is none."""
    import json

    try:
        with open(sys.argv[sys.argv.index("-f") + 1]) as f:
            return dict(json.load(f))
    except (ValueError, OSError, IndexError):
        return {}


def kernel_key() -> bytes:
    """The kernel's HMAC key, from its connection file (b"" when there is none)."""
    return str(connection_info().get("key", "")).encode()


def listen(address: str) -> socket.socket:
    """The lease port: "unix:PATH" or "tcp:HOST:PORT"."""
    kind, _, where = address.partition(":")
    if kind == "unix":
        server = socket.socket(socket.AF_UNIX)
        if os.path.exists(where):
            os.unlink(where)
        server.bind(where)
    else:
        host, _, port = where.rpartition(":")
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind(server, (host, int(port)))
    server.listen(8)
    return server


def watch(server: socket.socket, timeout: float, key: bytes) -> None:
    """The lease watchdog (a thread): any byte renews the lease; a control connection first
    proves that it knows the kernel's key, then sends the supervisor one-byte commands.
    No imports in this thread: a fork while it held the import lock would hang the kernel."""
    peers: Dict[socket.socket, List[Any]] = {}
    renewed = time.monotonic()
    while time.monotonic() - renewed < timeout:
        for ready in select.select([server, *peers], [], [], 1.0)[0]:
            if ready is server:
                peers[server.accept()[0]] = [None, b""]
                continue
            data = ready.recv(64)
            state = peers[ready]
            if not data:
                del peers[ready]
                ready.close()
            elif state[0] is None and data[:1] == CONTROL and key:
                nonce = os.urandom(NONCE_BYTES)
                state[0] = nonce
                ready.sendall(nonce)
            elif isinstance(state[0], bytes):
                state[1] += data
                if len(state[1]) >= 32:
                    proof = hmac.new(key, state[0], hashlib.sha256).digest()
                    if hmac.compare_digest(state[1][:32], proof):
                        state[0] = "control"
                        ready.sendall(CONTROL_OK)
                    else:
                        del peers[ready]
                        ready.close()
            elif state[0] == "control":
                _commands.extend((bytes([c]), ready) for c in data)
                os.write(_wake_commands[1], b".")
                renewed = time.monotonic()
            else:
                renewed = time.monotonic()
    say("%s for %d s (it stopped or was killed): stopping the kernel" % (LEASE_EXPIRED, timeout))
    if _child[0]:
        os.kill(_child[0], 9)
    os._exit(0)


def supervise(module: str, server: socket.socket) -> None:
    """Run the kernel in a child process, so that a restart starts a fresh one in this same
    container: HOLD = the kernel's next exit is a restart (reported as EXITED<code>), KILL /
    TERMINATE / INTERRUPT = SIGKILL / SIGTERM / SIGINT it, START = start a new one (answered
    STARTED). Signals pass to the kernel."""
    import signal

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    passed = (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGQUIT,
        signal.SIGHUP,
        signal.SIGUSR1,
        signal.SIGUSR2,
    )

    def forward(signum: int, _: Any) -> None:
        if _child[0]:
            try:
                os.kill(_child[0], signum)
            except OSError:
                pass

    for number in passed:
        signal.signal(number, forward)

    def spawn() -> None:
        pid = os.fork()
        if pid:
            _child[0] = pid
            return
        signal.set_wakeup_fd(-1)
        for number in (*passed, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        for fd in (wake_r, wake_w, *_wake_commands, server.fileno()):
            os.close(fd)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        raise SystemExit(0)

    hold = False
    control: Optional[socket.socket] = None
    spawn()
    while True:
        readable = select.select([wake_r, _wake_commands[0]], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 512)
        if _wake_commands[0] in readable:
            os.read(_wake_commands[0], 512)
        while _commands:
            command, sender = _commands.pop(0)
            if command == HOLD:
                # The exit is reported to the connection that asked for the hold (an interrupt
                # may come meanwhile on a connection of its own).
                hold, control = True, sender
            elif command in (KILL, TERMINATE) and _child[0]:
                os.kill(_child[0], signal.SIGKILL if command == KILL else signal.SIGTERM)
            elif command == INTERRUPT and _child[0]:
                os.kill(_child[0], signal.SIGINT)
            elif command == START and not _child[0]:
                spawn()
                sender.sendall(STARTED)
        if _child[0]:
            pid, status = os.waitpid(_child[0], os.WNOHANG)
            if pid:
                _child[0] = 0
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                if hold and control is not None:
                    hold = False
                    control.sendall(EXITED + b"%d\n" % code)
                else:
                    os._exit(code)


def main() -> None:
    global _stderr, _wake_commands
    _stderr = os.dup(2)
    _wake_commands = os.pipe()
    use_runtime()
    check_home()
    user_site()
    if os.environ.pop(ENV_ANNOUNCE, ""):
        try:
            announce()
        except OSError:
            pass
    write_connection_file()
    check_ports()
    lease = os.environ.pop(ENV_LEASE, "")
    timeout = float(os.environ.pop(ENV_LEASE_TIMEOUT, "0") or 0)
    supervised = os.environ.pop(ENV_SUPERVISE, "")
    module = sys.argv.pop(1)
    if lease and timeout > 0:
        server = listen(lease)
        threading.Thread(
            target=watch,
            args=(server, timeout, kernel_key()),
            name="mlcontainer-lease",
            daemon=True,
        ).start()
        if supervised:
            for preload in supervised.split(","):
                try:
                    __import__(preload)  # shared by every kernel this process starts
                except Exception:
                    pass
            supervise(module, server)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""The in-container agent, run as the container runs it (``python -c PROGRAM``), on the host's
Python: its programs, the bootstrap's refusals, the connection file, the lease watchdog, and
the supervisor driven by the server's own half (kernel/supervisor.py). No engine needed."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jupyter_mlcontainer.agent import program
from jupyter_mlcontainer.agent import protocol as p
from jupyter_mlcontainer.agent.digest import tree_digest
from jupyter_mlcontainer.kernel.supervisor import Supervisor

AGENT = Path(__file__).parent.parent / "jupyter_mlcontainer" / "agent"
KERNEL = """\
import os, sys, time
print("ran", sys.argv[1:], flush=True)
if os.environ.get("STARTS"):
    with open(os.environ["STARTS"], "a") as f:
        f.write("%d\\n" % os.getpid())
if os.environ.get("SHOW"):
    print("SHOWN", repr(eval(os.environ["SHOW"])), flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
"""


def shown(out):
    """The value the fake kernel printed for SHOW."""
    line = next(line for line in out.splitlines() if line.startswith("SHOWN "))
    return ast.literal_eval(line[len("SHOWN ") :])


@pytest.fixture
def kernel_module(tmp_path):
    (tmp_path / "mlc_fake_kernel.py").write_text(KERNEL)
    return tmp_path


def bootstrap(folder, *args, env=None, **kwargs):
    """Start the bootstrap as a container would; ``folder`` holds the fake kernel module."""
    return subprocess.Popen(
        [sys.executable, "-c", program("bootstrap"), "mlc_fake_kernel", *args],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(folder),
            "HOME": str(folder),
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.parametrize("name", ["bootstrap", "probe", "digest"])
def test_programs_are_self_contained_python(name):
    text = program(name)
    tree = ast.parse(text)
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == []
    assert "__future__" not in text  # a program is several modules' text in a row


def test_agent_imports_only_the_standard_library_and_itself():
    allowed = set(sys.stdlib_module_names) | {"torch", "pkg_resources"}  # the probe's, if there
    for path in AGENT.glob("*.py"):
        if path.name == "__init__.py":  # the host's loader, never shipped
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"


def test_the_kernel_runs_as_python_m_would(kernel_module):
    proc = bootstrap(kernel_module, "-f", "x.json")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == "ran ['-f', 'x.json']"


def test_a_runtime_is_used_only_while_it_matches_its_seal(kernel_module, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "mod.py").write_text("x = 1\n")
    env = {p.ENV_RUNTIME: str(runtime), "SHOW": "sys.path[-1]"}
    good = bootstrap(kernel_module, env={**env, p.ENV_RUNTIME_DIGEST: tree_digest(str(runtime))})
    out, err = good.communicate(timeout=30)
    assert good.returncode == 0, err
    assert shown(out) == str(runtime)  # appended: the image's packages win
    (runtime / "mod.py").write_text("x = 'poisoned'\n")
    bad = bootstrap(kernel_module, env={**env, p.ENV_RUNTIME_DIGEST: "0" * 64})
    out, err = bad.communicate(timeout=30)
    assert bad.returncode == p.RUNTIME_MISMATCH_EXIT
    assert p.RUNTIME_MISMATCH in err and "ran" not in out


def test_a_home_its_user_cannot_write_stops_the_kernel_at_once():
    # A folder another user can enter (pytest's own are root's alone), with a HOME in it that
    # belongs to root; as root, the kernel runs as uid 4321 with Debian's Python (a Python
    # under /root is not usable by other users).
    folder = Path(tempfile.mkdtemp(prefix="mlc-agent-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "mlc_fake_kernel.py").write_text(KERNEL)
        home = folder / "home"
        home.mkdir(mode=0o755)
        kwargs = {}
        if os.getuid() == 0:
            kwargs = {"user": 4321, "group": 4321, "executable": "/usr/bin/python3"}
        else:
            home.chmod(0o500)
        proc = bootstrap(folder, env={"HOME": str(home), p.ENV_HOME_CHECK: "1"}, cwd="/", **kwargs)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == p.HOME_NOT_WRITABLE_EXIT, (out, err)
        assert p.HOME_NOT_WRITABLE in err and "ran" not in out
    finally:
        shutil.rmtree(folder)


def test_the_connection_file_is_written_from_the_environment(kernel_module, tmp_path):
    connection = {"key": "secret", "shell_port": 1}
    env = {
        p.ENV_CONNECTION: json.dumps(connection),
        "SHOW": "(open(sys.argv[2]).read(), oct(os.stat(sys.argv[2]).st_mode & 0o777))",
        "TMPDIR": str(tmp_path),  # a container's /tmp
    }
    proc = bootstrap(kernel_module, "-f", p.CONTAINER_CONNECTION_FILE, env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    content, mode = shown(out)
    assert json.loads(content) == connection and mode == "0o600"
    assert p.CONTAINER_CONNECTION_FILE not in out.splitlines()[0]  # argv names the new file
    assert len(list(tmp_path.glob("mlc-connection-*.json"))) == 1  # in TMPDIR, as in /tmp


def test_a_kernel_whose_lease_is_not_renewed_stops(kernel_module, tmp_path):
    lease = tmp_path / "lease"
    env = {p.ENV_LEASE: f"unix:{lease}", p.ENV_LEASE_TIMEOUT: "1", "SLEEP": "60"}
    started = time.monotonic()
    proc = bootstrap(kernel_module, env=env)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert p.LEASE_EXPIRED in err
    assert stat.S_ISSOCK(os.stat(lease).st_mode)


async def test_the_supervisor_restarts_the_kernel_for_the_key_holder_only(kernel_module, tmp_path):
    lease = tmp_path / "lease"
    key = b"the-kernel-key"
    (tmp_path / "connection.json").write_text(json.dumps({"key": key.decode()}))
    env = {
        p.ENV_LEASE: f"unix:{lease}",
        p.ENV_LEASE_TIMEOUT: "60",
        p.ENV_SUPERVISE: "-",
        "SLEEP": "60",
        "STARTS": str(tmp_path / "starts"),
    }
    proc = bootstrap(
        kernel_module, "-f", str(tmp_path / "connection.json"), env=env, start_new_session=True
    )

    async def started(count):
        for _ in range(200):
            if (tmp_path / "starts").exists():
                pids = (tmp_path / "starts").read_text().split()
                if len(pids) >= count:
                    return pids
            await asyncio.sleep(0.05)
        raise AssertionError(f"the kernel did not start {count} time(s)")

    try:
        for _ in range(100):
            if lease.exists():
                break
            await asyncio.sleep(0.05)
        with pytest.raises(Exception, match=r"refused the kernel's key|no supervisor answered"):
            await Supervisor.connect(str(lease), b"not-the-key")
        await started(1)
        supervisor = await Supervisor.connect(str(lease), key)
        await supervisor.hold()
        await supervisor.signal(kill=True)
        for _ in range(100):
            if supervisor.exit_code() is not None:
                break
            await asyncio.sleep(0.05)
        assert supervisor.exit_code() == 128 + 9  # SIGKILL, and the container lives on
        assert proc.poll() is None
        await supervisor.start()  # a fresh kernel process in the same "container"
        first, second = await started(2)
        assert first != second
        supervisor.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its kernel, as a container's end
        out, _ = proc.communicate(timeout=30)
    assert out.count("ran") == 2


async def test_an_interrupt_through_the_supervisor_reaches_the_kernel_only(kernel_module, tmp_path):
    """A backend without signals (Swarm) interrupts through the supervisor, on a connection of
    its own: the kernel gets SIGINT, the supervisor lives on, and the exit of a kernel held for
    a restart is still reported to the connection that asked for the hold."""
    lease = tmp_path / "lease"
    key = b"the-kernel-key"
    (tmp_path / "connection.json").write_text(json.dumps({"key": key.decode()}))
    env = {
        p.ENV_LEASE: f"unix:{lease}",
        p.ENV_LEASE_TIMEOUT: "60",
        p.ENV_SUPERVISE: "-",
        "SLEEP": "60",
        "STARTS": str(tmp_path / "starts"),
    }
    proc = bootstrap(
        kernel_module, "-f", str(tmp_path / "connection.json"), env=env, start_new_session=True
    )
    try:
        for _ in range(200):
            if lease.exists() and (tmp_path / "starts").exists():
                break
            await asyncio.sleep(0.05)
        held = await Supervisor.connect(str(lease), key)
        await held.hold()
        interrupting = await Supervisor.connect(str(lease), key)
        await interrupting.interrupt()
        interrupting.close()
        for _ in range(100):
            if held.exit_code() is not None:
                break
            await asyncio.sleep(0.05)
        assert held.exit_code() == 128 + 2  # SIGINT: the sleeping fake kernel had no handler
        assert proc.poll() is None  # the supervisor was not interrupted
        held.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)

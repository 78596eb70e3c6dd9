"""A container kernel behaves like a local one: execute, interrupt, restart, shut down."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from .conftest import (
    IMAGE,
    TEST_GID,
    TEST_UID,
    assert_removed,
    containers_of,
    execute,
    running_kernel,
    wait_for_iopub,
    wait_for_stream,
)

pytestmark = pytest.mark.engine


async def test_code_runs_in_the_container(kernelspec, notebook_dir, docker_api):
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, reply = await execute(
            kc,
            "import os, socket, sys\n"
            "print(socket.gethostname())\n"
            "print(sys.executable)\n"
            "print(os.path.exists('/.dockerenv'))\n"
            "print(os.getcwd())",
        )
        assert reply["status"] == "ok", out
        hostname, executable, dockerenv, cwd = out.split()
        container_id = km.provisioner.container_id
        assert container_id.startswith(hostname)
        assert executable == "/opt/venv/bin/python3"  # the image's Python, not the server's
        assert dockerenv == "True"
        assert cwd == str(notebook_dir)
        state = docker_api.inspect_container(container_id)
        assert state["Config"]["Image"] == "mlcontainer/python:3.11"
        assert state["HostConfig"]["Init"] is True
        assert state["Config"]["Labels"]["org.jupyter-mlcontainer.kernel-id"] == km.kernel_id
    await assert_removed(docker_api, km.kernel_id)


async def test_interrupt_keeps_variables(kernelspec, notebook_dir):
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        await execute(kc, "x = 42")
        msg_id = kc.execute("print('looping', flush=True)\nwhile True:\n    pass")
        await wait_for_stream(kc, msg_id, "looping")  # the user's code runs: now interrupt it
        await km.interrupt_kernel()
        reply = await kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = await kc.get_shell_msg(timeout=10)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        out, _ = await execute(kc, "print(x)")
        assert out.strip() == "42"


@pytest.mark.parametrize("now", [False, True])
async def test_restart_starts_a_fresh_kernel_in_the_same_container(
    kernelspec, notebook_dir, docker_api, now
):
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        await execute(kc, "import os; y = 'before'; open('/tmp/scratch', 'w').write('x')")
        out, _ = await execute(kc, "print(os.getpid())")
        container, pid = km.provisioner.container_id, out.strip()
        await km.restart_kernel(now=now)
        await kc.wait_for_ready(timeout=60)  # the client made before the restart still works
        await wait_for_iopub(kc)
        assert km.provisioner.container_id == container
        out, _ = await execute(
            kc, "import os; print('y' in globals(), os.getpid(), os.path.exists('/tmp/scratch'))"
        )
        fresh, new_pid, scratch = out.split()
        assert fresh == "False" and new_pid != pid  # a new process: its state is gone
        assert scratch == "True"  # files outside mounts stay (the README says so)
        assert [c["Id"] for c in containers_of(docker_api, km.kernel_id)] == [container]
        # It still dies and is reported as before: the supervisor passes the exit on.
        assert (await km.provisioner.poll()) is None
    await assert_removed(docker_api, km.kernel_id)


async def test_restart_replaces_the_container_when_asked_to(kernelspec, notebook_dir, docker_api):
    async with running_kernel(kernelspec(restart_in_container=False), notebook_dir) as (km, kc):
        await execute(kc, "y = 'before'")
        old = km.provisioner.container_id
        address = km.ip
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)  # the client made before the restart still works
        await wait_for_iopub(kc)
        new = km.provisioner.container_id
        assert new and new != old
        # The new container has the old one's address: open channels stay connected.
        networks = docker_api.inspect_container(new)["NetworkSettings"]["Networks"]
        assert km.ip == address == networks["mlc-kernels"]["IPAddress"]
        out, reply = await execute(kc, "print('y' in globals())")
        assert out.strip() == "False"
        ids = [c["Id"] for c in containers_of(docker_api, km.kernel_id)]
        assert ids == [new]  # the old container is gone, not just stopped
    await assert_removed(docker_api, km.kernel_id)


async def test_a_changed_kernelspec_restarts_in_a_new_container(
    kernelspec, notebook_dir, docker_api
):
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (km, kc):
        old = km.provisioner.container_id
        kernelspec(name, mem_limit="300m")  # edited while the kernel runs
        km._kernel_spec = None  # what jupyter_client does when it reloads the kernelspec
        km.provisioner.mem_limit = "300m"
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        new = km.provisioner.container_id
        assert new != old
        assert docker_api.inspect_container(new)["HostConfig"]["Memory"] == 300 * 2**20


async def test_files_belong_to_the_user_and_relative_paths_work(kernelspec, notebook_dir):
    (notebook_dir / "data.txt").write_text("hello from the host")
    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        out, reply = await execute(
            kc,
            "import os, pathlib\n"
            "print(open('data.txt').read())\n"
            "pathlib.Path('written.txt').write_text('from the kernel')\n"
            "home = pathlib.Path.home(); (home / 'probe').write_text('ok')\n"
            "print(os.getuid(), os.getgid(), home)",
        )
        assert reply["status"] == "ok", out
        first, ids = out.strip().splitlines()
        assert first == "hello from the host"
        uid, gid, home = ids.split()
        assert (int(uid), int(gid)) == (TEST_UID, TEST_GID)
        assert home == "/tmp/mlcontainer/home"
    written = notebook_dir / "written.txt"
    assert written.read_text() == "from the kernel"
    assert (written.stat().st_uid, written.stat().st_gid) == (TEST_UID, TEST_GID)


async def test_explicit_uid_and_gid(kernelspec, tmp_path):
    tmp_path.chmod(0o777)
    async with running_kernel(kernelspec(uid=5000, gid=5001), tmp_path) as (km, kc):
        out, _ = await execute(kc, "import os; print(os.getuid(), os.getgid())")
        assert out.split() == ["5000", "5001"]


@pytest.mark.parametrize("access", ["address", "ports"])
async def test_server_environment_stays_out_and_ports_are_local(
    kernelspec, notebook_dir, docker_api, monkeypatch, access
):
    monkeypatch.setenv("JUPYTER_TOKEN", "server-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-credential")
    monkeypatch.setenv("TZ", "Europe/Paris")
    name = kernelspec(env={"FROM_SPEC": "spec-value"}, bridge_access=access)
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, "import os, json; print(json.dumps(dict(os.environ)))")
        env = json.loads(out)
        assert "JUPYTER_TOKEN" not in env
        assert "AWS_SECRET_ACCESS_KEY" not in env
        assert env["JPY_PARENT_PID"] == "1"  # the container's init, never the server's pid
        assert env["FROM_SPEC"] == "spec-value"
        assert env["TZ"] == "Europe/Paris"  # allowlisted
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
        # The connection (its key) reached the kernel as a file only, never its environment.
        assert not [k for k in env if k.startswith("JUPYTER_MLCONTAINER_CONNECTION")]
        assert km.session.key.decode() not in out

        info = docker_api.inspect_container(km.provisioner.container_id)
        bindings = info["HostConfig"]["PortBindings"] or {}
        published = info["NetworkSettings"]["Ports"] or {}
        host_file = json.loads(Path(km.connection_file).read_text())
        if access == "ports":
            ports = {km.shell_port, km.iopub_port, km.stdin_port, km.hb_port, km.control_port}
            ports.add(
                km.provisioner.container.lease_port
            )  # the lease watchdog's, also on loopback only
            assert {int(k.split("/")[0]) for k in bindings} == ports
            for binding in [*bindings.values(), *published.values()]:
                assert all(b["HostIp"] == "127.0.0.1" for b in binding)
            assert host_file["ip"] == "127.0.0.1"
        else:  # nothing published: the server connects to the container on the kernels' network
            assert not bindings and not any(published.values())
            address = info["NetworkSettings"]["Networks"]["mlc-kernels"]["IPAddress"]
            assert host_file["ip"] == km.ip == address

        # The container has its own connection file (0600); Jupyter's own is untouched.
        out, _ = await execute(
            kc,
            "import os, json; from ipykernel.kernelapp import IPKernelApp\n"
            "p = IPKernelApp.instance().abs_connection_file\n"
            "print(oct(os.stat(p).st_mode & 0o777), json.load(open(p))['ip'])",
        )
        assert out.split() == ["0o600", "0.0.0.0"]
        assert oct(os.stat(km.connection_file).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("network", ["host", "none"])
async def test_other_network_modes(kernelspec, notebook_dir, docker_api, network, policy):
    policy(allowed_networks=["bridge", "host", "none"])
    async with running_kernel(kernelspec(network=network), notebook_dir) as (km, kc):
        out, reply = await execute(kc, "import os; print(sorted(os.listdir('/sys/class/net')))")
        assert reply["status"] == "ok", out
        info = docker_api.inspect_container(km.provisioner.container_id)
        assert info["HostConfig"]["NetworkMode"] == network
        if network == "none":
            assert out.strip() == "['lo']"  # no network at all
            assert km.transport == "ipc"
        await km.restart_kernel()
        await kc.wait_for_ready(timeout=60)
        await wait_for_iopub(kc)
        out, reply = await execute(kc, "print(6 * 7)")
        assert out.strip() == "42"
    await assert_removed(docker_api, km.kernel_id)


async def test_a_port_taken_on_the_host_network_gets_fresh_ports(
    kernelspec, notebook_dir, policy, monkeypatch
):
    """On the host's network a chosen port can be taken between its choice and the kernel's
    bind (another process, or an outgoing connection's ephemeral port). The race is forced:
    the port cache hands out a port this test holds. The kernel's bootstrap refuses it with
    its own exit code, and the start goes on with fresh ports."""
    from jupyter_client.connect import LocalPortCache

    policy(allowed_networks=["bridge", "host", "none"])
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))  # what a kernel on the host's network binds
    holder.listen()
    taken = holder.getsockname()[1]
    real = LocalPortCache.find_available_port
    handed: list[int] = []

    def first_one_taken(self: LocalPortCache, ip: str) -> int:
        port = taken if not handed else real(self, ip)
        handed.append(port)
        return port

    monkeypatch.setattr(LocalPortCache, "find_available_port", first_one_taken)
    try:
        async with running_kernel(kernelspec(network="host"), notebook_dir) as (km, kc):
            out, _ = await execute(kc, "print(6 * 7)")
            assert out.strip() == "42"
            ports = [km.get_connection_info()[f"{n}_port"] for n in PORT_KINDS]
            assert taken not in ports and taken == handed[0]
            exit_ = km.provisioner.run.launches
            assert exit_ == 2, f"one refused start, then one with fresh ports: {exit_} starts"
    finally:
        holder.close()


PORT_KINDS = ("shell", "iopub", "stdin", "control", "hb")


async def test_graceful_shutdown_lets_the_kernel_exit(kernelspec, notebook_dir, docker_api):
    from jupyter_client import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernelspec())
    await km.start_kernel(cwd=str(notebook_dir))
    # Once it is up (ipykernel itself crashes on a shutdown_request that races its start).
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    kc.stop_channels()
    await km.shutdown_kernel()  # shutdown_request over the control channel, no signal
    assert km.provisioner.last_exit is not None
    assert km.provisioner.last_exit.exit_code == 0, km.provisioner.last_exit.message()
    await assert_removed(docker_api, km.kernel_id)
    await km.provisioner.cleanup()  # a second cleanup is harmless


async def test_curve_encrypted_kernel_traffic(kernelspec, notebook_dir):
    name = kernelspec(metadata={"supported_encryption": ["curve"]})
    async with running_kernel(name, notebook_dir, transport_encryption="required") as (km, kc):
        assert km.curve_publickey is not None
        code = (
            "import json; from ipykernel.kernelapp import IPKernelApp\n"
            "p = IPKernelApp.instance().abs_connection_file\n"
            "print(bool(json.load(open(p)).get('curve_secretkey')))"
        )
        out, _ = await execute(kc, code)
        assert out.strip() == "True"


async def test_extra_arguments_reach_the_kernel(kernelspec, notebook_dir):
    # nbclient passes this one by default: history in memory, nothing written to HOME.
    extra = ["--HistoryManager.hist_file=:memory:"]
    async with running_kernel(kernelspec(), notebook_dir, extra_arguments=extra) as (km, kc):
        out, _ = await execute(kc, "print(get_ipython().history_manager.hist_file)")
        assert out.strip() == ":memory:"


async def test_a_host_port_taken_meanwhile_gets_fresh_ports(kernelspec, notebook_dir):
    name = kernelspec(bridge_access="ports")  # published ports (a container address has its own)
    async with running_kernel(name, notebook_dir) as (first, _):
        taken = first.shell_port  # published by the engine for the first kernel
        # A manager that keeps the ports it is given, as a concurrent start would have
        # picked this one just before the engine published it for the other kernel.
        async with running_kernel(name, notebook_dir, cache_ports=False, shell_port=taken) as (
            second,
            kc,
        ):
            assert second.shell_port != taken
            out, _ = await execute(kc, "print('fresh ports')")
            assert out.strip() == "fresh ports"


async def test_sixteen_concurrent_starts_all_work(kernelspec, notebook_dir, docker_api):
    name = kernelspec()

    async def one(i: int) -> str:
        async with running_kernel(name, notebook_dir) as (km, kc):
            out, _ = await execute(kc, f"print({i} * 2)")
            return out.strip()

    results = await asyncio.gather(*(one(i) for i in range(16)))
    assert results == [str(i * 2) for i in range(16)]


async def test_the_container_is_locked_down(kernelspec, notebook_dir, docker_api):
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (km, kc):
        state = docker_api.inspect_container(km.provisioner.container_id)
        host = state["HostConfig"]
        assert host["CapDrop"] == ["ALL"]
        assert not host["CapAdd"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert not any("unconfined" in opt for opt in host["SecurityOpt"])  # default seccomp
        assert host["PidsLimit"] == 4096
        assert host["Init"] is True
        assert host["Privileged"] is False
        assert state["Config"]["User"] == f"{TEST_UID}:{TEST_GID}"  # the notebook's owner
        sources = [m["Source"] for m in state["Mounts"]]
        assert not any(s.endswith("docker.sock") for s in sources)
        assert "/" not in sources
        bindings = [b for ports in (host["PortBindings"] or {}).values() for b in ports]
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings)
        # Nothing published at all: the server reaches the kernel at its own address.
        assert not bindings and km.ip == km.provisioner.container.ip != ""
        out, _ = await execute(
            kc,
            "import os\n"
            "print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
            "print(open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])",
        )
        ids, no_new_privs = out.strip().splitlines()
        uid, effective_caps = ids.split()
        assert int(uid) == TEST_UID
        assert int(effective_caps, 16) == 0
        assert no_new_privs == "1"


def _connects_from_a_container(api, network: str, ip: str, port: int) -> bool:
    """Whether a container on ``network`` can open a TCP connection to ip:port."""
    probe = (
        "import socket, sys\n"
        "s = socket.socket(); s.settimeout(3)\n"
        f"sys.exit(0 if s.connect_ex(({ip!r}, {port})) == 0 else 1)"
    )
    container = api.create_container(
        IMAGE, ["python3", "-c", probe], host_config=api.create_host_config(network_mode=network)
    )
    try:
        api.start(container["Id"])
        return api.wait(container["Id"], timeout=30)["StatusCode"] == 0
    finally:
        api.remove_container(container["Id"], force=True)


async def test_no_other_container_reaches_the_kernels_ports(kernelspec, notebook_dir, docker_api):
    name = kernelspec()
    async with running_kernel(name, notebook_dir) as (km, kc):
        state = docker_api.inspect_container(km.provisioner.container_id)
        networks = state["NetworkSettings"]["Networks"]
        assert list(networks) == ["mlc-kernels"]
        ip = networks["mlc-kernels"]["IPAddress"]
        options = docker_api.inspect_network("mlc-kernels")["Options"]
        assert options["com.docker.network.bridge.enable_icc"] == "false"
        port = km.iopub_port  # the container's port is the host's: published 1:1
        for network in ("bridge", "mlc-kernels"):  # Docker's default network, and the kernels'
            assert not _connects_from_a_container(docker_api, network, ip, port), network
        out, _ = await execute(kc, "print('still reachable from the host')")
        assert out.strip() == "still reachable from the host"


async def test_home_and_caches_survive_a_restart(kernelspec, notebook_dir, docker_api):
    name = kernelspec(restart_in_container=False)  # the caches must outlive the container
    code = (
        "import os, pathlib\n"
        "cache = pathlib.Path.home() / '.cache' / 'mlc-test'\n"
        "cache.mkdir(parents=True, exist_ok=True)\n"
        "(cache / 'weights.bin').write_bytes(b'w' * 1024)\n"
        "print(os.stat(pathlib.Path.home()).st_uid)"
    )
    async with running_kernel(name, notebook_dir) as (km, kc):
        out, _ = await execute(kc, code)
        assert int(out) == TEST_UID  # the user's own HOME, writable
        first = km.provisioner.container_id
        mounts = docker_api.inspect_container(first)["Mounts"]
        home = next(m for m in mounts if m["Destination"] == "/tmp/mlcontainer/home")
        assert home["Name"] == f"mlc-home-{TEST_UID}-mlcontainer-python"
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=60)
        await wait_for_iopub(kc)
        assert km.provisioner.container_id != first  # a new container, the same HOME
        out, _ = await execute(
            kc,
            "import pathlib; print((pathlib.Path.home() / '.cache/mlc-test/weights.bin').stat().st_size)",
        )
        assert out.strip() == "1024"
    volume = docker_api.inspect_volume(home["Name"])
    assert volume["Labels"]["org.jupyter-mlcontainer.purpose"] == "home"
    assert volume["Labels"]["org.jupyter-mlcontainer.home-uid"] == str(TEST_UID)


async def test_only_the_kernels_key_commands_its_supervisor(kernelspec, notebook_dir):
    from jupyter_mlcontainer.kernel.reach import lease_target
    from jupyter_mlcontainer.kernel.supervisor import Supervisor, SupervisorError

    async with running_kernel(kernelspec(), notebook_dir) as (km, kc):
        target = lease_target(km.provisioner.container, km.provisioner.container.launch)
        with pytest.raises(SupervisorError):
            await Supervisor.connect(target, b"not-the-kernel's-key")
        out, _ = await execute(kc, "print('untouched')")
        assert out.strip() == "untouched"

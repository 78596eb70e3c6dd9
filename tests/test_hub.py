"""Gateway mode with a real JupyterHub: the hub's users, each with their own single-user
server, reach container kernels through the gateway, which asks the hub whose each token is
(jupyter_mlcontainer/server/gateway/hub.py).

The hub runs as root (its own ports, database and folder in tmp), spawns two system users made
here (``mlc-alice``, ``mlc-bob``, removed at the end) with its default LocalProcessSpawner:
their servers run as them, without the engine's socket, configured by the hub to use the
gateway with their own ``JUPYTERHUB_API_TOKEN``. Needs root, and configurable-http-proxy
(``scripts/dev setup`` installs it in .build/chp; the hub fixture does if it is missing).
"""

from __future__ import annotations

import grp
import importlib.metadata
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.escape import json_decode
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect
from traitlets import TraitError

from jupyter_mlcontainer.cli.gateway import GatewayApp
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.server.gateway import HubIdentityProvider
from jupyter_mlcontainer.server.gateway import hub as hub_module
from jupyter_mlcontainer.server.gateway.hub import holds

from .conftest import containers_of
from .servers import free_port, run_code

ROOT = Path(__file__).resolve().parent.parent
CHP = ROOT / ".build" / "chp"
#: The users' servers' environment: JupyterHub's single-user server and Jupyter Server, with
#: nothing of this project (users need none of it), on a Python every user may run, in a
#: folder every user may reach (a clone may lie in a folder only its owner enters, as CI's
#: does). scripts/dev setup makes it (as root, for the test's users).
USERS_VENV = Path(
    f"/opt/jupyter-mlcontainer-tests/hub-users-{importlib.metadata.version('jupyterhub')}"
)
LOGS = ROOT / ".build" / "logs"
GATEWAY = "jupyter_mlcontainer.server.gateway"
#: System users made for these tests alone (a previous run's are removed first).
USERS = ("mlc-alice", "mlc-bob")
ADMIN_TOKEN = secrets.token_hex(16)  # the test's own service: starts servers, makes tokens


def proxy_command() -> str:
    """configurable-http-proxy, installed into .build/chp by npm if it is not there yet."""
    binary = CHP / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("configurable-http-proxy needs Node.js and npm: install them, then run "
                    "`bash scripts/dev setup`")  # fmt: skip
    logged([npm, "install", "--prefix", str(CHP), "configurable-http-proxy"],
           LOGS / "configurable-http-proxy.log", f"installing configurable-http-proxy into {CHP}")  # fmt: skip
    return str(binary)


def logged(command: list[str], log: Path, what: str) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"{what} (log: {log})", file=sys.stderr)
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    if done.returncode:
        pytest.fail(f"{what} failed:\n{log.read_text()[-3000:]}")


def singleuser_command() -> str:
    """jupyterhub-singleuser in :data:`USERS_VENV`, made if missing: a venv of the system's
    Python, since this one's interpreter may lie where other users cannot reach it."""
    singleuser = USERS_VENV / "bin" / "jupyterhub-singleuser"
    if singleuser.exists():
        return str(singleuser)
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("the users' servers need a system python3 (apt-get install python3-venv)")
    log = LOGS / "hub-users.log"
    USERS_VENV.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    USERS_VENV.parent.chmod(0o755)
    logged([python, "-m", "venv", str(USERS_VENV)], log, "making the hub users' environment")
    hub_version = importlib.metadata.version("jupyterhub")
    logged([str(USERS_VENV / "bin" / "python"), "-m", "pip", "install",
            f"jupyterhub=={hub_version}", "jupyter_server"], log,
           "installing jupyterhub and jupyter_server into it")  # fmt: skip
    return str(singleuser)


def remove_user(name: str) -> None:
    """Remove test user ``name`` and their home, ending their processes first (by id)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    found = subprocess.run(["pgrep", "-u", name], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    done = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
    if done.returncode not in (0, 12):  # 12: the home was gone already
        print(f"userdel {name}: {done.stderr}", file=sys.stderr)


@pytest.fixture(scope="module")
def system_users() -> Iterator[dict[str, pwd.struct_passwd]]:
    """Two system users, as an admin makes them (not in the docker group), removed after."""
    if os.getuid() != 0:
        pytest.skip("the hub spawns servers as system users: run the tests as root")
    for name in USERS:
        remove_user(name)
    try:
        for name in USERS:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name],
                           check=True, capture_output=True, text=True)  # fmt: skip
        yield {name: pwd.getpwnam(name) for name in USERS}
    finally:
        for name in USERS:
            remove_user(name)


def wait_until_answers(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``url`` answers anything (a refusal too); fail with the log if it dies."""
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.25)
    pytest.fail(f"{url} did not answer:\n{log.read_text()[-5000:]}")


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (what an admin's systemctl stop sends), SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Hub:
    """JupyterHub as root, in ``folder``: the gateway is its service ``mlc-gateway``, each
    user's server is told to use the gateway at ``gateway_url`` with its own hub token."""

    def __init__(self, folder: Path, gateway_url: str):
        folder.mkdir(mode=0o700)
        port, hub_port, proxy_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"  # the proxy: users' servers, at /user/NAME/
        self.api = f"http://127.0.0.1:{hub_port}/hub/api"  # the hub itself, for the gateway
        self.log = folder / "hub.log"
        singleuser = singleuser_command()
        config = f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.command = [{proxy_command()!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.Authenticator.allowed_users = {set(USERS)!r}
c.JupyterHub.services = [
    {{"name": "mlc-gateway"}},  # needs no token: any token may say whose it is
    {{"name": "test-admin", "api_token": {ADMIN_TOKEN!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "test-admin", "services": ["test-admin"],
      "scopes": ["admin:users", "admin:servers", "admin:groups", "tokens"]}},
    # The users may use the gateway, and their servers' tokens say so (docs/gateway.md).
    {{"name": "gateway-users", "users": {list(USERS)!r},
      "scopes": ["access:services!service=mlc-gateway"]}},
]
c.Spawner.server_token_scopes = [
    "access:servers!server", "users:activity!user", "access:services!service=mlc-gateway",
]
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.environment = {{
    "JUPYTER_GATEWAY_URL": {gateway_url!r},
    # Each server's own hub token: the gateway asks the hub whose it is.
    "JUPYTER_GATEWAY_AUTH_TOKEN": lambda spawner: spawner.api_token,
    "JUPYTER_GATEWAY_REQUEST_TIMEOUT": "120",
}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
"""
        (folder / "jupyterhub_config.py").write_text(config)
        # Without PYTHONPATH (which the hub passes on to servers): they have nothing of ours.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "jupyterhub"), "-f", "jupyterhub_config.py"],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_answers(self.api + "/", self.process, self.log)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> Any:
        """The hub's API as ``token`` (the test's admin service by default)."""
        return http(method, self.api + path, token, body)

    def token_for(self, name: str) -> str:
        """A new API token of user ``name`` (what a user makes on the hub's token page)."""
        return str(self.call("POST", f"/users/{name}/tokens", {"note": "test"})["token"])

    def start_server(self, name: str) -> None:
        self.call("POST", f"/users/{name}/server")
        for _ in range(480):
            server = self.call("GET", f"/users/{name}")["servers"].get("")
            if server and server["ready"]:
                return
            time.sleep(0.25)
        pytest.fail(f"{name}'s server did not start:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text()[-8000:]

    def close(self) -> None:
        stop(self.process)  # its users' servers and its proxy stop with it


def http(method: str, url: str, token: str | None, body: Any = None) -> Any:
    """One request with ``Authorization: token TOKEN``; the reply's JSON (None when empty)."""
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}"} if token else {},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        text = reply.read()
    return json.loads(text) if text else None


def refused(method: str, url: str, token: str | None, body: Any = None) -> int:
    with pytest.raises(urllib.error.HTTPError) as info:
        http(method, url, token, body)
    return info.value.code


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, system_users: Any, gateway_port: int
) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("hub") / "hub", f"http://127.0.0.1:{gateway_port}")
    try:
        for name in USERS:  # the hub knows its allowed users; an admin could add them so
            hub.call("GET", f"/users/{name}")
        yield hub
    except BaseException:
        print(hub.text(), file=sys.stderr)
        raise
    finally:
        hub.close()


# --- the identity provider against a real hub, in this process ---------------------------


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest, notebook_dir: Path) -> dict[str, Any]:
    """A gateway whose users are the hub's (for a test that asks for ``hub``; else a hub that
    does not answer); mlc-bob's group ``mlc-admins`` makes him admin."""
    if "hub" in request.fixturenames:
        api = request.getfixturevalue("hub").api
    else:
        api = f"http://127.0.0.1:{free_port()}/hub/api"  # nothing listens there
    return {
        "ServerApp": {
            "root_dir": str(notebook_dir),
            "jpserver_extensions": {"jupyter_mlcontainer": True},
            "identity_provider_class": f"{GATEWAY}.HubIdentityProvider",
            "kernel_manager_class": f"{GATEWAY}.OwnedKernelManager",
            "session_manager_class": f"{GATEWAY}.OwnedSessionManager",
            "authorizer_class": f"{GATEWAY}.GatewayAuthorizer",
        },
        "HubIdentityProvider": {"hub_api_url": api, "admin_groups": {"mlc-admins"}},
        "MLContainerExtension": {"reap_orphans": False},
    }


async def fetch(jp_fetch: Any, token: str | None, *parts: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"token {token}"} if token else {}
    response = await jp_fetch(*parts, headers=headers, **kwargs)
    return json_decode(response.body) if response.body else None


async def code_of(jp_fetch: Any, token: str | None, *parts: str) -> int:
    with pytest.raises(HTTPClientError) as info:
        await fetch(jp_fetch, token, *parts)
    return info.value.code


async def test_hub_tokens_say_who_a_request_is(jp_fetch, jp_serverapp, hub):
    alice, bob = hub.token_for("mlc-alice"), hub.token_for("mlc-bob")
    me = await fetch(jp_fetch, alice, "api", "me")
    assert me["identity"]["username"] == "mlc-alice"
    assert await fetch(jp_fetch, alice, "api", "kernels") == []
    # A token the hub does not know, none at all, a service's token: refused.
    assert await code_of(jp_fetch, "not-a-hub-token", "api", "kernels") == 403
    assert await code_of(jp_fetch, None, "api", "kernels") == 403
    assert await code_of(jp_fetch, ADMIN_TOKEN, "api", "kernels") == 403
    # Admins by hub group: files are for admins only.
    assert await code_of(jp_fetch, bob, "api", "contents") == 403
    hub.call("POST", "/groups/mlc-admins", {"users": ["mlc-bob"]})
    try:
        bob = hub.token_for("mlc-bob")  # a new token: the last one's answer is cached
        assert await fetch(jp_fetch, bob, "api", "contents") is not None
        assert await code_of(jp_fetch, alice, "api", "contents") == 403
    finally:
        hub.call("DELETE", "/groups/mlc-admins")
    # A token made for something else: refused once the gateway asks for a scope.
    narrow = hub.call("POST", "/users/mlc-alice/tokens",
                      {"note": "narrow", "scopes": ["users:activity!user=mlc-alice"]})["token"]  # fmt: skip
    assert await fetch(jp_fetch, narrow, "api", "kernels") == []
    provider = jp_serverapp.identity_provider
    provider.access_scopes = {"access:services!service=mlc-gateway"}
    provider._answers.clear()
    assert await code_of(jp_fetch, narrow, "api", "kernels") == 403
    assert await fetch(jp_fetch, alice, "api", "kernels") == []  # hers may: her role
    provider.access_scopes = set()
    # The hub's answer is kept a while: a revoked token works until it expires.
    (made,) = [t for t in hub.call("GET", "/users/mlc-alice/tokens")["api_tokens"]
               if t["note"] == "test"]  # fmt: skip
    hub.call("DELETE", f"/users/mlc-alice/tokens/{made['id']}")
    assert await fetch(jp_fetch, alice, "api", "kernels") == []
    provider.cache_max_age = 0
    provider._answers.clear()
    assert await code_of(jp_fetch, alice, "api", "kernels") == 403


async def test_an_unreachable_hub_answers_503(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await fetch(jp_fetch, "any-token", "api", "kernels")
    assert info.value.code == 503
    assert "cannot check tokens: JupyterHub's API" in info.value.response.body.decode()


# --- a hub's users, their servers, the gateway and its kernels ---------------------------


class HubGateway:
    """``jupyter mlcontainer gateway --hub`` as a subprocess (as the hub's external service)."""

    def __init__(self, hub: Hub, port: int, root: Path, runtime: Path, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTERHUB_API_URL": hub.api}
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway", "--hub",
                 f"--port={port}", f"--root-dir={root}", "--", "--allow-root",
                 "--HubIdentityProvider.access_scopes=access:services!service=mlc-gateway"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_answers(self.url + "/api/kernels", self.process, log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        stop(self.process)


@pytest.mark.engine
async def test_hub_users_run_kernels_through_the_gateway_as_themselves(
    hub, system_users, gateway_port, kernelspec, tmp_path, docker_api
):
    started = time.monotonic()
    name = kernelspec("mlc-hub")
    (tmp_path / "gateway-root").mkdir()
    gateway = HubGateway(hub, gateway_port, tmp_path / "gateway-root",
                         tmp_path / "gateway-runtime", tmp_path / "gateway.log")  # fmt: skip
    tokens = {user: hub.token_for(user) for user in USERS}
    kernels: dict[str, str] = {}  # kernel id -> the user whose token shuts it down
    every: list[str] = []
    try:
        docker_gid = grp.getgrnam("docker").gr_gid if _has_group("docker") else None
        for user, account in system_users.items():
            # Unprivileged: not in the engine socket's group.
            assert docker_gid not in os.getgrouplist(user, account.pw_gid)
            hub.start_server(user)

        def server(user: str, path: str) -> str:
            return f"{hub.url}/user/{user}/api/{path}"

        alice = USERS[0]
        kernel = http("POST", server(alice, "kernels"), tokens[alice], {"name": name})
        kernels[kernel["id"]] = alice
        every = [kernel["id"]]
        (container,) = containers_of(docker_api, kernel["id"])
        account = system_users[alice]
        inspected = docker_api.inspect_container(container["Id"])
        assert inspected["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"
        assert container["Labels"][labels.USER] == alice
        # Its channels, from the browser's side: the hub's proxy, her server, the gateway.
        ws = await websocket_connect(
            HTTPRequest(
                server(alice, f"kernels/{kernel['id']}/channels").replace("http:", "ws:"),
                headers={"Authorization": f"token {tokens[alice]}"},
            )
        )
        out = await run_code(ws, "import os; print(os.getuid(), os.getgid())")
        ws.close()
        assert out.split() == [str(account.pw_uid), str(account.pw_gid)]

        # Alice's server lists it; Bob's does not, and cannot reach it by id.
        assert [k["id"] for k in http("GET", server(alice, "kernels"), tokens[alice])] == [
            kernel["id"]
        ]
        bob = USERS[1]
        assert http("GET", server(bob, "kernels"), tokens[bob]) == []
        assert refused("GET", server(bob, f"kernels/{kernel['id']}"), tokens[bob]) == 404

        # The gateway itself: a token of no user, none, a service's: refused.
        assert refused("GET", f"{gateway.url}/api/kernels", "not-a-hub-token") == 403
        assert refused("GET", f"{gateway.url}/api/kernels", None) == 403
        assert refused("GET", f"{gateway.url}/api/kernels", ADMIN_TOKEN) == 403
        # Bob's token for something else: not for the gateway (access_scopes).
        narrow = hub.call("POST", f"/users/{bob}/tokens",
                          {"note": "narrow", "scopes": [f"users:activity!user={bob}"]})["token"]  # fmt: skip
        assert refused("GET", f"{gateway.url}/api/kernels", narrow) == 403
        # Bob claiming to be Alice changes nothing: his kernel, his uid.
        claim = {"name": name, "env": {"KERNEL_USERNAME": alice}}
        bobs = http("POST", f"{gateway.url}/api/kernels", tokens[bob], claim)
        kernels[bobs["id"]] = bob
        every.append(bobs["id"])
        (container,) = containers_of(docker_api, bobs["id"])
        account = system_users[bob]
        inspected = docker_api.inspect_container(container["Id"])
        assert inspected["Config"]["User"] == f"{account.pw_uid}:{account.pw_gid}"
        assert container["Labels"][labels.USER] == bob
        assert [k["id"] for k in http("GET", server(alice, "kernels"), tokens[alice])] == [
            kernel["id"]
        ]
        # (A user's server lists the kernels it started itself; the gateway, each user's own.)
        assert [k["id"] for k in http("GET", f"{gateway.url}/api/kernels", tokens[bob])] == [
            bobs["id"]
        ]
        assert [k["id"] for k in http("GET", f"{gateway.url}/api/kernels", tokens[alice])] == [
            kernel["id"]
        ]

        http("DELETE", server(alice, f"kernels/{kernel['id']}"), tokens[alice])
        del kernels[kernel["id"]]
        http("DELETE", f"{gateway.url}/api/kernels/{bobs['id']}", tokens[bob])
        del kernels[bobs["id"]]
        assert http("GET", f"{gateway.url}/api/kernels", tokens[alice]) == []
    except BaseException:
        print(gateway.log.read_text()[-6000:], file=sys.stderr)
        print(hub.text(), file=sys.stderr)
        raise
    finally:
        for kernel_id, user in kernels.items():
            try:
                http("DELETE", f"{gateway.url}/api/kernels/{kernel_id}", tokens[user])
            except OSError as e:
                print(f"could not shut down {kernel_id}: {e}", file=sys.stderr)
        for user in USERS:
            try:
                hub.call("DELETE", f"/users/{user}/server")
            except OSError as e:
                print(f"could not stop {user}'s server: {e}", file=sys.stderr)
        gateway.close()
    for kernel_id in every:
        assert containers_of(docker_api, kernel_id) == []  # the gateway removed them
    print(f"hub test: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_the_command_takes_the_hubs_users(monkeypatch):
    command = GatewayApp(hub=True, hub_api_url="http://hub:8081/hub/api").server_command()
    assert f"--ServerApp.identity_provider_class={GATEWAY}.HubIdentityProvider" in command
    assert "--HubIdentityProvider.hub_api_url=http://hub:8081/hub/api" in command
    assert not [option for option in command if "TokenFileIdentityProvider" in option]
    # The hub's token is never on the command line (others may read it in `ps`).
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-services-token")
    assert "the-services-token" not in " ".join(GatewayApp(hub=True).server_command())
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway", "--hub", "--tokens-file=t"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "either --hub or --tokens-file" in done.stderr


def test_uids_and_scopes_of_hub_users():
    provider = HubIdentityProvider(uids={"carol": "4503", "dan": "4504:4604"})
    assert provider._ids("carol") == (4503, None)  # the gid: the uid (kernels.user_ids)
    assert provider._ids("dan") == (4504, 4604)
    assert provider._ids("erin") == (None, None)  # the system account of the name
    with pytest.raises(TraitError, match="'me' is not UID or UID:GID"):
        HubIdentityProvider(uids={"carol": "me"})
    wanted = "access:services!service=gateway"
    assert holds(["access:services"], wanted)
    assert holds([wanted], wanted)
    assert not holds(["access:services!service=other", "access:servers"], wanted)


async def test_the_hubs_answers_are_kept_a_while_and_not_too_many(monkeypatch):
    provider = HubIdentityProvider()
    asked: list[str] = []

    async def ask(token: str) -> dict[str, Any] | None:
        asked.append(token)
        return {"kind": "user", "name": token} if token.startswith("good") else None

    monkeypatch.setattr(provider, "_ask_hub", ask)
    monkeypatch.setattr(hub_module, "_CACHE_SIZE", 3)
    assert (await provider.hub_user("good-1"))["name"] == "good-1"
    assert await provider.hub_user("bad") is None
    await provider.hub_user("good-1")
    await provider.hub_user("bad")
    assert asked == ["good-1", "bad"]  # each asked once
    for token in ("good-2", "good-3", "good-4"):
        await provider.hub_user(token)
    assert len(provider._answers) <= 3  # the oldest went
    provider.cache_max_age = 0  # every request asks
    await provider.hub_user("good-5")
    await provider.hub_user("good-5")
    assert asked[-2:] == ["good-5", "good-5"]

"""Gateway mode against a real server: users from a tokens file, each sees and drives only
their own kernels, which run as their uid (jupyter_mlcontainer/server/gateway/)."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.escape import json_decode
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.routing import PathMatches, Rule
from tornado.websocket import websocket_connect

from jupyter_mlcontainer.cli.gateway import GatewayApp
from jupyter_mlcontainer.core import labels
from jupyter_mlcontainer.core.tokens import (
    TokensFileError,
    hash_token,
    line_for,
    parse_line,
    read_tokens,
)
from jupyter_mlcontainer.server.gateway import GatewayUser, TokenFileIdentityProvider
from jupyter_mlcontainer.server.gateway.kernels import user_ids

from .conftest import assert_removed, containers_of, eventually
from .servers import TOKEN, Server, free_port, run_code

GATEWAY = "jupyter_mlcontainer.server.gateway"
JUPYTER_KERNELS = "jupyter_server.services.kernels.kernelmanager"
#: name -> (token, options): uids that no system account needs to have.
USERS = {
    "alice": ("alice-token-1234", "uid=4501"),
    "bob": ("bob-token-5678", "uid=4502:4602"),
    "root-admin": ("admin-token-9012", "uid=4503 admin"),
}


def write_tokens(path: Path, users: dict[str, tuple[str, str]], mode: int = 0o600) -> Path:
    lines = ["# the gateway's users"]
    lines += [f"{name} {hash_token(token)} {options}" for name, (token, options) in users.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "gateway-tokens", USERS)


@pytest.fixture
def jp_server_config(
    request: pytest.FixtureRequest, notebook_dir: Path, tokens_file: Path
) -> dict[str, Any]:
    """A gateway: this package's extension, identity provider, kernel manager, authorizer
    (a test changes sections with ``parametrize("jp_server_config", [{…}], indirect=True)``)."""
    config: dict[str, Any] = {
        "ServerApp": {
            "root_dir": str(notebook_dir),
            "jpserver_extensions": {"jupyter_mlcontainer": True},
            "identity_provider_class": f"{GATEWAY}.TokenFileIdentityProvider",
            "kernel_manager_class": f"{GATEWAY}.OwnedKernelManager",
            "session_manager_class": f"{GATEWAY}.OwnedSessionManager",
            "authorizer_class": f"{GATEWAY}.GatewayAuthorizer",
        },
        "TokenFileIdentityProvider": {"tokens_file": str(tokens_file)},
        "MLContainerExtension": {"reap_orphans": False},
    }
    for section, values in getattr(request, "param", {}).items():
        config.setdefault(section, {}).update(values)
    return config


def as_user(name: str) -> dict[str, str]:
    return {"Authorization": f"token {USERS[name][0]}"}


async def call(jp_fetch: Any, user: str, *parts: str, **kwargs: Any) -> Any:
    """``jp_fetch`` as ``user``; the reply's JSON (None when empty)."""
    kwargs.setdefault("headers", as_user(user))
    if kwargs.get("method") == "POST":
        kwargs.setdefault("body", "{}")
    response = await jp_fetch(*parts, **kwargs)
    return json_decode(response.body) if response.body else None


async def refused(jp_fetch: Any, user: str, *parts: str, **kwargs: Any) -> int:
    """The status of a call that must fail."""
    with pytest.raises(HTTPClientError) as info:
        await call(jp_fetch, user, *parts, **kwargs)
    return info.value.code


# --- the tokens file ------------------------------------------------------------------------


def test_a_line_for_a_token_is_read_back():
    line = line_for("alice", "s3cret", uid="4501:4601")
    assert "s3cret" not in line
    account = parse_line(line, 1)
    assert account is not None
    assert (account.name, account.uid, account.gid, account.admin) == ("alice", 4501, 4601, False)
    assert account.token_hash == hash_token("s3cret")
    admin = parse_line(line_for("carol", "t", admin=True), 1)
    assert admin is not None and admin.admin and admin.uid is None
    assert parse_line("   # a comment", 3) is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("alice plain-token", "sha256:<64 hex digits>"),
        (f"alice {hash_token('x')} uid=me", "unknown option 'uid=me'"),
        ("alice", "expected `NAME sha256:HASH"),
        (f"al/ice {hash_token('x')}", "not a user name"),
    ],
)
def test_a_wrong_line_is_refused_with_its_number(tmp_path, line, says):
    path = tmp_path / "tokens"
    path.write_text(f"# users\n{line}\n")
    path.chmod(0o600)
    with pytest.raises(TokensFileError, match="line 2") as info:
        read_tokens(str(path))
    assert says in str(info.value)


def test_the_same_token_twice_is_refused(tmp_path):
    users = {"alice": ("same", ""), "bob": ("same", "")}
    with pytest.raises(TokensFileError, match="a second line for bob"):
        read_tokens(str(write_tokens(tmp_path / "tokens", users)))


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660])
def test_a_tokens_file_open_to_others_is_refused(tmp_path, mode):
    path = write_tokens(tmp_path / "tokens", USERS, mode=mode)
    with pytest.raises(TokensFileError) as info:
        TokenFileIdentityProvider(tokens_file=str(path))
    assert f"chmod 600 {path}" in str(info.value)
    assert "does not start" in str(info.value)


def test_the_gateway_needs_a_tokens_file(tmp_path):
    with pytest.raises(TokensFileError, match="tokens_file"):
        TokenFileIdentityProvider()
    with pytest.raises(TokensFileError, match="cannot read"):
        TokenFileIdentityProvider(tokens_file=str(tmp_path / "missing"))


# --- who may call what (no kernel starts) ---------------------------------------------------


async def test_a_request_without_a_known_token_is_refused(jp_fetch):
    assert await refused(jp_fetch, "alice", "api", "kernels", headers={}) == 403
    bad = {"Authorization": "token not-a-token"}
    assert await refused(jp_fetch, "alice", "api", "kernels", headers=bad) == 403
    # The hash itself is not a token.
    leaked = {"Authorization": f"token {hash_token(USERS['alice'][0])}"}
    assert await refused(jp_fetch, "alice", "api", "kernels", headers=leaked) == 403
    assert await call(jp_fetch, "alice", "api", "kernels") == []
    assert await call(jp_fetch, "alice", "api", "kernels", headers={}, params={
        "token": USERS["alice"][0]
    }) == []  # fmt: skip


async def test_users_get_kernels_sessions_and_kernelspecs_only(jp_fetch):
    me = await call(jp_fetch, "bob", "api", "me")
    assert me["identity"]["username"] == "bob"
    assert "kernelspecs" in await call(jp_fetch, "bob", "api", "kernelspecs")
    assert await call(jp_fetch, "bob", "api", "sessions") == []
    for parts in (("api", "contents"), ("api", "terminals"), ("api", "config", "x")):
        assert await refused(jp_fetch, "bob", *parts) in (403, 404), parts
    assert await call(jp_fetch, "root-admin", "api", "contents")  # admins: everything
    # A kernel id a user names must be theirs, whether it exists or not.
    made_up = "00000000-0000-0000-0000-000000000000"
    start = json.dumps({"kernel_id": made_up})
    assert await refused(jp_fetch, "bob", "api", "kernels", method="POST", body=start) == 404
    session = json.dumps({"path": "a.ipynb", "type": "notebook", "kernel": {"id": made_up}})
    with pytest.raises(HTTPClientError) as info:  # jupyter_server answers 500 for any error
        await call(jp_fetch, "bob", "api", "sessions", method="POST", body=session)
    assert f"Kernel does not exist: {made_up}" in info.value.response.body.decode()
    # Creating kernelspecs (code every user runs) and pulling images: admins only.
    assert await refused(jp_fetch, "bob", "mlcontainer", "kernelspecs", method="POST") == 403
    # So are changing them: extending and rolling back an environment.
    for action in ("extend", "rollback"):
        body = json.dumps({"pip": ["tqdm"]})
        parts = ("mlcontainer", "kernelspecs", "mlc", action)
        assert await refused(jp_fetch, "bob", *parts, method="POST", body=body) == 403, action


async def test_the_tokens_file_is_read_again_when_it_changes(jp_fetch, tokens_file):
    dave = {"dave": ("dave-token", "uid=4504")}
    assert await refused(jp_fetch, "alice", "api", "kernels", headers=as_other(dave)) == 403
    write_tokens(tokens_file, {**USERS, **dave})
    assert await call(jp_fetch, "alice", "api", "kernels", headers=as_other(dave)) == []
    tokens_file.chmod(0o644)  # unsafe now: everyone is refused until it is fixed
    assert await refused(jp_fetch, "alice", "api", "kernels") == 403


def as_other(users: dict[str, tuple[str, str]]) -> dict[str, str]:
    ((token, _),) = users.values()
    return {"Authorization": f"token {token}"}


async def test_a_kernel_that_would_run_as_the_gateway_is_refused(
    jp_fetch, jp_kernel_dir, kernelspec_file, tokens_file
):
    local = Path(jp_kernel_dir) / "local"
    local.mkdir()
    (local / "kernel.json").write_text(
        json.dumps({"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Local", "language": "python"})
    )  # fmt: skip
    body = json.dumps({"name": "local"})
    assert await refused(jp_fetch, "alice", "api", "kernels", method="POST", body=body) == 403
    # A user with no uid in the file and no account on the host.
    write_tokens(tokens_file, {**USERS, "nobody-here-x": ("nobody-token", "")})
    name = kernelspec_file("mlc-nouid")
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": name}),
            headers={"Authorization": "token nobody-token"},
        )  # fmt: skip
    assert info.value.code == 403
    assert "add uid=UID[:GID]" in info.value.response.body.decode()
    # Nor as root, whatever the file says.
    write_tokens(tokens_file, {**USERS, "zed": ("zed-token", "uid=0")})
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "api", "kernels", method="POST", body=json.dumps({"name": name}),
            headers={"Authorization": "token zed-token"},
        )  # fmt: skip
    assert info.value.code == 403
    assert "as root" in info.value.response.body.decode()
    # Nor one in a directory out of the gateway's root (it would be mounted into the kernel).
    escape = json.dumps({"name": name, "path": "../../../../etc"})
    with pytest.raises(HTTPClientError) as info:
        await call(jp_fetch, "alice", "api", "kernels", method="POST", body=escape)
    assert info.value.code == 403
    assert "outside the gateway's root directory" in info.value.response.body.decode()
    assert await call(jp_fetch, "root-admin", "api", "kernels") == []


# --- kernels of two users (the engine) ------------------------------------------------------


@pytest.mark.engine
async def test_users_see_and_drive_only_their_own_kernels(
    kernelspec, jp_fetch, jp_ws_fetch, docker_api, notebook_dir
):
    name = kernelspec("mlc-gateway")
    own = notebook_dir / "alice"  # her folder: her kernels start there
    own.mkdir()
    if os.getuid() == 0:
        os.chown(own, 4501, 4501)
        own.chmod(0o700)
    # The client's word for who it is changes nothing.
    body = json.dumps({"name": name, "env": {"KERNEL_USERNAME": "bob"}})
    kernel = await call(jp_fetch, "alice", "api", "kernels", method="POST", body=body)
    kernel_id = kernel["id"]
    try:
        (container,) = containers_of(docker_api, kernel_id)
        assert docker_api.inspect_container(container["Id"])["Config"]["User"] == "4501:4501"
        # Whom the kernel is for, as the GPU ledger and quotas count it: the verified user.
        assert container["Labels"][labels.USER] == "alice"

        assert [k["id"] for k in await call(jp_fetch, "alice", "api", "kernels")] == [kernel_id]
        assert await call(jp_fetch, "bob", "api", "kernels") == []
        mine = await call(jp_fetch, "alice", "mlcontainer", "kernels")
        assert [k["kernel_id"] for k in mine["kernels"]] == [kernel_id]
        assert (await call(jp_fetch, "bob", "mlcontainer", "kernels"))["kernels"] == []

        for parts, method in [
            (("api", "kernels", kernel_id), "GET"),
            (("api", "kernels", kernel_id, "interrupt"), "POST"),
            (("api", "kernels", kernel_id, "restart"), "POST"),
            (("api", "kernels", kernel_id), "DELETE"),
            (("mlcontainer", "kernels", kernel_id), "GET"),
        ]:
            assert await refused(jp_fetch, "bob", *parts, method=method) == 404, parts
        # A session on Alice's kernel is hers alone.
        notebook = {"path": "a.ipynb", "name": "a.ipynb", "type": "notebook"}
        body = json.dumps({**notebook, "kernel": {"id": kernel_id}})
        session = await call(jp_fetch, "alice", "api", "sessions", method="POST", body=body)
        assert session["kernel"]["id"] == kernel_id
        assert [s["id"] for s in await call(jp_fetch, "alice", "api", "sessions")] == [
            session["id"]
        ]
        assert await call(jp_fetch, "bob", "api", "sessions") == []
        assert len(await call(jp_fetch, "root-admin", "api", "sessions")) == 1
        patch = json.dumps({"path": "b.ipynb"})
        for method, kwargs in (("GET", {}), ("DELETE", {}), ("PATCH", {"body": patch})):
            code = await refused(jp_fetch, "bob", "api", "sessions", session["id"],
                                 method=method, **kwargs)  # fmt: skip
            assert code == 404, method
        with pytest.raises(HTTPClientError) as info:  # the same path, on Alice's kernel
            await call(jp_fetch, "bob", "api", "sessions", method="POST", body=body)
        assert f"Kernel does not exist: {kernel_id}" in info.value.response.body.decode()
        # Bob asking for Alice's id in a start gets a 404 too, not her kernel.
        steal = json.dumps({"name": name, "kernel_id": kernel_id})
        assert await refused(jp_fetch, "bob", "api", "kernels", method="POST", body=steal) == 404
        with pytest.raises(HTTPClientError) as info:
            await jp_ws_fetch("api", "kernels", kernel_id, "channels", headers=as_user("bob"))
        assert info.value.code == 404

        # A websocket carries the token in its URL.
        token = {"token": USERS["alice"][0]}
        ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels", headers={}, params=token)
        out = await run_code(ws, "import os; print(os.getuid(), os.getgid(), os.getcwd())")
        ws.close()
        assert out.split() == ["4501", "4501", str(own)]

        everyone = await call(jp_fetch, "root-admin", "api", "kernels")
        assert [k["id"] for k in everyone] == [kernel_id]
        # HOME volumes: a user sees their own uid's only.
        homes = {
            user: {
                v["uid"]
                for v in (await call(jp_fetch, user, "mlcontainer", "volumes"))["volumes"]
                if v["kind"] == "home"
            }
            for user in ("alice", "bob", "root-admin")
        }
        assert homes["alice"] == {"4501"}
        assert "4501" not in homes["bob"] and "4501" in homes["root-admin"]
        await call(jp_fetch, "alice", "api", "kernels", kernel_id, "interrupt", method="POST")
        assert (await call(jp_fetch, "alice", "api", "kernels", kernel_id))["id"] == kernel_id
    finally:
        await call(jp_fetch, "alice", "api", "kernels", kernel_id, method="DELETE")
    await assert_removed(docker_api, kernel_id)


@pytest.mark.engine
async def test_each_users_kernel_runs_as_them_and_admins_see_all(kernelspec, jp_fetch, docker_api):
    name = kernelspec("mlc-gateway-two", uid=0)  # the kernelspec's uid does not win either
    body = json.dumps({"name": name})
    started = []
    try:
        for user in ("alice", "bob"):
            kernel = await call(jp_fetch, user, "api", "kernels", method="POST", body=body)
            started.append(kernel["id"])
        users = []
        for kernel_id in started:
            (container,) = containers_of(docker_api, kernel_id)
            users.append(docker_api.inspect_container(container["Id"])["Config"]["User"])
        assert users == ["4501:4501", "4502:4602"]
        everyone = await call(jp_fetch, "root-admin", "api", "kernels")
        assert sorted(k["id"] for k in everyone) == sorted(started)
        # Restarting keeps the owner's uid (the provisioner is made once, with it).
        await call(jp_fetch, "bob", "api", "kernels", started[1], "restart", method="POST")
        (container,) = containers_of(docker_api, started[1])
        assert docker_api.inspect_container(container["Id"])["Config"]["User"] == "4502:4602"
    finally:
        for kernel_id in started:  # an admin may shut anyone's kernel down
            await call(jp_fetch, "root-admin", "api", "kernels", kernel_id, method="DELETE")
    for kernel_id in started:
        await assert_removed(docker_api, kernel_id)


# --- the command, and a user's server that reaches kernels through it -----------------------


def test_the_command_refuses_an_unsafe_tokens_file(tmp_path):
    path = write_tokens(tmp_path / "tokens", USERS, mode=0o640)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway", f"--tokens-file={path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"Run `chmod 600 {path}`" in done.stderr


def test_gateway_token_prints_a_line_for_the_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway-token", "erin",
         "--uid=4505:4505", "--admin"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token = done.stderr.strip().rsplit(" ", 1)[-1]
    path = tmp_path / "tokens"
    path.write_text(done.stdout)
    path.chmod(0o600)
    (account,) = read_tokens(str(path)).values()
    assert (account.name, account.uid, account.gid, account.admin) == ("erin", 4505, 4505, True)
    assert account.token_hash == hash_token(token)


class Gateway:
    """``jupyter mlcontainer gateway`` as a subprocess, with a runtime dir of its own."""

    def __init__(self, tokens: Path, root: Path, runtime: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_mlcontainer.cli", "gateway",
                 f"--tokens-file={tokens}", f"--port={self.port}", f"--root-dir={root}",
                 "--", "--allow-root"],
                env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        for _ in range(120):
            try:
                self.call("alice", "GET", "/api/kernels")
                return
            except OSError:
                time.sleep(0.25)
        self.close()
        pytest.fail(f"the gateway did not answer:\n{log.read_text()[-3000:]}")

    def call(self, user: str, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url + path, method=method, headers=as_user(user))
        with urllib.request.urlopen(request, timeout=60) as reply:
            text = reply.read()
        return json.loads(text) if text else None

    def close(self) -> None:
        """Stop it as an admin would (SIGTERM: its kernels shut down, their containers go)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.mark.engine
async def test_a_users_server_runs_kernels_through_the_gateway(
    kernelspec, tokens_file, tmp_path, docker_api
):
    name = kernelspec("mlc-through-gateway")
    (tmp_path / "gateway-root").mkdir()
    (tmp_path / "user-root").mkdir()
    gateway = Gateway(
        tokens_file, tmp_path / "gateway-root", tmp_path / "gateway-runtime", tmp_path / "gw.log"
    )
    user, kernel_id = None, ""
    try:
        user = Server(
            tmp_path / "user-root", tmp_path / "user-runtime", tmp_path / "user.log",
            f"--gateway-url={gateway.url}", f"--GatewayClient.auth_token={USERS['alice'][0]}",
            "--GatewayClient.request_timeout=120",
        )  # fmt: skip
        assert name in user.call("GET", "/api/kernelspecs")["kernelspecs"]
        kernel_id = user.call("POST", "/api/kernels", {"name": name})["id"]
        # The gateway has it, as Alice's: Bob does not see it.
        assert [k["id"] for k in gateway.call("alice", "GET", "/api/kernels")] == [kernel_id]
        assert gateway.call("bob", "GET", "/api/kernels") == []
        ws = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{user.port}/api/kernels/{kernel_id}/channels",
                headers={"Authorization": f"token {TOKEN}"},
            )
        )
        out = await run_code(ws, "import os; print(os.getuid())")
        ws.close()
        assert out.strip() == "4501"
        # The sidebar and the status bar ask the user's server, which asks the gateway.
        mine = user.call("GET", "/mlcontainer/kernels")["kernels"]
        assert [k["kernel_id"] for k in mine] == [kernel_id]
        assert user.call("GET", f"/mlcontainer/kernels/{kernel_id}?tail=0")["state"] == "running"
        assert "gpus" in user.call("GET", "/mlcontainer/gpus")
        assert user.call("GET", "/mlcontainer/engine")["reachable"] is True
        user.call("DELETE", f"/api/kernels/{kernel_id}")
        assert gateway.call("alice", "GET", "/api/kernels") == []
    except BaseException:
        print(gateway.log.read_text()[-5000:], file=sys.stderr)
        if user is not None:
            print(user.text()[-5000:], file=sys.stderr)
        raise
    finally:
        if user is not None:
            user.stop()
            user.close()
        gateway.close()
    assert kernel_id and containers_of(docker_api, kernel_id) == []  # the gateway removed it


@pytest.mark.parametrize(
    "jp_server_config",
    [{"ServerApp": {"kernel_manager_class": f"{JUPYTER_KERNELS}.AsyncMappingKernelManager"}}],
    indirect=True,
)
async def test_without_the_gateways_kernel_manager_users_are_refused(jp_fetch):
    assert await refused(jp_fetch, "alice", "api", "kernels") == 403
    assert await call(jp_fetch, "root-admin", "api", "kernels") == []


class _Unchecked(APIHandler):
    """A handler that asks for a user and checks no authorization (as JupyterLab's do)."""

    @web.authenticated
    def get(self) -> None:
        self.finish({"ran": True})


async def test_handlers_without_an_authorization_check_serve_admins_only(jp_serverapp, jp_fetch):
    # First, before the server's catch-all 404 (the base URL as the server's own routes have it).
    route = url_path_join(jp_serverapp.web_app.settings["base_url"], "unchecked")
    router = jp_serverapp.web_app.wildcard_router
    router.rules.insert(0, Rule(PathMatches(re.escape(route) + "$"), _Unchecked))
    assert await refused(jp_fetch, "alice", "unchecked") == 403
    assert await call(jp_fetch, "root-admin", "unchecked") == {"ran": True}


def test_the_gateway_runs_no_other_server_extension(jp_environ, jp_config_dir):
    folder = Path(jp_config_dir) / "jupyter_server_config.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "other.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"other_ext": True}}})
    )
    command = GatewayApp(tokens_file="tokens").server_command()
    assert "--ServerApp.jpserver_extensions=jupyter_mlcontainer=True" in command
    assert "--ServerApp.jpserver_extensions=other_ext=False" in command
    assert "--ServerApp.terminals_enabled=False" in command


def test_a_user_without_a_uid_runs_as_the_system_account_of_their_name():
    nobody = pwd.getpwnam("nobody")
    assert user_ids(GatewayUser(username="nobody")) == (nobody.pw_uid, nobody.pw_gid)
    assert user_ids(GatewayUser(username="nobody", uid=4501)) == (4501, 4501)
    with pytest.raises(web.HTTPError, match="as root"):
        user_ids(GatewayUser(username="root"))
    with pytest.raises(web.HTTPError, match="add uid=UID"):
        user_ids(GatewayUser(username="no-such-account-here"))


@pytest.mark.engine
async def test_quotas_count_each_verified_user_apart(kernelspec, jp_fetch, docker_api, policy):
    """A quota of one kernel each: Alice's second start is refused with her name, Bob still
    starts his (the gateway runs as one process user; the quota counts verified users)."""
    policy(quotas={"*": {"kernels": 1}})
    name = kernelspec("mlc-quota")
    body = json.dumps({"name": name})
    alices = await call(jp_fetch, "alice", "api", "kernels", method="POST", body=body)
    try:
        with pytest.raises(HTTPClientError) as info:
            await call(jp_fetch, "alice", "api", "kernels", method="POST", body=body)
        assert "Over the admin's quota: alice may hold 1 kernel at once" in (
            info.value.response.body.decode()
        )
        bobs = await call(jp_fetch, "bob", "api", "kernels", method="POST", body=body)
        await call(jp_fetch, "bob", "api", "kernels", bobs["id"], method="DELETE")
    finally:
        await call(jp_fetch, "alice", "api", "kernels", alices["id"], method="DELETE")
    await assert_removed(docker_api, alices["id"])


@pytest.mark.engine
async def test_a_users_next_start_is_claimed_from_their_own_warm_pool(
    kernelspec, jp_fetch, jp_serverapp, docker_api
):
    """A gateway keeps a warm pool per user, filled after their first start with their uid:
    Alice's next start is claimed from hers; Bob's is never served from Alice's."""
    name = kernelspec("mlc-pooled")
    body = json.dumps({"name": name})
    pool = jp_serverapp.web_app.settings["mlcontainer"]["pool"]
    kernel_manager = jp_serverapp.kernel_manager

    def ready(user: str) -> list[str]:
        return [k["container_id"] for k in pool.describe()["kernels"] if k["user"] == user]

    started = [(await call(jp_fetch, "alice", "api", "kernels", method="POST", body=body))["id"]]
    try:
        [waiting] = await eventually(lambda: ready("alice"), "Alice's pool filled", timeout=90)
        started.append(
            (await call(jp_fetch, "alice", "api", "kernels", method="POST", body=body))["id"]
        )
        claimed = kernel_manager.get_kernel(started[-1]).provisioner.container_id
        assert claimed == waiting, "Alice's second start was not served from her pool"
        inspected = docker_api.inspect_container(claimed)
        assert inspected["Config"]["User"] == "4501:4501"
        assert inspected["Config"]["Labels"][labels.USER] == "alice"
        started.append(
            (await call(jp_fetch, "bob", "api", "kernels", method="POST", body=body))["id"]
        )
        bobs = kernel_manager.get_kernel(started[-1]).provisioner.container_id
        assert bobs != waiting
        assert docker_api.inspect_container(bobs)["Config"]["User"] == "4502:4602"
    finally:
        for kernel_id in started:
            await call(jp_fetch, "root-admin", "api", "kernels", kernel_id, method="DELETE")
    for kernel_id in started:
        await assert_removed(docker_api, kernel_id)

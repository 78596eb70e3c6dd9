"""``jupyter mlcontainer gateway`` and ``gateway-token``: one server on the GPU host that alone
holds the engine, for a team whose JupyterLabs connect with ``--gateway-url`` (docs/gateway.md).

The server is Jupyter Server itself, with this extension alone and the gateway's identity
provider, kernel and session managers and authorizer (``jupyter_mlcontainer/server/gateway/``,
named here by their import paths: the CLI does not import the server layer). Users are those
of a tokens file (``--tokens-file``) or of a JupyterHub (``--hub``). ``gateway`` checks what
it can, then becomes that server (``exec``), so that signals and exit status are the
server's own.
"""

from __future__ import annotations

import os
import sys

from jupyter_core.paths import jupyter_config_path
from jupyter_server.extension.config import ExtensionConfigManager
from traitlets import Bool, Int, Unicode

from ..core.tokens import TokensFileError, line_for, new_token, read_tokens
from .base import Command

GATEWAY = "jupyter_mlcontainer.server.gateway"
EXTENSION = "jupyter_mlcontainer"


def other_extensions() -> list[str]:
    """The server extensions enabled in the Jupyter config path, but ours."""
    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    enabled = manager.get_jpserver_extensions()
    return sorted(name for name, on in enabled.items() if on and name != EXTENSION)


class GatewayApp(Command):
    name = "jupyter-mlcontainer-gateway"
    description = """Serve container kernels to a team from this host, one token per user.

    A Jupyter server that alone holds the engine; each user's token (in the tokens file, or
    JupyterHub's with --hub) says who they are. Users' kernels run as their own uid and only
    they see them. Users connect with
    `jupyter lab --gateway-url=http://HOST:PORT --GatewayClient.auth_token=TOKEN` (with a hub,
    their single-user servers are configured so). Options after `--` go to `jupyter server`
    (for instance --certfile and --keyfile for TLS)."""
    examples = """
    jupyter mlcontainer gateway --tokens-file=/etc/jupyter/gateway-tokens --ip=0.0.0.0
    jupyter mlcontainer gateway --tokens-file=tokens --port=8890 -- --certfile=c.pem --keyfile=k.pem
    jupyter mlcontainer gateway --hub --hub-api-url=http://hub:8081/hub/api --ip=0.0.0.0
    """

    tokens_file = Unicode(
        "",
        help="""The users' tokens file (`NAME sha256:HASH [uid=UID[:GID]] [admin]` lines, only
        its owner may read or write it; see `jupyter mlcontainer gateway-token`). Required
        without --hub.""",
    ).tag(config=True)
    hub = Bool(
        False,
        help="""The users are JupyterHub's: a request's token is checked with the hub's API
        (the gateway as a service of the hub; docs/gateway.md, "With JupyterHub").""",
    ).tag(config=True)
    hub_api_url = Unicode(
        "",
        help="""With --hub: the hub's API as this host reaches it. Default:
        $JUPYTERHUB_API_URL, else http://127.0.0.1:8081/hub/api.""",
    ).tag(config=True)
    ip = Unicode(
        "127.0.0.1",
        help="""The address to listen on: 0.0.0.0 for every interface. Tokens travel in clear
        text without TLS: use --certfile/--keyfile (after --) or a TLS proxy off this host.""",
    ).tag(config=True)
    port = Int(8890, help="The port to listen on.").tag(config=True)
    root_dir = Unicode(
        "",
        help="""The directory kernels start in (mounted into their containers, where each user
        has their own uid's permissions). Default: the current directory.""",
    ).tag(config=True)

    aliases = {
        "tokens-file": "GatewayApp.tokens_file",
        "ip": "GatewayApp.ip",
        "port": "GatewayApp.port",
        "root-dir": "GatewayApp.root_dir",
        "hub-api-url": "GatewayApp.hub_api_url",
    }
    flags = {
        "hub": ({"GatewayApp": {"hub": True}}, "The users are JupyterHub's (the hub's tokens)."),
    }

    def identity_options(self) -> list[str]:
        """Who the users are: the identity provider and its settings."""
        if self.hub:
            options = [f"--ServerApp.identity_provider_class={GATEWAY}.HubIdentityProvider"]
            if self.hub_api_url:
                options.append(f"--HubIdentityProvider.hub_api_url={self.hub_api_url}")
            return options
        return [
            f"--ServerApp.identity_provider_class={GATEWAY}.TokenFileIdentityProvider",
            f"--TokenFileIdentityProvider.tokens_file={os.path.abspath(self.tokens_file)}",
        ]

    def server_command(self) -> list[str]:
        """The ``jupyter server`` command line of this gateway."""
        return [
            sys.executable,
            "-m",
            "jupyter_server",
            *self.identity_options(),
            f"--ServerApp.kernel_manager_class={GATEWAY}.OwnedKernelManager",
            f"--ServerApp.session_manager_class={GATEWAY}.OwnedSessionManager",
            f"--ServerApp.authorizer_class={GATEWAY}.GatewayAuthorizer",
            f"--ServerApp.jpserver_extensions={EXTENSION}=True",
            # Others may serve users without an authorization check (JupyterLab's extension
            # manager installs packages): off. Admins may turn one on again after `--`.
            *(f"--ServerApp.jpserver_extensions={name}=False" for name in other_extensions()),
            "--ServerApp.terminals_enabled=False",
            f"--ServerApp.ip={self.ip}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={os.path.abspath(self.root_dir or os.getcwd())}",
            "--ServerApp.open_browser=False",
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.hub and self.tokens_file:
            self.fail("give either --hub or --tokens-file: the users are the hub's or the file's")
        if self.hub:
            url = self.hub_api_url or os.environ.get("JUPYTERHUB_API_URL", "")
            users = f"JupyterHub's users ({url or 'http://127.0.0.1:8081/hub/api'})"
        else:
            users = self._check_tokens_file()
        command = self.server_command()
        self.log.info("Gateway for %s: %s", users, " ".join(command[1:]))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)  # noqa: S606 (our own interpreter, no shell)

    def _check_tokens_file(self) -> str:
        if not self.tokens_file:
            self.fail(
                "give the users' tokens file (--tokens-file=PATH), or --hub for JupyterHub's "
                "users (see docs/gateway.md)"
            )
        try:
            accounts = read_tokens(self.tokens_file)
        except TokensFileError as e:
            self.fail(str(e))
        if not accounts:
            self.fail(f"{self.tokens_file} lists no users: add one with `gateway-token NAME`")
        return f"{len(accounts)} user(s) of {self.tokens_file}"


class GatewayTokenApp(Command):
    name = "jupyter-mlcontainer-gateway-token"
    description = """Make a new token for user NAME of the gateway, and its tokens file line.

    Prints the token on stderr (give it to the user) and on stdout the line for the tokens
    file, which keeps only the token's hash. A user's kernels run as the uid given with
    --uid, else as the system account NAME."""
    examples = """
    umask 077; jupyter mlcontainer gateway-token alice --uid=4501 >> /etc/jupyter/gateway-tokens
    """

    uid = Unicode("", help="UID[:GID] the user's kernels run as.").tag(config=True)
    admin = Bool(False, help="The user is an admin: sees and drives every kernel.").tag(config=True)

    aliases = {"uid": "GatewayTokenApp.uid"}
    flags = {"admin": ({"GatewayTokenApp": {"admin": True}}, "Make the user an admin.")}

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("give exactly one user NAME, e.g. `jupyter mlcontainer gateway-token alice`")
        token = new_token()
        try:
            line = line_for(self.extra_args[0], token, admin=self.admin, uid=self.uid or None)
        except TokensFileError as e:
            self.fail(str(e))
        # The line on stdout (to append to the file), the token on stderr (for the user).
        name = self.extra_args[0]
        print(f"token for {name} (shown once; give it to them): {token}", file=sys.stderr)
        print(line)

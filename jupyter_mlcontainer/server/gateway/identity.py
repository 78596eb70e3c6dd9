"""Who a gateway request comes from: the user whose token it carries, per the tokens file.

A request authenticates with ``Authorization: token T`` (what ``GatewayClient.auth_token``
sends) or ``?token=T`` (websockets). Nothing else identifies a user: no cookie, no login form,
and never a name the client sends (``KERNEL_USERNAME`` and the like).
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import Unicode, default

from ...core.tokens import Account, TokensFileError, hash_token, read_tokens
from .permissions import serves_users


@dataclass
class GatewayUser(User):
    """A user verified by their token: their role and, if the file says, their uid."""

    admin: bool = False
    uid: int | None = None
    gid: int | None = None


#: The verified user of the request being handled (set by ``get_user``, which runs inside the
#: request's own task; tasks the request starts inherit it). None outside requests.
_request_user: contextvars.ContextVar[GatewayUser | None] = contextvars.ContextVar(
    "mlcontainer_gateway_user", default=None
)


def request_user() -> GatewayUser | None:
    """The verified user of the request under way, None outside a request."""
    return _request_user.get()


class GatewayIdentityProvider(IdentityProvider):
    """What the gateway's identity providers share: each request's own token says who it is
    (no shared token, no cookie, no login page), and a user who is not an admin is recognised
    only on the handlers of resources open to users (permissions.py)."""

    @default("token")
    def _no_shared_token(self) -> str:
        return ""  # each user has their own; there is no server-wide token

    def admit(self, handler: web.RequestHandler, user: GatewayUser) -> GatewayUser | None:
        """``user``, verified by a subclass, as the request's user; None where they may not
        use ``handler`` at all. Subclasses' ``get_user`` ends with it."""
        if not user.admin and not serves_users(handler):
            # A handler that users have no business with, which may not check authorization.
            self.log.info("Gateway: %s may not use %s", user.username, handler.request.path)
            return None
        _request_user.set(user)
        return user

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        """Every identified request is (no cookies): skips XSRF and origin checks, as for
        any token-authenticated API call."""
        return isinstance(handler.current_user, GatewayUser)

    @property
    def login_available(self) -> bool:
        return False  # no login page: clients send their token

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        return None


class TokenFileIdentityProvider(GatewayIdentityProvider):
    """Identifies each request's user by a token listed (hashed) in the admin's tokens file.

    The file is read at start (a server with a missing, unsafe or wrong file does not start)
    and again whenever it changes, so the admin adds and removes users without a restart. A
    file that becomes unreadable or wrong refuses every request until it is fixed.
    """

    tokens_file = Unicode(
        "",
        help="""The gateway's users: one line each, `NAME sha256:HASH [uid=UID[:GID]] [admin]`
        (see docs/gateway.md; `jupyter mlcontainer gateway-token NAME` makes a line). Must be
        readable and writable by its owner alone (chmod 600). Required.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        if not self.tokens_file:
            msg = (
                "the gateway needs its users' tokens: set TokenFileIdentityProvider.tokens_file "
                "(`jupyter mlcontainer gateway --tokens-file=PATH`)"
            )
            raise TokensFileError(msg)
        self._accounts = read_tokens(self.tokens_file)
        self._read_as = self._file_state()
        self.log.info(
            "Gateway: %d user(s) from %s", len(self._accounts), os.path.abspath(self.tokens_file)
        )

    def _file_state(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.tokens_file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)

    def accounts(self) -> dict[str, Account]:
        """The accounts by token hash, read again when the file changed (fails closed)."""
        state = self._file_state()
        if state != self._read_as:
            self._read_as = state
            try:
                self._accounts = read_tokens(self.tokens_file)
            except (TokensFileError, OSError) as e:
                self.log.error("Gateway: every request is refused until this is fixed: %s", e)
                self._accounts = {}
            else:
                self.log.info("Gateway: tokens file read again: %d user(s)", len(self._accounts))
        return self._accounts

    def get_user(self, handler: web.RequestHandler) -> GatewayUser | None:
        """The user whose token the request carries, or None (refused: 403). A user who is
        not an admin only on the handlers of resources open to users (permissions.py)."""
        token = self.get_token(handler)
        account = self.accounts().get(hash_token(token)) if token else None
        if account is None:
            return None
        user = GatewayUser(
            username=account.name, admin=account.admin, uid=account.uid, gid=account.gid
        )
        return self.admit(handler, user)

"""Who a gateway request comes from, per JupyterHub: the hub user whose token it carries.

With a hub, the gateway is one of its services, and each user's single-user server reaches it
with its own ``JUPYTERHUB_API_TOKEN`` (``GatewayClient.auth_token``). The gateway asks the hub
whose token it is (``GET {hub_api_url}/user`` with that token: what
``jupyterhub.services.auth.HubAuth.user_for_token`` does; any token may identify its owner
there, so the gateway needs no token of its own for it), and keeps the answer a short while.
The host needs no JupyterHub installed: one request with tornado's HTTP client.

Nothing else identifies a user: no cookie, no login form, and never a name the client sends.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

from tornado import web
from tornado.escape import json_decode
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Dict, Float, Set, TraitError, Unicode, default, validate

from .identity import GatewayIdentityProvider, GatewayUser

#: The user names the gateway accepts from the hub: a folder of its root directory may bear
#: one (``OwnedKernelManager.user_directories``), and a system account may be looked up by it.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")
_IDS = re.compile(r"(\d+)(?::(\d+))?")
#: The most answers kept; past it, the expired ones go (tokens are many, users few).
_CACHE_SIZE = 1024


class HubIdentityProvider(GatewayIdentityProvider):
    """Identifies each request's user by asking JupyterHub whose token it carries.

    A token the hub does not know, or one of a service rather than a user, is refused (403);
    while the hub does not answer, every request is refused with 503 and says so. A user's
    kernels run as the system account of their hub name, or as :attr:`uids` says.
    """

    hub_api_url = Unicode(
        help="""The hub's API, as this host reaches it (`http://HUB:8081/hub/api`). Default:
        $JUPYTERHUB_API_URL (the hub sets it for the services it starts), else
        http://127.0.0.1:8081/hub/api.""",
    ).tag(config=True)

    @default("hub_api_url")
    def _hub_api_url_from_env(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL") or "http://127.0.0.1:8081/hub/api"

    cache_max_age = Float(
        60.0,
        help="""Seconds the hub's answer for a token is kept (a token the hub revokes still
        works here that long). 0: ask the hub on every request.""",
    ).tag(config=True)
    request_timeout = Float(
        10.0, help="Seconds to wait for the hub's answer (then the request answers 503)."
    ).tag(config=True)
    admin_users = Set(
        Unicode(),
        help="""Hub users who are the gateway's admins: they see, drive and shut down every
        user's kernel, and may use the rest of the server.""",
    ).tag(config=True)
    admin_groups = Set(
        Unicode(),
        help="""Hub groups whose members are the gateway's admins (the hub tells a token's
        groups; not whether its user is a hub admin, which a server's token may not read).""",
    ).tag(config=True)
    uids = Dict(
        value_trait=Unicode(),
        help="""`{"NAME": "UID[:GID]"}`: the account a hub user's kernels run as. A user not
        named here runs as the system account of their hub name (`getent passwd NAME`); one
        with neither cannot start kernels.""",
    ).tag(config=True)
    access_scopes = Set(
        Unicode(),
        help="""If set, a token must hold one of these hub scopes (for instance
        `access:services!service=gateway`, which `Spawner.server_token_scopes` can give users'
        servers; the scope unfiltered, `access:services`, holds it too): tokens the hub made
        for other uses are refused. Default: any token of a user.""",
    ).tag(config=True)

    @validate("uids")
    def _valid_ids(self, proposal: dict[str, Any]) -> dict[str, str]:
        value: dict[str, str] = proposal["value"]
        for name, ids in value.items():
            if not _IDS.fullmatch(ids):
                msg = f"HubIdentityProvider.uids: {name}: {ids!r} is not UID or UID:GID"
                raise TraitError(msg)
        return value

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: sha256 of a token -> (when the answer expires, the hub's user model or None).
        self._answers: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self.log.info("Gateway: users are JupyterHub's, at %s", self.hub_api_url)

    async def hub_user(self, token: str) -> dict[str, Any] | None:
        """The hub's model of the owner of ``token`` (None: not a token of the hub's), from
        the cache while fresh. Raises a 503 while the hub does not answer."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        model = await self._ask_hub(token)
        if len(self._answers) >= _CACHE_SIZE:
            self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            while len(self._answers) >= _CACHE_SIZE:  # many tokens at once: the oldest go
                del self._answers[next(iter(self._answers))]
        if self.cache_max_age > 0:
            self._answers[key] = (now + self.cache_max_age, model)
        return model

    async def _ask_hub(self, token: str) -> dict[str, Any] | None:
        """``GET {hub_api_url}/user`` with ``token``: its owner's model, None for a token the
        hub refuses (401, 403, 404); a 503 when the hub does not answer or answers otherwise."""
        url = self.hub_api_url.rstrip("/") + "/user"
        request = HTTPRequest(
            url,
            headers={"Authorization": f"token {token}"},
            connect_timeout=self.request_timeout,
            request_timeout=self.request_timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as e:
            raise self._hub_down(url, str(e)) from None
        if response.code in (401, 403, 404):
            return None
        if response.code != 200:
            raise self._hub_down(url, f"it answered {response.code} {response.reason}")
        try:
            model = json_decode(response.body)
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise self._hub_down(url, "its answer is not a user's model")
        return model

    def _hub_down(self, url: str, why: str) -> web.HTTPError:
        msg = (
            f"the gateway cannot check tokens: JupyterHub's API at {url} does not answer ({why}). "
            "Try again later; an admin checks the hub, and HubIdentityProvider.hub_api_url"
        )
        self.log.error("Gateway: %s", msg)
        return web.HTTPError(503, msg)

    async def get_user(self, handler: web.RequestHandler) -> GatewayUser | None:
        """The hub user whose token the request carries, or None (refused: 403). A user who
        is not an admin only on the handlers of resources open to users (permissions.py)."""
        token = self.get_token(handler)
        if not token:
            return None
        model = await self.hub_user(token)
        if model is None:
            return None
        name = model.get("name")
        if model.get("kind", "user") != "user" or not isinstance(name, str):
            self.log.info("Gateway: a token of %s %s is not a user's", model.get("kind"), name)
            return None
        if not _NAME.fullmatch(name):
            self.log.warning("Gateway: hub user %r: a name the gateway does not take", name)
            return None
        if self.access_scopes and not any(
            holds(model.get("scopes") or (), scope) for scope in self.access_scopes
        ):
            self.log.info("Gateway: %s's token holds none of %s", name, sorted(self.access_scopes))
            return None
        groups = set(model.get("groups") or ())
        admin = name in self.admin_users or bool(groups & self.admin_groups)
        uid, gid = self._ids(name)
        return self.admit(handler, GatewayUser(username=name, admin=admin, uid=uid, gid=gid))

    def _ids(self, name: str) -> tuple[int | None, int | None]:
        """``uids``' entry for ``name``; else none (the kernel manager then takes the system
        account of the name: ``kernels.user_ids``)."""
        ids = _IDS.fullmatch(self.uids.get(name, ""))
        if ids is None:
            return None, None
        return int(ids.group(1)), int(ids.group(2)) if ids.group(2) else None


def holds(scopes: Any, scope: str) -> bool:
    """Whether a token's (expanded) ``scopes`` hold ``scope``: itself, or the same scope
    unfiltered (``access:services`` holds ``access:services!service=gateway``)."""
    return scope in scopes or scope.split("!", 1)[0] in scopes

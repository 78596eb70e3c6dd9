"""A user's server that runs its kernels on a gateway (``--gateway-url``) has no engine of
its own: its ``/mlcontainer/`` API is the gateway's, asked with the user's own gateway token
(``GatewayClient.auth_token``), so that the sidebar and the status bar show the user's
kernels, GPUs and images there. The gateway decides what the user may see and do."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient

#: Request headers that belong to this hop, never to the gateway's request.
_HOP = {"authorization", "cookie", "host", "content-length", "connection", "x-xsrftoken"}


def gateway_enabled(serverapp: Any) -> bool:
    config = getattr(serverapp, "gateway_config", None)
    return bool(config is not None and config.gateway_enabled)


class GatewayForwardHandler(APIHandler):
    """``/mlcontainer/PATH`` answered by the gateway's ``/mlcontainer/PATH``."""

    auth_resource = "mlcontainer"

    async def _forward(self, path: str) -> None:
        client = GatewayClient.instance()
        url = url_path_join(client.url or "", "mlcontainer", path)
        if self.request.query:
            url += "?" + self.request.query
        headers = {k: v for k, v in self.request.headers.items() if k.lower() not in _HOP}
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH") else None
        kwargs = client.load_connection_args(headers=headers)
        kwargs.pop("method", None)
        try:
            reply = await AsyncHTTPClient().fetch(
                url,
                method=self.request.method or "GET",
                body=body,
                raise_error=False,
                **kwargs,
            )
        except OSError as e:
            msg = f"The gateway at {client.url} does not answer ({e}); is it running?"
            raise web.HTTPError(503, msg) from e
        self.set_status(reply.code if reply.code != 599 else 503)
        content_type = reply.headers.get("Content-Type")
        if content_type:
            self.set_header("Content-Type", content_type)
        self.finish(reply.body or b"")

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        await self._forward(path)

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        await self._forward(path)


forward_handlers = [(r"/mlcontainer/(.*)", GatewayForwardHandler)]

"""What a gateway user may do: run and drive their own kernels and sessions, read kernelspecs
and the ``mlcontainer`` views. Everything else of the server (files, terminals, events,
configuration, creating kernelspecs, pulling images) is for admins.

A request that names a kernel (``/api/kernels/ID``, its actions and ``channels`` websocket,
``/mlcontainer/kernels/ID``) by someone else's id answers 404, exactly as an id that does not
exist, so that ids of other users' kernels are not even confirmed.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import User

from .identity import GatewayUser
from .kernels import OwnedKernelManager, not_found
from .permissions import USER_PERMISSIONS
from .sessions import OwnedSessionManager


class GatewayAuthorizer(Authorizer):
    """Admins may do everything; users what :data:`USER_PERMISSIONS` lists, on their own
    kernels and sessions. Needs the gateway's identity provider, kernel manager and session
    manager (else refuses all but admins)."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if not isinstance(user, GatewayUser):
            return False
        if user.admin:
            return True
        if action not in USER_PERMISSIONS.get(resource, frozenset()):
            self.log.info("Gateway: %s may not %s %s", user.username, action, resource)
            return False
        kernel_manager = handler.settings.get("kernel_manager")
        session_manager = handler.settings.get("session_manager")
        if not isinstance(kernel_manager, OwnedKernelManager) or not isinstance(
            session_manager, OwnedSessionManager
        ):
            self.log.error(
                "Gateway: the server's kernel or session manager is not the gateway's "
                "(OwnedKernelManager, OwnedSessionManager); users are refused"
            )
            return False
        kernel_id = (handler.path_kwargs or {}).get("kernel_id")
        if kernel_id is not None and not kernel_manager.owns(user, kernel_id):
            raise not_found(kernel_id)
        return True

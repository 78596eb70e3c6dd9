"""What a gateway user who is not an admin may do, by the resource a handler declares.

Two gates read it. The identity provider (``identity.py``) recognises such a user only on
handlers that declare one of these resources, so that a handler without an authorization
check (JupyterLab's extension manager, which installs packages, has none) never serves them;
the authorizer (``authorizer.py``) then checks the action, and whose kernel or session it is.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.api.handlers import IdentityHandler

#: Resource -> the actions a user may take on it (their own kernels and sessions only).
USER_PERMISSIONS: dict[str, frozenset[str]] = {
    "kernels": frozenset({"read", "write", "execute"}),
    "sessions": frozenset({"read", "write"}),
    "kernelspecs": frozenset({"read"}),
    "mlcontainer": frozenset({"read"}),
    "api": frozenset({"read"}),
}


def serves_users(handler: Any) -> bool:
    """Whether ``handler`` declares a resource users may reach (and so checks authorization),
    or is ``/api/me`` (who the user is: their identity, nothing else)."""
    if isinstance(handler, IdentityHandler):
        return True
    return getattr(handler, "auth_resource", None) in USER_PERMISSIONS

"""Gateway mode: one server on the GPU host holds the engine; users' JupyterLabs reach it with
jupyter_server's gateway client, each with a token of their own (docs/gateway.md).

Configure a server with these four classes (``jupyter mlcontainer gateway`` does):

- ``ServerApp.identity_provider_class``: :class:`TokenFileIdentityProvider` (who: a token of
  the tokens file) or :class:`HubIdentityProvider` (who: a JupyterHub token),
- ``ServerApp.kernel_manager_class``: :class:`OwnedKernelManager` (whose kernel, run as whom),
- ``ServerApp.session_manager_class``: :class:`OwnedSessionManager` (whose session),
- ``ServerApp.authorizer_class``: :class:`GatewayAuthorizer` (what a user may do).
"""

from .authorizer import GatewayAuthorizer
from .hub import HubIdentityProvider
from .identity import GatewayIdentityProvider, GatewayUser, TokenFileIdentityProvider, request_user
from .kernels import OwnedKernelManager
from .sessions import OwnedSessionManager

__all__ = [
    "GatewayAuthorizer",
    "GatewayIdentityProvider",
    "GatewayUser",
    "HubIdentityProvider",
    "OwnedKernelManager",
    "OwnedSessionManager",
    "TokenFileIdentityProvider",
    "request_user",
]

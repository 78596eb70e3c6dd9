"""Gateway mode: one server on the GPU host holds the engine; users' JupyterLabs reach it with
jupyter_server's gateway client, each with a token of their own (docs/gateway.md).

Configure a server with these three classes (``jupyter mlcontainer gateway`` does):

- ``ServerApp.identity_provider_class``: :class:`TokenFileIdentityProvider` (who: a token),
- ``ServerApp.kernel_manager_class``: :class:`OwnedKernelManager` (whose kernel, run as whom),
- ``ServerApp.authorizer_class``: :class:`GatewayAuthorizer` (what a user may do).
"""

from .authorizer import GatewayAuthorizer
from .identity import GatewayUser, TokenFileIdentityProvider, request_user
from .kernels import OwnedKernelManager

__all__ = [
    "GatewayAuthorizer",
    "GatewayUser",
    "OwnedKernelManager",
    "TokenFileIdentityProvider",
    "request_user",
]

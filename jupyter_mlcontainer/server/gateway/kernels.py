"""The gateway's kernels: each belongs to the verified user who started it, and runs as them.

:class:`OwnedKernelManager` is the server's kernel manager in gateway mode. A start records
its owner (the request's verified user, never a name the client sends) and sets the kernel's
uid and gid on its provisioner before the launch, where no request field reaches; lists show
a user their own kernels only (admins see all). What a request names by id is checked by the
authorizer (``authorizer.py``), which answers 404 for another user's kernel.
"""

from __future__ import annotations

import os
import pwd
from typing import Any

from jupyter_client.provisioning.factory import KernelProvisionerFactory
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import ApiPath
from tornado import web
from traitlets import Bool

from ...kernel.provisioner import MLContainerProvisioner
from .identity import GatewayUser, request_user


def user_ids(user: GatewayUser) -> tuple[int, int]:
    """The uid and gid ``user``'s kernels run as: the tokens file's ``uid=``, else the system
    account of the same name. A user with neither cannot start kernels (403)."""
    if user.uid is not None:
        ids = user.uid, user.gid if user.gid is not None else user.uid
    else:
        try:
            account = pwd.getpwnam(user.username)
        except KeyError:
            msg = (
                f"{user.username} has no account on the gateway's host and no uid in its tokens "
                "file: ask the admin to add uid=UID[:GID] to your line"
            )
            raise web.HTTPError(403, msg) from None
        ids = account.pw_uid, account.pw_gid
    if 0 in ids:
        msg = f"{user.username} would run kernels as root ({ids[0]}:{ids[1]}): never here"
        raise web.HTTPError(403, msg)
    return ids


def viewer_uids(user: GatewayUser | None) -> set[str]:
    """Whose HOME volumes a gateway user sees: their own uid's ("*": an admin, everyone's;
    empty outside the gateway, or for a user who has no uid)."""
    if user is None:
        return set()
    if user.admin:
        return {"*"}
    try:
        return {str(user_ids(user)[0])}
    except web.HTTPError:
        return {"-"}  # no uid: no HOME volume is theirs


def not_found(kernel_id: str) -> web.HTTPError:
    """What another user's kernel answers: exactly what a kernel that does not exist does."""
    return web.HTTPError(404, f"Kernel does not exist: {kernel_id}")


class OwnedKernelManager(AsyncMappingKernelManager):
    """A server's kernel manager that gives each kernel an owner and runs it as them."""

    user_directories = Bool(
        True,
        help="""Start a user's kernels in their own folder of the root directory (ROOT/NAME)
        when it exists and the start names no path (Jupyter's gateway client names none). Make
        each folder its user's (chown UID, chmod 700): kernels run as their user's uid.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: kernel id -> the user name of its owner (kernels started outside requests: none).
        self.owners: dict[str, str] = {}

    def owns(self, user: GatewayUser, kernel_id: str) -> bool:
        """Whether ``user`` may see and drive kernel ``kernel_id`` (admins: every kernel)."""
        return user.admin or self.owners.get(kernel_id) == user.username

    def _visible(self, kernel_ids: list[str]) -> list[str]:
        user = request_user()
        if user is None:  # the server itself (culling, shutdown): every kernel
            return kernel_ids
        return [kernel_id for kernel_id in kernel_ids if self.owns(user, kernel_id)]

    def list_kernel_ids(self) -> list[str]:
        """The request's user's kernels (all of them outside requests and for admins)."""
        return self._visible(list(super().list_kernel_ids()))

    def list_kernels(self) -> list[dict[str, Any]]:
        """The models of the request's user's kernels (``GET /api/kernels``)."""
        models: list[dict[str, Any]] = super().list_kernels()
        visible = set(self._visible([model["id"] for model in models]))
        return [model for model in models if model["id"] in visible]

    async def start_kernel(  # type: ignore[override]
        self, *, kernel_id: str | None = None, path: ApiPath | None = None, **kwargs: Any
    ) -> str:
        """Start a kernel for the request's user. A kernel id the client names must be one of
        theirs (that one is returned): any other answers 404, whether it exists or not."""
        user = request_user()
        if user is not None and kernel_id is not None and not self.owns(user, kernel_id):
            raise not_found(kernel_id)
        if user is not None and path is None:
            path = self._user_directory(user)
        try:
            started: str = await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        except BaseException:
            self._forget_failed_starts()
            raise
        return started

    def _user_directory(self, user: GatewayUser) -> ApiPath | None:
        """``user``'s own folder of the root directory, if it exists (``user_directories``)."""
        if self.user_directories and os.path.isdir(os.path.join(self.root_dir, user.username)):
            return ApiPath(user.username)
        return None

    def cwd_for_path(self, path: ApiPath | None, **kwargs: Any) -> str:
        """The start's directory, which must lie in the root directory (its folders are
        mounted into kernels: a path that climbs out would mount the host's)."""
        cwd: str = super().cwd_for_path(path, **kwargs)
        root = os.path.realpath(self.root_dir)
        if os.path.commonpath([root, os.path.realpath(cwd)]) != root:
            msg = f"the kernel's path {path!r} is outside the gateway's root directory"
            raise web.HTTPError(403, msg)
        return cwd

    def pre_start_kernel(self, kernel_name: str | None, kwargs: Any) -> tuple[Any, str, str]:
        """jupyter_client's hook between choosing the kernel's id and its launch: record the
        owner and make the provisioner now, with the owner's uid, so that the launch (and
        every restart, which keeps the provisioner) runs the kernel as them."""
        km, kernel_name, kernel_id = super().pre_start_kernel(kernel_name, kwargs)
        user = request_user()
        if user is None:
            return km, kernel_name, kernel_id
        uid, gid = user_ids(user)
        provisioner = KernelProvisionerFactory.instance(
            parent=km.parent
        ).create_provisioner_instance(kernel_id, km.kernel_spec, parent=km)
        if not isinstance(provisioner, MLContainerProvisioner):
            msg = (
                f"kernel {kernel_name!r} does not run in a container: the gateway starts only "
                "container kernels (others would run as the gateway's own user)"
            )
            raise web.HTTPError(403, msg)
        provisioner.uid, provisioner.gid = uid, gid
        provisioner.user_name = user.username  # the GPU ledger's holder; the quota's user
        km.provisioner = provisioner
        self.owners[kernel_id] = user.username
        self.log.info("Kernel %s: started by %s, runs as %d:%d", kernel_id, user.username, uid, gid)
        return km, kernel_name, kernel_id

    def _forget_failed_starts(self) -> None:
        for kernel_id in list(self.owners):
            if kernel_id not in self and kernel_id not in self._pending_kernels:
                del self.owners[kernel_id]

    def remove_kernel(self, kernel_id: str) -> Any:
        self.owners.pop(kernel_id, None)
        return super().remove_kernel(kernel_id)

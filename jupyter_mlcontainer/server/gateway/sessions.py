"""The gateway's sessions: each belongs to the verified user who created it.

Jupyter's gateway client keeps sessions in the user's own server and never calls these; a
client that does (``/api/sessions``) sees and changes only its user's own sessions, on its own
kernels. Another user's session answers 404, as one that does not exist; two users may have a
session for the same path (their paths are on their own machines).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.sessions.sessionmanager import KernelName, ModelName, SessionManager
from tornado import web

from .identity import GatewayUser, request_user
from .kernels import OwnedKernelManager, not_found

#: ``get_session``'s keywords, and where each is in a session's model.
_FIELDS = {
    "session_id": lambda model: model["id"],
    "path": lambda model: model["path"],
    "name": lambda model: model["name"],
    "type": lambda model: model["type"],
    "kernel_id": lambda model: model["kernel"]["id"],
}


class OwnedSessionManager(SessionManager):
    """A session manager that gives each session an owner and shows users their own."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: session id -> the user name of its creator (sessions made outside requests: none).
        self.owners: dict[str, str] = {}

    @staticmethod
    def _user() -> GatewayUser | None:
        """The request's user when the sessions must be theirs only (None: see all)."""
        user = request_user()
        return None if user is None or user.admin else user

    def new_session_id(self) -> str:
        """Called by ``create_session`` first: the new session is the request's user's."""
        session_id: str = super().new_session_id()
        user = request_user()
        if user is not None:
            self.owners[session_id] = user.username
        return session_id

    async def list_sessions(self) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = await super().list_sessions()
        user = self._user()
        if user is None:
            return sessions
        return [s for s in sessions if self.owners.get(s["id"]) == user.username]

    async def get_session(self, **kwargs: Any) -> dict[str, Any]:
        user = self._user()
        if user is None:
            found: dict[str, Any] = await super().get_session(**kwargs)
            return found
        unknown = set(kwargs) - set(_FIELDS)
        if not kwargs or unknown:
            msg = f"No such column: {sorted(unknown)}" if unknown else "must specify a column"
            raise TypeError(msg)
        for session in await self.list_sessions():
            if all(_FIELDS[key](session) == value for key, value in kwargs.items()):
                return session
        shown = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise web.HTTPError(404, f"Session not found: {shown}")

    async def session_exists(self, path: str) -> bool:
        if self._user() is None:
            exists: bool = await super().session_exists(path)
            return exists
        return any(session["path"] == path for session in await self.list_sessions())

    async def create_session(
        self,
        path: str | None = None,
        name: ModelName | None = None,
        type: str | None = None,
        kernel_name: KernelName | None = None,
        kernel_id: str | None = None,
    ) -> dict[str, Any]:
        """A new session, on a new kernel or on an existing one of the request's user."""
        self._check_kernel(kernel_id)
        created: dict[str, Any] = await super().create_session(
            path=path, name=name, type=type, kernel_name=kernel_name, kernel_id=kernel_id
        )
        return created

    async def update_session(self, session_id: str, **kwargs: Any) -> None:
        await self.get_session(session_id=session_id)  # theirs, or 404
        self._check_kernel(kwargs.get("kernel_id"))
        await super().update_session(session_id, **kwargs)

    async def delete_session(self, session_id: str) -> None:
        await self.get_session(session_id=session_id)  # theirs, or 404
        await super().delete_session(session_id)
        self.owners.pop(session_id, None)

    def _check_kernel(self, kernel_id: str | None) -> None:
        """A kernel a session names must be the request's user's (else 404, as the kernel
        manager answers a start that names it)."""
        user = self._user()
        if user is None or kernel_id is None:
            return
        km = self.kernel_manager
        if not isinstance(km, OwnedKernelManager) or not km.owns(user, kernel_id):
            raise not_found(kernel_id)

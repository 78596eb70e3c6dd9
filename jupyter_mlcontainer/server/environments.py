"""REST API of a kernelspec's environment versions (issue 20): list, extend, roll back, and
run a notebook as recorded.

- ``GET  /mlcontainer/kernelspecs/{name}/versions``: the history and the current version;
- ``POST /mlcontainer/kernelspecs/{name}/extend`` ``{"pip": [...], "apt": [...]}``: a new
  version, built in the background (one at a time per kernelspec); its progress lines and its
  end go out on the event bus (``extend/v1``) and ``GET`` of the same URL answers the last one;
- ``POST /mlcontainer/kernelspecs/{name}/rollback`` ``{"version": N}``: make N current;
- ``POST|DELETE /mlcontainer/as-recorded`` ``{"path", "kernel_name", "image"}``: the next
  kernel of ``kernel_name`` for that notebook starts with one of its versions' images.

Changing a kernelspec is changing code every user of this Jupyter runs: like creating one, it
takes ``execute`` on ``kernels`` besides ``write`` on ours (on a gateway, admins only).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from packaging.requirements import InvalidRequirement, Requirement
from tornado import web

from ..core import backend as backends
from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.backend import Backend
from ..core.exceptions import ConfigurationError, MLContainerError
from ..kernel import recorded
from ..kernel.extend import ExtendError, ExtendRequest, extend_kernel
from ..kernel.versions import find_kernelspec, rollback
from .handlers import MLContainerHandler

SCHEMA_ID = "https://events.jupyter-mlcontainer.org/extend/v1"
SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "extend" / "v1.yaml"
#: The lines an extend's state keeps (a build's output can be long; the end matters).
MAX_LINES = 500


@dataclass
class ExtendState:
    """One extend: running, done or failed, with its progress lines."""

    id: str
    kernel_name: str
    status: str = "running"
    lines: list[str] = field(default_factory=list)
    message: str = ""
    version: dict[str, Any] | None = None
    packages: list[str] = field(default_factory=list)


class ExtendTracker:
    """At most one extend per kernelspec at a time; every line and the end go out as events."""

    def __init__(self, backend: Backend, event_logger: Any, log: logging.Logger):
        self.backend = backend
        self.event_logger = event_logger
        self.log = log
        self.extends: dict[str, ExtendState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, kernel_name: str) -> bool:
        task = self._tasks.get(kernel_name)
        return task is not None and not task.done()

    def start(
        self, spec: ks.InstalledSpec, request: ExtendRequest, backend: Backend | None = None
    ) -> ExtendState:
        """Start extending ``spec`` on ``backend`` (None: the server's) (the caller checked
        that none runs for it)."""
        state = ExtendState(id=uuid.uuid4().hex, kernel_name=spec.name)
        self.extends[spec.name] = state
        task = self._extend(state, spec, request, backend or self.backend)
        self._tasks[spec.name] = asyncio.ensure_future(task)
        return state

    async def _extend(
        self, state: ExtendState, spec: ks.InstalledSpec, request: ExtendRequest, backend: Backend
    ) -> None:
        try:
            on_line = self._on_line(state)
            result = await extend_kernel(spec, request, backend, self.log, on_line)
        except ExtendError as e:
            state.status, state.message, state.packages = "error", str(e), list(e.packages)
        except MLContainerError as e:
            state.status, state.message = "error", str(e)
        except Exception as e:  # a background task: nobody else would see it
            self.log.exception("Extending %s failed", spec.name)
            state.status, state.message = "error", f"Extending {spec.name} failed: {e}"
        else:
            state.status, state.version = "done", result.version.to_json()
            state.message = (
                f"{spec.name} already has every package asked for: nothing was added."
                if result.unchanged
                else f"{spec.name} is now version {result.version.number}: "
                f"{result.version.summary()}"
            )
        await asyncio.sleep(0)  # the lines a thread handed over come before the end
        self._emit(state, "")

    def _on_line(self, state: ExtendState) -> Callable[[str], None]:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def on_line(line: str) -> None:  # from the event loop or a build's executor thread
            if threading.get_ident() == loop_thread:
                self._add_line(state, line)
            else:
                loop.call_soon_threadsafe(self._add_line, state, line)

        return on_line

    def _add_line(self, state: ExtendState, line: str) -> None:
        state.lines.append(line)
        del state.lines[:-MAX_LINES]
        self._emit(state, line)

    def _emit(self, state: ExtendState, line: str) -> None:
        if self.event_logger is None:
            return
        data = asdict(state)
        del data["lines"]
        data["line"] = line
        self.event_logger.emit(schema_id=SCHEMA_ID, data=data)

    async def stop(self) -> None:
        """Cancel running extends (nothing is written before an extend's last step)."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


def requirements(body: dict[str, Any], key: str) -> tuple[str, ...]:
    """``body[key]``, a list of strings, stripped (400 for anything else)."""
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise web.HTTPError(400, f"`{key}` must be a list of strings")
    return tuple(item.strip() for item in value if item.strip())


def check_pip(lines: tuple[str, ...]) -> None:
    """Index packages only: no pip options, paths or URLs (400 saying which line)."""
    for line in lines:
        why = ""
        if line.startswith("-"):
            why = "pip options are not accepted"
        else:
            try:
                parsed = Requirement(line)
            except InvalidRequirement:
                why = "it is not a requirement (a path or a URL is not accepted)"
            else:
                if parsed.url:
                    why = "URLs are not accepted"
        if why:
            msg = (
                f"{line!r}: {why}. Give index packages, one per line, as 'name', "
                "'name==version' or 'name>=version'."
            )
            raise web.HTTPError(400, msg)


class _SpecHandler(MLContainerHandler):
    def spec(self, name: str) -> ks.InstalledSpec:
        try:
            return find_kernelspec(name)
        except MLContainerError as e:
            raise web.HTTPError(404, str(e)) from None

    def may_change_kernelspecs(self) -> None:
        if not self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"):
            raise web.HTTPError(
                403, "changing a kernelspec needs the permission to run kernels (execute:kernels)"
            )

    def backend_of(self, spec: ks.InstalledSpec) -> Backend:
        """The engine ``spec``'s kernels run on: its own ``docker_host``, else the server's."""
        return backends.connect(spec.docker_host) if spec.docker_host else self.backend

    @property
    def extends(self) -> ExtendTracker:
        return self.settings["mlcontainer"]["extends"]  # type: ignore[no-any-return]


class VersionsHandler(_SpecHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """The kernelspec's versions, oldest first, and the current one's number."""
        spec = self.spec(name)
        self.finish(
            {
                "name": spec.name,
                "current": envs.current(spec.spec).number,
                "versions": [version.to_json() for version in envs.history(spec.spec)],
            }
        )


class ExtendHandler(_SpecHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """The last extend of this kernelspec (404: none since the server started)."""
        state = self.extends.extends.get(name)
        if state is None:
            raise web.HTTPError(404, f"no extend of {name} since this server started")
        self.finish(asdict(state))

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        """Start adding ``{"pip": [...], "apt": [...]}`` to the kernelspec: 202 and its id."""
        self.may_change_kernelspecs()
        body = self.json_body()
        pip, apt = requirements(body, "pip"), requirements(body, "apt")
        check_pip(pip)
        spec = self.spec(name)
        wheelhouse = self.settings["mlcontainer"].get("extend_wheelhouse") or ""
        request = ExtendRequest(
            requirements=pip,
            apt=apt,
            wheelhouse=wheelhouse,
            author=self.current_user.username,  # who the server verified, never the body's
        )
        try:
            request.check()
        except ConfigurationError as e:  # the request's fault, not the server's
            raise web.HTTPError(400, str(e)) from None
        if wheelhouse and apt:
            msg = (
                "This server installs packages only from its wheelhouse "
                "(MLContainerExtension.extend_wheelhouse): apt packages are not taken here; "
                "ask an admin to add them with `jupyter mlcontainer extend --apt`."
            )
            raise web.HTTPError(400, msg)
        if not ks.made_by_us(spec.spec):
            raise web.HTTPError(400, f"{name!r} was not made by jupyter-mlcontainer: add it first")
        if self.extends.running(name):
            raise web.HTTPError(409, f"{name} is being extended already: wait for that to end")
        state = self.extends.start(spec, request, self.backend_of(spec))
        self.set_status(202)
        self.finish(asdict(state))


class RollbackHandler(_SpecHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        """Make ``{"version": N}`` current (default: the current one's parent)."""
        self.may_change_kernelspecs()
        number = self.json_body().get("version")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise web.HTTPError(400, "`version` must be a version number")
        spec = self.spec(name)
        if self.extends.running(name):
            raise web.HTTPError(409, f"{name} is being extended: wait for that to end")
        try:
            version = await rollback(spec, number, self.backend_of(spec))
        except ConfigurationError as e:  # no such version, or its image is gone
            raise web.HTTPError(400, str(e)) from None
        self.finish({"name": name, "current": version.number, "version": version.to_json()})


class AsRecordedHandler(MLContainerHandler):
    def _target(self) -> tuple[str, str, dict[str, Any]]:
        # DELETE takes them as query arguments (many clients send no body with DELETE).
        body = self.json_body() if self.request.method == "POST" else {}
        path = body.get("path", self.get_argument("path", ""))
        kernel_name = body.get("kernel_name", self.get_argument("kernel_name", ""))
        if not (isinstance(path, str) and path and isinstance(kernel_name, str) and kernel_name):
            raise web.HTTPError(400, 'give {"path": notebook, "kernel_name": kernelspec}')
        # Kernels know their notebook by its path on disk (JPY_SESSION_NAME).
        os_path = path
        get_os_path = getattr(self.contents_manager, "_get_os_path", None)
        if get_os_path is not None:  # a file contents manager
            try:
                os_path = str(get_os_path(path))
            except web.HTTPError:  # outside the root: refused
                raise
            except Exception:  # noqa: S110 (a non-file contents manager)
                pass
        return os_path, kernel_name, body

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """The notebook's next kernel of ``kernel_name`` starts with ``image``, one of the
        kernelspec's versions."""
        os_path, kernel_name, body = self._target()
        image = body.get("image")
        if not isinstance(image, str) or not image:
            raise web.HTTPError(400, "give the recorded `image` (reference or image id)")
        try:
            spec = find_kernelspec(kernel_name)
        except MLContainerError as e:
            raise web.HTTPError(404, str(e)) from None
        version = envs.version_by_image(spec.spec, image, image)
        if version is None:
            msg = (
                f"{image} is not one of {kernel_name}'s versions: run the notebook with "
                "`jupyter mlcontainer run --as-recorded` instead"
            )
            raise web.HTTPError(400, msg)
        recorded.choose(os_path, kernel_name, version.image)
        self.finish({"kernel_name": kernel_name, "image": version.image, **version.to_json()})

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        """``?path=…&kernel_name=…``: start the notebook's kernels with the kernelspec's
        current version again."""
        os_path, kernel_name, _ = self._target()
        recorded.forget(os_path, kernel_name)
        self.set_status(204)
        self.finish()


_NAME = r"(?P<name>[\w.-]+)"

environment_handlers = [
    (rf"/mlcontainer/kernelspecs/{_NAME}/versions", VersionsHandler),
    (rf"/mlcontainer/kernelspecs/{_NAME}/extend", ExtendHandler),
    (rf"/mlcontainer/kernelspecs/{_NAME}/rollback", RollbackHandler),
    (r"/mlcontainer/as-recorded", AsRecordedHandler),
]

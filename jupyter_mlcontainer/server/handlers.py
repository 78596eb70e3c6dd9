"""REST API under ``/mlcontainer/``: engine, images and pulls, kernel containers, kernelspecs.

Every handler is authenticated (``@web.authenticated``) and authorized against the
``mlcontainer`` resource (``@authorized``); ``tests/test_extension.py`` fails if any route
answers without credentials.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..core import environments as envs
from ..core import kernelspec as ks
from ..core import labels
from ..core.backend import Backend, ContainerState, families
from ..core.exceptions import MLContainerError
from ..kernel.answers import as_http_error
from ..kernel.grant import gpu_table
from ..kernel.install import AddRequest, add_container_kernelspec, api_words
from ..kernel.policy import MLContainerPolicy
from ..kernel.provisioner import MLContainerProvisioner
from .gateway import request_user
from .gateway.kernels import viewer_uids
from .pulls import PullTracker
from .reclaim import GpuReclaimer
from .user import kernel_uids

AUTH_RESOURCE = "mlcontainer"


class MLContainerHandler(APIHandler):
    """Our handlers: the `mlcontainer` resource, our errors answered with their status."""

    auth_resource = AUTH_RESOURCE

    def _handle_request_exception(self, e: BaseException) -> None:
        # Our errors answered with their status and message (kernel/answers.py), not as
        # tornado's "Unhandled error" (which reads the exception from sys.exc_info()).
        if isinstance(e, MLContainerError):
            try:
                raise as_http_error(e) from e
            except web.HTTPError as answer:
                super()._handle_request_exception(answer)
                return
        super()._handle_request_exception(e)

    @property
    def backend(self) -> Backend:
        return self.settings["mlcontainer"]["backend"]  # type: ignore[no-any-return]

    @property
    def reclaimer(self) -> GpuReclaimer | None:
        return self.settings["mlcontainer"].get("reclaimer")  # type: ignore[no-any-return]

    @property
    def pulls(self) -> PullTracker:
        return self.settings["mlcontainer"]["pulls"]  # type: ignore[no-any-return]

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise web.HTTPError(400, "the request body is not JSON") from e
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body


class EngineHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Engine reachable or not (with the reason), version, GPU support."""
        backend = self.backend
        try:
            version = await backend.version()
            kind = await backend.kind()
            gpus = await backend.gpu_support(max_age=10)
        except MLContainerError as e:
            self.finish({"reachable": False, "address": backend.address, "error": str(e)})
            return
        self.finish(
            {
                "reachable": True,
                "address": backend.address,
                "engine": kind.describe(),  # "Podman 4.3.1, rootless"
                "remote": backend.remote,
                "version": version.get("Version"),
                "api_version": version.get("ApiVersion"),
                "os": version.get("Os"),
                "arch": version.get("Arch"),
                "gpus": {
                    "available": gpus.available,
                    "nvidia_runtime": gpus.nvidia_runtime,
                    "cdi_devices": list(gpus.cdi_devices),
                    "description": gpus.describe(),
                },
            }
        )


class ImagesHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Local images, and the images container kernelspecs refer to (present or not)."""
        images = await self.backend.images()
        local = [
            {
                "id": image["Id"],
                "tags": [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"],
                "digests": image.get("RepoDigests") or [],
                "size": image.get("Size"),
                "created": image.get("Created"),
            }
            for image in images
        ]
        referenced = []
        for spec in ks.installed_specs():
            if not spec.is_container:
                continue
            data = await self.backend.image(spec.image) if spec.image else None
            referenced.append(
                {
                    "kernelspec": spec.name,
                    "display_name": spec.spec.get("display_name", spec.name),
                    "image": spec.image,
                    "source": ks.recorded(spec.spec).get("source"),
                    "present": data is not None,
                    "pullable": _pullable(spec.image, data),
                    "id": data.get("Id") if data else None,
                    "size": data.get("Size") if data else None,
                }
            )
        self.finish({"images": local, "kernelspecs": referenced})


_IMAGE_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")


def _pullable(image: str | None, inspect: dict[str, Any] | None) -> bool:
    """Whether pulling ``image`` can work: a registry reference, not an engine-local image.

    An image id exists on one engine only. A present image is pullable when it came from
    (or went to) a registry under this repository, or is pinned by digest; one built or
    loaded on the engine is not. A missing image can only come from a registry.
    """
    if not image or _IMAGE_ID.fullmatch(image):
        return False
    if inspect is None:
        return True
    return ks.pinned_reference(image, inspect)[1]


class PullsHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Pulls of this server, running and finished."""
        self.finish({"pulls": [vars(state) for state in self.pulls.pulls.values()]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Start pulling ``{"image": …}``; progress goes out on the event bus."""
        image = str(self.json_body().get("image") or "").strip()
        if not image:
            raise web.HTTPError(400, 'give the image to pull: {"image": "repo:tag"}')
        state = self.pulls.start(image)
        self.set_status(202)
        self.finish(vars(state))


def _container_kernel(handler: APIHandler, kernel_id: str) -> MLContainerProvisioner:
    kernel_manager = handler.kernel_manager
    if kernel_id not in kernel_manager:
        raise web.HTTPError(404, f"no kernel {kernel_id}")
    provisioner = kernel_manager.get_kernel(kernel_id).provisioner
    if not isinstance(provisioner, MLContainerProvisioner):
        raise web.HTTPError(404, f"kernel {kernel_id} does not run in a container")
    return provisioner


def _summary(
    kernel_id: str, provisioner: MLContainerProvisioner, reclaimer: GpuReclaimer | None = None
) -> dict[str, Any]:
    last = provisioner.last_exit
    granted = provisioner.granted_gpus
    spec = provisioner.kernel_spec.to_dict() if provisioner.kernel_spec else {}
    recorded = ks.recorded(spec)
    drift = provisioner.container.drift
    kernel_name = getattr(provisioner.parent, "kernel_name", None)
    return {
        "display_name": spec.get("display_name"),
        "probe": recorded.get("probe"),
        "source": recorded.get("source"),
        "kernel_id": kernel_id,
        "kernel_name": kernel_name,
        "container_id": provisioner.container_id,
        "container_name": provisioner.container_name,
        "image": provisioner.image,
        "image_details": provisioner.image_details,
        "version": (provisioner.image_details or {}).get("version"),
        # pip-installed into the container, not in its image (as last looked up).
        "drift": drift.to_json(),
        "drift_message": envs.describe_drift(drift, kernel_name or "KERNEL") if drift else None,
        "network": provisioner.network,
        "gpus_requested": provisioner.gpus,
        "gpus_granted": granted.describe() if granted is not None else None,
        "mem_limit": provisioner.mem_limit,
        # A stop or restart that Jupyter asked for is an end, not a death: not reported.
        "reclaim_in": reclaimer.reclaim_in(kernel_id) if reclaimer is not None else None,
        "last_exit": None
        if last is None or last.requested
        else {"exit_code": last.exit_code, "reason": last.reason, "message": last.message()},
    }


def placed(state: ContainerState) -> dict[str, str]:
    """Where a scheduled backend placed the kernel's container (``{"node": "sw-gpu"}``); {}
    where the engine is the place (the key is absent, not empty)."""
    return {"node": state.node} if state.node else {}


def _container_kernels(handler: APIHandler) -> dict[str, MLContainerProvisioner]:
    """This server's kernels that run in containers, by kernel id."""
    kernel_manager = handler.kernel_manager
    out = {}
    for kernel_id in kernel_manager.list_kernel_ids():
        provisioner = kernel_manager.get_kernel(kernel_id).provisioner
        if isinstance(provisioner, MLContainerProvisioner):
            out[kernel_id] = provisioner
    return out


class KernelsHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The kernels of this server that run in containers, with their containers' state.

        One container list call per engine, however many kernels: the sidebar polls this.
        Resource use and logs cost calls per container; they are in ``kernels/{id}``.
        """
        kernels = _container_kernels(self)
        by_backend: dict[Backend, list[str]] = {}
        for provisioner in kernels.values():
            if provisioner.container_id:
                by_backend.setdefault(provisioner.container_backend, []).append(
                    provisioner.container_id
                )
        containers: dict[str, ContainerState] = {}
        for backend, ids in by_backend.items():
            listed = await backend.containers(labels.managed_filter() | {"id": ids})
            containers.update((c.id, c) for c in listed)
        out = []
        for kernel_id, provisioner in kernels.items():
            summary = _summary(kernel_id, provisioner, self.reclaimer)
            container = containers.get(provisioner.container_id or "")
            if container is not None:
                summary["state"] = container.status
                summary["status"] = container.description
                summary.update(placed(container))
            else:
                summary["state"] = "starting" if provisioner.container_id is None else "gone"
            out.append(summary)
        self.finish({"kernels": out})


class GpusHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The GPUs where this server's kernels run, with who holds each (the GPU ledger):
        users by name, kernel ids only for this server's own kernels."""
        policy = MLContainerPolicy.for_kernel(self.serverapp)
        images = [s.image for s in ks.installed_specs() if s.is_container and s.image]
        table = await gpu_table(
            self.backend, policy, images[0] if images else "", _container_kernels(self)
        )
        self.finish(table)


class KernelHandler(MLContainerHandler):
    #: The last CPU sample of each container: (monotonic time, total CPU nanoseconds).
    _previous_cpu: dict[str, tuple[float, float]] = {}

    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        """One kernel's container: image, digest, state, GPUs, CPU and memory, log tail.

        ``?tail=N`` lines of log (40 by default; 0 for none, which saves the logs call).
        """
        try:
            tail = int(self.get_argument("tail", "40"))
        except ValueError:
            tail = -1
        if tail < 0:
            raise web.HTTPError(400, "tail must be a number of lines: 0 or more")
        provisioner = _container_kernel(self, kernel_id)
        self._prune_cpu_samples()
        try:
            await provisioner.refresh_drift()
        except MLContainerError as e:  # the last one looked up stands
            self.log.debug("Kernel %s: drift not looked up: %s", kernel_id, e)
        out = _summary(kernel_id, provisioner, self.reclaimer)
        container_id = provisioner.container_id
        backend = provisioner.container_backend
        state = await backend.inspect(container_id) if container_id else None
        out["state"] = state.status if state else "gone"
        if out["state"] == "removing":
            # The engine answers 409 to logs and stats now: nothing to read, not an error.
            out["state_message"] = "the container is stopping"
        if state is not None:
            out["device_requests"] = list(state.device_requests)
            out.update(placed(state))
            stats = await backend.stats(state.id)
            out["resources"] = self._resources(state.id, stats or {})
            out["log_tail"] = await backend.logs(state.id, tail=tail) if tail > 0 else ""
        self.finish(out)

    def _prune_cpu_samples(self) -> None:
        """Forget the samples of containers that no kernel of this server runs any more."""
        live = {p.container_id for p in _container_kernels(self).values()}
        for container_id in set(self._previous_cpu) - live:
            del self._previous_cpu[container_id]

    def _resources(self, container_id: str, stats: Mapping[str, Any]) -> dict[str, Any]:
        memory = stats.get("memory_stats") or {}
        usage = memory.get("usage")
        cache = (memory.get("stats") or {}).get("cache", 0) or (memory.get("stats") or {}).get(
            "inactive_file", 0
        )
        cpu_total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        now = time.monotonic()
        cpu_percent = None
        if cpu_total is not None:
            previous = self._previous_cpu.get(container_id)
            if previous is not None and now > previous[0]:
                cpu_percent = round(100 * (cpu_total - previous[1]) / 1e9 / (now - previous[0]), 1)
            self._previous_cpu[container_id] = (now, cpu_total)
        return {
            "memory_bytes": None if usage is None else max(usage - (cache or 0), 0),
            "memory_limit_bytes": memory.get("limit"),
            "cpu_seconds": None if cpu_total is None else round(cpu_total / 1e9, 2),
            "cpu_percent": cpu_percent,
            "pids": (stats.get("pids_stats") or {}).get("current"),
        }


class KernelspecsHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Installed container kernelspecs (as `jupyter mlcontainer list --json`)."""
        out = [
            {
                "name": spec.name,
                "display_name": spec.spec.get("display_name", spec.name),
                "image": spec.image,
                "config": ks.provisioner_config(spec.spec),
                "recorded": ks.recorded(spec.spec),
            }
            for spec in ks.installed_specs()
            if spec.is_container
        ]
        self.finish({"kernelspecs": out})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Create a container kernelspec, as `jupyter mlcontainer add` does.

        A kernelspec is code every user of this Jupyter runs: besides ``write`` on our
        resource, this takes the permission to run kernels (``execute`` on ``kernels``).
        """
        if not self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"):
            raise web.HTTPError(
                403, "creating a kernelspec needs the permission to run kernels (execute:kernels)"
            )
        try:  # its fields and types: the traits' (kernel/install.py's add_fields)
            request = AddRequest.from_json(self.json_body())
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from e
        try:  # the request is validated first, before any pull
            result = await add_container_kernelspec(
                self.backend, request, self.log, setting_words=api_words
            )
        except FileExistsError:
            self._name_taken(request)
            return
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from e
        self.set_status(201)
        self.finish(
            {
                "name": result.name,
                "display_name": result.spec["display_name"],
                "image": result.pinned,
                "shareable": result.shareable,
                "probe": result.probe.to_dict(),
                # What the creator should know, e.g. GPUs asked of an engine that has none.
                "warnings": [warning[0].upper() + warning[1:] for warning in result.warnings],
            }
        )

    def _name_taken(self, request: AddRequest) -> None:
        """409, in the API's own terms (its fields, not the CLI's flags), with what a client
        needs to offer the fix: the name, and whether ``replace`` would replace it."""
        name = request.name or ks.kernel_name_for(request.image)
        existing = {spec.name: spec for spec in ks.installed_specs()}.get(name)
        replaceable = existing is not None and ks.made_by_us(existing.spec)
        if replaceable:
            text = (
                f"a kernelspec named `{name}` exists: give another `name`, "
                "or set `replace` to replace it"
            )
        else:
            text = (
                f"a kernelspec named `{name}` exists and was not made by jupyter-mlcontainer, "
                "so it is never replaced: give another `name`"
            )
        self.set_status(409)
        self.finish(
            {"message": text, "reason": "name-taken", "name": name, "replaceable": replaceable}
        )


_KERNEL_ID = r"(?P<kernel_id>[\w-]+)"


class VolumesHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The project's volumes: the user's HOME volumes (caches) and kernel runtimes, with
        their sizes and whether an installed kernelspec still needs them (else `prune`
        removes them). HOME volumes of other uids are not listed: they are other users'
        files (see ``user.kernel_uids`` for who the user of this server is)."""
        specs = [spec for spec in ks.installed_specs() if spec.is_container]
        wanted = families(spec.source for spec in specs)
        try:
            found = await self.backend.project_volumes(sizes=True)
        except MLContainerError as e:
            raise web.HTTPError(503, str(e)) from None
        own = viewer_uids(request_user()) or kernel_uids(
            self.config, self.settings.get("server_root_dir")
        )
        found = [v for v in found if v.kind != "home" or "*" in own or v.uid in own]
        self.finish(
            {
                "volumes": [
                    {
                        "name": v.name,
                        "kind": v.kind,
                        "uid": v.uid,
                        "image": v.image,
                        "size": v.size,
                        "needed": v.needed(wanted),
                    }
                    for v in found
                ]
            }
        )


class PoolHandler(MLContainerHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The warm pool: its settings and the ready kernels waiting to be claimed."""
        self.finish(self.settings["mlcontainer"]["pool"].describe())


default_handlers = [
    (r"/mlcontainer/engine", EngineHandler),
    (r"/mlcontainer/images", ImagesHandler),
    (r"/mlcontainer/images/pull", PullsHandler),
    (r"/mlcontainer/gpus", GpusHandler),
    (r"/mlcontainer/kernels", KernelsHandler),
    (rf"/mlcontainer/kernels/{_KERNEL_ID}", KernelHandler),
    (r"/mlcontainer/kernelspecs", KernelspecsHandler),
    (r"/mlcontainer/pool", PoolHandler),
    (r"/mlcontainer/volumes", VolumesHandler),
]

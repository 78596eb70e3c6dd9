"""Create a pinned container kernelspec from an image: shared by `jupyter mlcontainer add`
and the server extension's kernelspecs endpoint."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from traitlets import TraitError

from ..core import kernelspec as ks
from ..core.backend import Backend
from ..core.gpus import GPURequest, GPUSupport, parse_gpus
from ..core.logos import write_logos
from ..core.probe import ImageProbe
from ..core.reference import check_reference
from .settings import ContainerKernelSettings as KernelTraits

#: Quiet: the callers say themselves where the kernelspec went.
_quiet = logging.getLogger("jupyter_mlcontainer.kernel.install")
_quiet.setLevel(logging.WARNING)


@dataclass(frozen=True)
class AddRequest:
    """What to create (None: derive it from the image, its labels or its probe)."""

    image: str
    name: str | None = None
    display_name: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    mem_limit: str | None = None
    #: The engine the kernel runs on (an address or docker context; None: the default).
    docker_host: str | None = None
    user: bool = True
    prefix: str | None = None
    replace: bool = False


@dataclass(frozen=True)
class AddResult:
    name: str
    destination: str
    spec: dict[str, Any]
    pinned: str
    shareable: bool
    probe: ImageProbe
    #: Things the user should know (e.g. GPUs requested from an engine without GPU support).
    warnings: tuple[str, ...] = ()


def validate(request: AddRequest) -> str:
    """Check the request before any work; return the kernelspec name. Raises ValueError."""
    check_reference(request.image)
    name = request.name or ks.kernel_name_for(request.image)
    if not ks.is_valid_name(name):
        msg = (
            f"invalid kernel name {name!r}: use lowercase letters, digits, '.', '_' and '-', "
            f"not starting with '.' (at most {ks.MAX_NAME} characters)"
        )
        raise ValueError(msg)
    # The provisioner's own validators: what `add` accepts, a kernel can start with.
    given = {"gpus": request.gpus, "shm_size": request.shm_size, "mem_limit": request.mem_limit}
    try:
        KernelTraits(**{key: value for key, value in given.items() if value is not None})
    except TraitError as e:
        raise ValueError(str(e)) from None
    existing = {spec.name: spec for spec in ks.installed_specs()}
    if name in existing and not request.replace:
        msg = f"a kernelspec named {name!r} exists ({existing[name].path}); use --replace or --name"
        raise FileExistsError(msg)
    if name in existing and not ks.made_by_us(existing[name].spec):
        msg = (
            f"the kernelspec {name!r} ({existing[name].path}) was not made by jupyter-mlcontainer, "
            "so it is never replaced: choose another --name"
        )
        raise FileExistsError(msg)
    return name


async def add_container_kernelspec(
    backend: Backend,
    request: AddRequest,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> AddResult:
    """Pull if needed, pin, probe, write kernel.json and logos, install the kernelspec."""
    name = validate(request)
    inspect = await backend.obtain_image(request.image, "missing", log, on_event=on_event)
    pinned, shareable = ks.pinned_reference(request.image, inspect)
    probe = await backend.probe_image(pinned)
    image_labels = (inspect.get("Config") or {}).get("Labels") or {}
    settings = ks.KernelspecConfig(
        gpus=request.gpus or image_labels.get(ks.LABEL_GPUS) or "auto",
        shm_size=request.shm_size,
        mem_limit=request.mem_limit,
        docker_host=request.docker_host,
    )
    gpus = parse_gpus(settings.gpus)
    warnings = []
    if gpus.explicit:
        warning = gpus_warning(gpus, await backend.gpu_support(), lambda value: f"--gpus {value}")
        if warning:
            warnings.append(warning)
    display_name = request.display_name or ks.unique_display_name(
        image_labels.get(ks.LABEL_DISPLAY_NAME) or probe.display_name(gpus.explicit),
        request.image,
        [spec for spec in ks.installed_specs() if spec.name != name],
    )
    spec = ks.kernel_json(
        image=request.image,
        pinned=pinned,
        image_id=str(inspect["Id"]),
        probe=probe,
        display_name=display_name,
        settings=settings,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        write_logos(folder, probe.logo_kind(), accent_of=request.image)
        destination = KernelSpecManager(log=_quiet).install_kernel_spec(
            str(folder),
            name,
            user=request.prefix is None and request.user,
            prefix=request.prefix,
        )  # always replaces: validate() already refused an existing name without `replace`
    return AddResult(name, str(destination), spec, pinned, shareable, probe, tuple(warnings))


def gpus_warning(
    asked: GPURequest, support: GPUSupport, setting: Callable[[str], str]
) -> str | None:
    """What to tell whoever makes a kernel that asks for GPUs an engine cannot give (it
    would not start there), with the fix in their own terms: ``setting("auto")`` is how
    they set ``gpus`` to ``auto`` (``--gpus auto`` for the CLI, a field for the REST API)."""
    if not asked.explicit or support.available:
        return None
    return (
        f"this kernel asks for {asked.describe()}, but the engine has {support.describe()}: "
        "it will not start here. Install the NVIDIA Container Toolkit on the engine's host, "
        f"or use {setting('auto')} (GPUs when there are any) or {setting('none')}."
    )

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

from . import kernelspec as ks
from .engine import Engine
from .gpus import parse_gpus
from .images import obtain_image, probe_image
from .logos import write_logos
from .probe import ImageProbe


@dataclass(frozen=True)
class AddRequest:
    """What to create (None: derive it from the image, its labels or its probe)."""

    image: str
    name: str | None = None
    display_name: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    mem_limit: str | None = None
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


def validate(request: AddRequest) -> str:
    """Check the request before any work; return the kernelspec name. Raises ValueError."""
    if not request.image.strip():
        msg = "give an image, e.g. python:3.11-slim"
        raise ValueError(msg)
    name = request.name or ks.kernel_name_for(request.image)
    if not ks.is_valid_name(name):
        msg = (
            f"invalid kernel name {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            f"(at most {ks.MAX_NAME} characters)"
        )
        raise ValueError(msg)
    if request.gpus is not None:
        parse_gpus(request.gpus)
    existing = {spec.name: spec for spec in ks.installed_specs()}
    if name in existing and not request.replace:
        msg = f"a kernelspec named {name!r} exists ({existing[name].path}); use --replace or --name"
        raise FileExistsError(msg)
    return name


async def add_container_kernelspec(
    engine: Engine,
    request: AddRequest,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> AddResult:
    """Pull if needed, pin, probe, write kernel.json and logos, install the kernelspec."""
    name = validate(request)
    inspect = await obtain_image(engine, request.image, "missing", log, on_event=on_event)
    pinned, shareable = ks.pinned_reference(request.image, inspect)
    probe = await probe_image(engine, pinned)
    image_labels = (inspect.get("Config") or {}).get("Labels") or {}
    settings = ks.ContainerKernelSettings(
        gpus=request.gpus or image_labels.get(ks.LABEL_GPUS) or "auto",
        shm_size=request.shm_size,
        mem_limit=request.mem_limit,
    )
    spec = ks.kernel_json(
        image=request.image,
        pinned=pinned,
        image_id=str(inspect["Id"]),
        probe=probe,
        display_name=request.display_name
        or image_labels.get(ks.LABEL_DISPLAY_NAME)
        or probe.display_name(),
        settings=settings,
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        write_logos(folder, probe.logo_kind())
        destination = KernelSpecManager().install_kernel_spec(
            str(folder),
            name,
            user=request.prefix is None and request.user,
            prefix=request.prefix,
        )  # always replaces: validate() already refused an existing name without `replace`
    return AddResult(name, str(destination), spec, pinned, shareable, probe)

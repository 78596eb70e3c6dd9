"""Container kernelspecs: names, kernel.json contents, and finding them among installed ones.

Pure apart from reading kernelspec folders. The CLI and the server extension build on it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_path

from .._version import __version__
from .probe import ImageProbe
from .reference import repository, split_registry

PROVISIONER_NAME = "mlcontainer"
#: Our key in kernel.json's metadata: probe, source reference, image id.
METADATA_KEY = "jupyter_mlcontainer"
#: Image labels that ``add`` reads (set by the images in images/).
LABEL_DISPLAY_NAME = "org.jupyter-mlcontainer.display-name"
LABEL_GPUS = "org.jupyter-mlcontainer.gpus"
KERNEL_ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
#: The first ipykernel major version that speaks CurveZMQ.
CURVE_IPYKERNEL = 7
_VALID_NAME = re.compile(r"^[a-z0-9._-]+$")
MAX_NAME = 64


def is_valid_name(name: str) -> bool:
    """jupyter_client's rule for kernelspec names (letters, digits, ``.``, ``_``, ``-``),
    and a folder name of its own: not ``.``, ``..`` or hidden."""
    return bool(_VALID_NAME.match(name)) and len(name) <= MAX_NAME and not name.startswith(".")


def made_by_us(spec_json: dict[str, Any]) -> bool:
    """Whether ``add`` (CLI or REST) wrote this kernel.json: only those may be replaced."""
    return provisioner_of(spec_json) == PROVISIONER_NAME and "created_by" in recorded(spec_json)


def kernel_name_for(image: str) -> str:
    """A stable, valid kernelspec name from an image reference (never from an image id).

    ``registry:5000/team/pytorch-cpu:2.13.0`` → ``mlc-pytorch-cpu-2.13.0``;
    ``repo@sha256:abcdef…`` → ``mlc-repo-abcdef12``.
    """
    ref = image.strip()
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    last = ref.rsplit("/", 1)[-1]
    repo, _, tag = last.partition(":")
    if repo.startswith("sha256") or not repo:
        msg = f"Cannot name a kernel after {image!r}: give an image name, not an image id."
        raise ValueError(msg)
    parts = [repo]
    if tag and tag != "latest":
        parts.append(tag)
    if digest:
        parts.append(digest.split(":", 1)[-1][:8])
    name = re.sub(r"[^a-z0-9._-]+", "-", "-".join(["mlc", *parts]).lower())
    name = re.sub(r"-{2,}", "-", name).strip("-.")
    return name[:MAX_NAME].rstrip("-.")


def short_image_name(image: str) -> str:
    """``mlcontainer/python:3.11`` of ``registry.example.com:5000/mlcontainer/python:3.11@sha…``:
    the repository path and tag, without a registry host or digest."""
    return split_registry(image.split("@", 1)[0])[1]


def unique_display_name(name: str, image: str, others: list[InstalledSpec]) -> str:
    """``name``, or ``name (repo:tag)`` when another kernelspec of another image has it already:
    two kernels in the launcher never look the same."""
    taken = {
        str(spec.spec.get("display_name", ""))
        for spec in others
        if recorded(spec.spec).get("source", spec.image) != image
    }
    return name if name not in taken else f"{name} ({short_image_name(image)})"


def pinned_reference(image: str, inspect: dict[str, Any]) -> tuple[str, bool]:
    """The reference that pins ``image``: (reference, shareable).

    A registry digest (``repo@sha256:…``) when the image has one for its repository, which
    teammates can pull; otherwise the local image id, which only this engine has.
    """
    repo = repository(image)
    digests = inspect.get("RepoDigests") or []
    for entry in digests:
        if entry.split("@", 1)[0] == repo:
            return entry, True
    if "@sha256:" in image:
        return image, True
    return str(inspect["Id"]), False


def image_details(image: str, inspect: dict[str, Any]) -> dict[str, Any]:
    """What a kernel ran in, as its details (REST, sidebar) and the notebooks it wrote
    (``environment``, ``run``) both record it: the reference it was started with, the image id,
    the image's registry digests, and ``digest``, one reference that pulls exactly this image.

    ``digest`` is the digest of ``image``'s own repository when there is one, else the image's
    first digest in any other registry (the same image id, pushed or pulled elsewhere); None
    only for an image that no registry has (built or loaded on this engine).
    """
    repo_digests = [str(d) for d in inspect.get("RepoDigests") or []]
    pinned, shareable = pinned_reference(image, inspect)
    digest = pinned if shareable else (repo_digests[0] if repo_digests else None)
    return {
        "image": image,
        "image_id": inspect.get("Id"),
        "digest": digest,
        "repo_digests": repo_digests,
    }


def short_id(image_id: str) -> str:
    """``sha256:27dd4c5e1f2a…``: an image id or digest as ``docker images`` shortens it."""
    algorithm, _, hexdigits = image_id.rpartition(":")
    prefix = f"{algorithm}:" if algorithm else ""
    return f"{prefix}{hexdigits[:12]}…" if len(hexdigits) > 12 else image_id


def describe_pin(source: str, image: str) -> str:
    """How ``list`` shows a kernel's image: the reference it was added from, with its pin.

    ``mlcontainer/python:3.11 (sha256:27dd4c5e1f2a…, local build)`` for an image pinned to its
    local id, ``reg:5000/team/python:3.11 (sha256:9f8e7d6c5b4a…)`` for one pinned by digest,
    ``source → image`` when the kernelspec names another reference, and the reference alone
    when nothing else was recorded.
    """
    if not source or source == image:
        return image
    if image.startswith("sha256:"):
        return f"{source} ({short_id(image)}, local build)"
    if "@" in image:
        return f"{source} ({short_id(image.split('@', 1)[1])})"
    return f"{source} → {image}"


@dataclass(frozen=True)
class KernelspecConfig:
    """What ``jupyter mlcontainer add`` puts into the provisioner's config besides the image:
    the kernel settings it was given (or took from the image's labels), by name. Which settings
    those can be, with their types and defaults, the settings' traits say (the ones tagged
    ``add`` in kernel/settings.py); they were checked there."""

    settings: Mapping[str, Any] = field(default_factory=dict)

    def config(self, image: str) -> dict[str, Any]:
        given = {name: value for name, value in self.settings.items() if value not in (None, "")}
        if given.get("backend") == "swarm":
            # A HOME volume is node-local and a swarm kernel may land on any node.
            given.setdefault("persistent_home", False)
        return {"image": image, **given}


def kernel_json(
    *,
    image: str,
    pinned: str,
    image_id: str,
    probe: ImageProbe,
    display_name: str,
    settings: KernelspecConfig,
) -> dict[str, Any]:
    """kernel.json of a container kernel pinned to ``pinned``."""
    return {
        "argv": list(KERNEL_ARGV),
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        "env": {},
        "metadata": {
            "debugger": probe.ipykernel is not None,
            # CurveZMQ-encrypted kernel traffic where the server allows it (jupyter_client's
            # transport_encryption 'auto' or 'required'): ipykernel 7 speaks it.
            **({"supported_encryption": ["curve"]} if speaks_curve(probe) else {}),
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": settings.config(pinned),
            },
            METADATA_KEY: {
                "source": image,
                "image_id": image_id,
                "probe": probe.to_dict(),
                "created_by": f"jupyter-mlcontainer {__version__}",
            },
        },
    }


def speaks_curve(probe: ImageProbe) -> bool:
    """Whether the kernel will speak CurveZMQ: ipykernel 7 or newer, the image's own or (when
    the image has none) the injected one."""
    if probe.ipykernel is None:
        return True  # the injected runtime's ipykernel (see docker/runtime.py) is 7.x
    major = probe.ipykernel.split(".", 1)[0]
    return major.isdigit() and int(major) >= CURVE_IPYKERNEL


def provisioner_of(spec_json: dict[str, Any]) -> str | None:
    """The provisioner a kernel.json asks for (None: the default local one)."""
    metadata = spec_json.get("metadata") or {}
    provisioner = metadata.get("kernel_provisioner") or {}
    name = provisioner.get("provisioner_name")
    return str(name) if name else None


def provisioner_config(spec_json: dict[str, Any]) -> dict[str, Any]:
    metadata = spec_json.get("metadata") or {}
    return dict((metadata.get("kernel_provisioner") or {}).get("config") or {})


def recorded(spec_json: dict[str, Any]) -> dict[str, Any]:
    """Our metadata of a kernel.json ({} when it was not made by ``add``)."""
    return dict((spec_json.get("metadata") or {}).get(METADATA_KEY) or {})


@dataclass
class InstalledSpec:
    """A kernelspec folder found on disk (including those Jupyter hides)."""

    name: str
    path: Path
    spec: dict[str, Any]

    @property
    def is_container(self) -> bool:
        return provisioner_of(self.spec) == PROVISIONER_NAME

    @property
    def image(self) -> str:
        return str(provisioner_config(self.spec).get("image", ""))

    @property
    def docker_host(self) -> str:
        """The engine it names ('' for the server's)."""
        return str(provisioner_config(self.spec).get("docker_host") or "")

    @property
    def backend(self) -> str:
        """The kind of backend its kernels run on ("docker", "swarm": core/backend.py)."""
        return str(provisioner_config(self.spec).get("backend") or "docker")

    @property
    def source(self) -> str:
        """The reference the image was pinned from (``add`` records it), else the image."""
        return str(recorded(self.spec).get("source") or self.image)


def installed_specs() -> list[InstalledSpec]:
    """Every kernelspec in Jupyter's kernel paths, first occurrence of a name wins."""
    found: dict[str, InstalledSpec] = {}
    for base in jupyter_path("kernels"):
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            path = Path(base) / name
            if name in found or not (path / "kernel.json").is_file():
                continue
            try:
                spec = json.loads((path / "kernel.json").read_text())
            except (OSError, ValueError):
                continue
            found[name.lower()] = InstalledSpec(name.lower(), path, spec)
    return list(found.values())


def installed_provisioners() -> set[str]:
    return {ep.name for ep in entry_points(group="jupyter_client.kernel_provisioners")}

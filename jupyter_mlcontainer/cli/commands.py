"""``jupyter mlcontainer add|list|pull|export|prune``: pinned, shareable container kernelspecs
and the volumes they use. Each is a small traitlets application; all engine work goes through
the backend seam (:class:`~jupyter_mlcontainer.core.backend.Backend`)."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, HasTraits, MetaHasTraits, TraitType

from ..core import kernelspec as ks
from ..core.exceptions import MLContainerError
from ..core.kernelspec import InstalledSpec, installed_provisioners, installed_specs
from ..kernel.install import AddField, AddRequest, add_container_kernelspec, add_fields
from .base import Command, ProgressBar


def _option_name(field: AddField) -> str:
    """The command's trait for a field: the field's name, unless the application has that
    attribute already (``name`` is the command's name: ``kernel_name``)."""
    return f"kernel_{field.name}" if hasattr(Command, field.name) else field.name


def _option_trait(field: AddField) -> TraitType[Any, Any]:
    """The command's trait for a field: of the field's own trait type, with its help. A kernel
    setting not given is None, so that the kernelspec leaves it out (or takes it from the
    image's label) and the setting's default applies."""
    trait = copy.copy(field.trait)
    trait.metadata = {**field.trait.metadata, "config": True}
    trait.help = field.help
    if field.setting:
        trait.default_value = None
        trait.allow_none = True
        trait.help += f"\n\nNot given: {field.fallback}."
    return trait


#: A trait for each option of ``add`` (all but its IMAGE argument), from the declarations.
_AddOptions: Any = MetaHasTraits(
    "_AddOptions",
    (HasTraits,),
    {_option_name(f): _option_trait(f) for f in add_fields() if not f.argument},
)


class AddApp(Command, _AddOptions):
    name = "jupyter-mlcontainer-add"
    description = """Pin IMAGE by digest, probe it, and install a container kernelspec for it.

    The image is pulled if the engine lacks it. The kernelspec records the digest (or, for an
    image that was never pushed to a registry, its local id), what the probe found (Python,
    ipykernel, PyTorch/TensorFlow, CUDA, OS) and a readable display name."""
    examples = """
    jupyter mlcontainer add pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime --gpus all
    jupyter mlcontainer add registry.example.com/team/train:v3 --name team-train --mem-limit 32g
    """

    # The options are the fields of kernel/install.py's add_fields(): their traits (in
    # _AddOptions), their aliases and flags (--mem-limit for mem_limit). Only this is the CLI's:
    sys_prefix = Bool(False, help="Install into sys.prefix (this environment).").tag(config=True)

    aliases = {
        f.option[2:]: f"AddApp.{_option_name(f)}"
        for f in add_fields()
        if not f.argument and not isinstance(f.trait, Bool)
    }
    flags = {
        **{
            f.option[2:]: ({"AddApp": {_option_name(f): True}}, f.help)
            for f in add_fields()
            if isinstance(f.trait, Bool)
        },
        "sys-prefix": ({"AddApp": {"sys_prefix": True}}, "Install into sys.prefix."),
    }

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("give exactly one IMAGE, e.g. `jupyter mlcontainer add python:3.11-slim`")
        self.run(self.add(self.extra_args[0]))

    async def add(self, image: str) -> None:
        given = {f.name: getattr(self, _option_name(f)) for f in add_fields() if not f.argument}
        if self.sys_prefix:
            given["prefix"] = sys.prefix
        request = AddRequest.from_fields({"image": image, **given})
        bar = ProgressBar(image)
        try:
            result = await add_container_kernelspec(
                self.backend(request.docker_host), request, self.log, on_event=bar
            )
        finally:
            bar.close()
        print(f"Installed kernelspec {result.name!r} in {result.destination}")
        print(f"  display name: {result.spec['display_name']}")
        print(f"  image:        {result.pinned}")
        print(f"  probe:        {_probe_summary(result.probe.to_dict())}")
        if result.probe.ipykernel is None:
            print("  ipykernel:    not in the image; a runtime is provided at start (read-only)")
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if not result.shareable:
            print(
                "warning: the image has no registry digest (it was built or loaded here), so the "
                "kernel is pinned to its local image id, which teammates cannot pull. Push it to a "
                "registry and run `add` again to share it.",
                file=sys.stderr,
            )


def _probe_summary(probe: dict[str, Any]) -> str:
    keys = ("python_version", "ipykernel", "torch", "tensorflow", "cuda", "cudnn", "os")
    return ", ".join(f"{k}={probe[k]}" for k in keys if probe.get(k))


class ListApp(Command):
    name = "jupyter-mlcontainer-list"
    description = """List container kernelspecs: image, pin, presence on the engine, GPUs.

    IMAGE is the reference each kernel was added from, with what pins it: a registry digest,
    or the local image id of an image built or loaded on this engine (a local build).
    --json gives the kernel.json reference itself ("image") and the source ("source")."""

    as_json = Bool(False, help="Print JSON.").tag(config=True)
    flags = {"json": ({"ListApp": {"as_json": True}}, "Print JSON.")}

    def start(self) -> None:
        self.run(self.list())

    async def list(self) -> None:
        specs = installed_specs()
        available = installed_provisioners()
        backend = self.backend()
        rows = []
        engine_error = None
        for spec in specs:
            if not spec.is_container:
                continue
            present: bool | None = None
            if engine_error is None:
                try:
                    present = await backend.image(spec.image) is not None
                except MLContainerError as e:
                    engine_error = str(e)
            config = ks.provisioner_config(spec.spec)
            pinned = "no"
            if "@sha256:" in spec.image:
                pinned = "digest"
            elif spec.image.startswith("sha256:"):
                pinned = "image id"
            rows.append(
                {
                    "name": spec.name,
                    "display_name": spec.spec.get("display_name", ""),
                    "image": spec.image,
                    # What it was added from: an image id alone says nothing to a reader.
                    "source": spec.source,
                    "pinned": pinned,
                    "present": present,
                    "gpus": config.get("gpus", "auto"),
                    "path": str(spec.path),
                }
            )
        hidden = [
            (spec.name, ks.provisioner_of(spec.spec))
            for spec in specs
            if ks.provisioner_of(spec.spec) and ks.provisioner_of(spec.spec) not in available
        ]
        if self.as_json:
            print(
                json.dumps(
                    {"kernels": rows, "hidden": [dict(name=n, provisioner=p) for n, p in hidden]},
                    indent=2,
                )
            )
            return
        if not rows:
            print("No container kernelspecs. Add one: jupyter mlcontainer add IMAGE")
        else:
            print(f"{'NAME':<34} {'PRESENT':<8} {'PINNED':<9} {'GPUS':<6} IMAGE")
            for row in rows:
                shown = {True: "yes", False: "MISSING", None: "?"}[row["present"]]
                print(
                    f"{row['name']:<34} {shown:<8} {row['pinned']:<9} "
                    f"{row['gpus']!s:<6} {ks.describe_pin(row['source'], row['image'])}"
                )
        if engine_error:
            print(f"warning: cannot tell which images are present: {engine_error}", file=sys.stderr)
        for name, provisioner in hidden:
            print(
                f"warning: kernelspec {name!r} needs the provisioner {provisioner!r}, which is not "
                "installed here, so Jupyter hides it. Install the package that provides it.",
                file=sys.stderr,
            )


class PullApp(Command):
    name = "jupyter-mlcontainer-pull"
    description = "Pull the images of container kernelspecs (all of them, or the NAMEs given)."

    def start(self) -> None:
        self.run(self.pull(self.extra_args))

    async def pull(self, names: list[str]) -> None:
        specs = {s.name: s for s in installed_specs() if s.is_container}
        unknown = [n for n in names if n not in specs]
        if unknown:
            self.fail(
                f"no container kernelspec named {', '.join(map(repr, unknown))} "
                "(see `jupyter mlcontainer list`)"
            )
        chosen = [specs[n] for n in names] if names else list(specs.values())
        backend = self.backend()
        for spec in chosen:
            if spec.image.startswith("sha256:"):
                print(
                    f"{spec.name}: pinned to local image id {spec.image[:19]}…, "
                    "which no registry has; skipped",
                    file=sys.stderr,
                )
                continue
            bar = ProgressBar(spec.image)
            try:
                await backend.pull(spec.image, self.log, on_event=bar)
            finally:
                bar.close()
            print(f"{spec.name}: {spec.image} pulled")


class ExportApp(Command):
    name = "jupyter-mlcontainer-export"
    description = """Copy kernelspec NAME to DIR, for a teammate's `jupyter kernelspec install`."""

    def start(self) -> None:
        if len(self.extra_args) != 2:
            self.fail("usage: jupyter mlcontainer export NAME DIR")
        name, target = self.extra_args
        specs = {s.name: s for s in installed_specs() if s.is_container}
        if name not in specs:
            self.fail(f"no container kernelspec named {name!r} (see `jupyter mlcontainer list`)")
        destination = Path(target)
        if destination.exists() and any(destination.iterdir()):
            self.fail(f"{destination} exists and is not empty")
        shutil.copytree(specs[name].path, destination, dirs_exist_ok=True)
        print(f"Exported {name!r} to {destination}")
        print(
            "Teammates install it with: "
            f"jupyter kernelspec install --user --name {name} {destination}"
        )
        if specs[name].image.startswith("sha256:"):
            print(
                "warning: this kernel is pinned to a local image id; teammates need the same image "
                "(push it to a registry and re-add it to share it by digest)",
                file=sys.stderr,
            )


class PruneApp(Command):
    name = "jupyter-mlcontainer-prune"
    description = """Remove the volumes of this project that no container kernelspec needs.

    Users' HOME volumes (caches) of image families no installed kernelspec uses, and kernel
    runtimes built by other versions of jupyter-mlcontainer. Volumes a container uses are
    kept; --all removes every unused one, --dry-run only says what would go."""

    everything = Bool(False, help="Remove every volume of this project not in use.").tag(
        config=True
    )
    dry_run = Bool(False, help="Only say what would be removed.").tag(config=True)
    flags = {
        "all": ({"PruneApp": {"everything": True}}, "Remove every unused volume of ours."),
        "dry-run": ({"PruneApp": {"dry_run": True}}, "Only say what would be removed."),
    }

    def start(self) -> None:
        self.run(self.prune())

    async def prune(self) -> None:
        images = [spec.source for spec in container_specs()]
        removed, in_use = await self.backend().prune_volumes(
            images, everything=self.everything, dry_run=self.dry_run
        )
        verb = "would remove" if self.dry_run else "removed"
        for name in removed:
            print(f"{verb} {name}")
        for name in in_use:
            print(f"kept {name}: a container uses it")
        if not removed and not in_use:
            print("nothing to prune")


def container_specs() -> list[InstalledSpec]:
    return [spec for spec in installed_specs() if spec.is_container]

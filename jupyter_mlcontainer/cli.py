"""``jupyter mlcontainer``: turn images into pinned, shareable container kernelspecs.

Subcommands: ``add``, ``list``, ``pull``, ``export``, ``doctor``. Each is a small traitlets
application; all engine work goes through :class:`~jupyter_mlcontainer.engine.Engine`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from jupyter_core.application import JupyterApp
from traitlets import Bool, Unicode

from . import kernelspec as ks
from . import volumes
from ._version import __version__
from .diagnostics import human_size
from .engine import Engine, default_base_url
from .exceptions import MLContainerError
from .gpus import GPURequest, GPUSupport, parse_gpus
from .install import AddRequest, add_container_kernelspec
from .kernelspec import InstalledSpec, installed_provisioners, installed_specs
from .progress import PullProgress

T = TypeVar("T")


class ProgressBar:
    """Pull progress on stderr: a redrawn bar on a terminal, a line every few seconds else."""

    def __init__(self, image: str, stream: Any = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.progress = PullProgress(image, interval=0.2 if self.tty else 3.0)
        self.drawn = False

    def __call__(self, event: dict[str, Any]) -> None:
        line = self.progress.feed(event)
        if line is None:
            return
        if self.tty:
            fraction = self.progress.fraction or 0.0
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r[{bar}] {line[:90]:<90}")
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class _Command(JupyterApp):
    """Shared plumbing: run a coroutine, turn our errors into a message and exit status 1."""

    version = __version__

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run(coro)
        except MLContainerError as e:
            self.fail(str(e))
        except (ValueError, FileExistsError) as e:  # invalid settings or names, name taken
            self.fail(str(e))
        msg = "unreachable: fail() exits"
        raise AssertionError(msg)

    def fail(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.exit(1)

    def engine(self) -> Engine:
        return Engine.for_url(None)


class AddApp(_Command):
    name = "jupyter-mlcontainer-add"
    description = """Pin IMAGE by digest, probe it, and install a container kernelspec for it.

    The image is pulled if the engine lacks it. The kernelspec records the digest (or, for an
    image that was never pushed to a registry, its local id), what the probe found (Python,
    ipykernel, PyTorch/TensorFlow, CUDA, OS) and a readable display name."""
    examples = """
    jupyter mlcontainer add pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime --gpus all
    jupyter mlcontainer add registry.example.com/team/train:v3 --name team-train --mem-limit 32g
    """

    kernel_name = Unicode(
        None, allow_none=True, help="Kernelspec name (default: from the image name)."
    ).tag(config=True)
    display_name = Unicode(
        None, allow_none=True, help="Name in the kernel dropdown (default: from the probe)."
    ).tag(config=True)
    gpus = Unicode(
        None,
        allow_none=True,
        help="GPUs: auto, all, none, a count, or device ids '0,1' (default: the image's "
        "org.jupyter-mlcontainer.gpus label, else auto).",
    ).tag(config=True)
    shm_size = Unicode(
        None, allow_none=True, help="/dev/shm size, e.g. 8g (default: the provisioner's 2g)."
    ).tag(config=True)
    mem_limit = Unicode(None, allow_none=True, help="Memory limit, e.g. 32g (default: none).").tag(
        config=True
    )
    user = Bool(True, help="Install for the current user (the default).").tag(config=True)
    sys_prefix = Bool(False, help="Install into sys.prefix (this environment).").tag(config=True)
    prefix = Unicode(None, allow_none=True, help="Install into this prefix.").tag(config=True)
    replace = Bool(False, help="Replace a kernelspec of the same name.").tag(config=True)

    aliases = {
        "name": "AddApp.kernel_name",
        "display-name": "AddApp.display_name",
        "gpus": "AddApp.gpus",
        "shm-size": "AddApp.shm_size",
        "mem-limit": "AddApp.mem_limit",
        "prefix": "AddApp.prefix",
    }
    flags = {
        "user": ({"AddApp": {"user": True}}, "Install for the current user (default)."),
        "sys-prefix": ({"AddApp": {"sys_prefix": True}}, "Install into sys.prefix."),
        "replace": ({"AddApp": {"replace": True}}, "Replace an existing kernelspec of that name."),
    }

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("give exactly one IMAGE, e.g. `jupyter mlcontainer add python:3.11-slim`")
        self.run(self.add(self.extra_args[0]))

    async def add(self, image: str) -> None:
        request = AddRequest(
            image=image,
            name=self.kernel_name,
            display_name=self.display_name,
            gpus=self.gpus,
            shm_size=self.shm_size,
            mem_limit=self.mem_limit,
            user=self.user,
            prefix=sys.prefix if self.sys_prefix else self.prefix,
            replace=self.replace,
        )
        bar = ProgressBar(image)
        try:
            result = await add_container_kernelspec(self.engine(), request, self.log, on_event=bar)
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


class ListApp(_Command):
    name = "jupyter-mlcontainer-list"
    description = "List container kernelspecs: image, pin, presence on the engine, GPUs."

    as_json = Bool(False, help="Print JSON.").tag(config=True)
    flags = {"json": ({"ListApp": {"as_json": True}}, "Print JSON.")}

    def start(self) -> None:
        self.run(self.list())

    async def list(self) -> None:
        specs = installed_specs()
        available = installed_provisioners()
        engine = self.engine()
        rows = []
        engine_error = None
        for spec in specs:
            if not spec.is_container:
                continue
            present: bool | None = None
            if engine_error is None:
                try:
                    present = await engine.image_inspect(spec.image) is not None
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
                    f"{row['gpus']!s:<6} {row['image']}"
                )
        if engine_error:
            print(f"warning: cannot tell which images are present: {engine_error}", file=sys.stderr)
        for name, provisioner in hidden:
            print(
                f"warning: kernelspec {name!r} needs the provisioner {provisioner!r}, which is not "
                "installed here, so Jupyter hides it. Install the package that provides it.",
                file=sys.stderr,
            )


class PullApp(_Command):
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
        engine = self.engine()
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
                await engine.pull(spec.image, self.log, on_event=bar)
            finally:
                bar.close()
            print(f"{spec.name}: {spec.image} pulled")


class ExportApp(_Command):
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


class DoctorApp(_Command):
    name = "jupyter-mlcontainer-doctor"
    description = (
        "Check the engine, GPU support, the provisioner and every container kernel's image."
    )

    def start(self) -> None:
        ok = self.run(self.doctor())
        if not ok:
            self.exit(1)

    async def doctor(self) -> bool:
        rows: list[tuple[str, str, str]] = []
        try:
            problems = await self._diagnose(rows.append)
        finally:
            width = max((len(label) for label, _, _ in rows), default=0)
            for label, status, detail in rows:
                print(f"{label:<{width}}  {status:<8} {detail}".rstrip())
        print("all good" if not problems else f"{problems} problem(s) found")
        return problems == 0

    async def _diagnose(self, add_row: Callable[[tuple[str, str, str]], None]) -> int:
        """Check everything; one row (label, status, detail) per check; return the problems."""
        problems = 0

        def report(label: str, status: str, detail: str) -> None:
            add_row((label, status, detail))

        host = os.environ.get("DOCKER_HOST")
        address = default_base_url() or "unix:///var/run/docker.sock"
        report("client", "", f"DOCKER_HOST={host}" if host else f"docker context/socket: {address}")
        engine = self.engine()
        version: dict[str, Any] | None = None
        info: dict[str, Any] | None = None
        try:
            version = await engine.version()
            info = await engine.info()
        except MLContainerError as e:
            report("engine", "FAIL", str(e))
            problems += 1
        support: GPUSupport | None = None
        if version is not None and info is not None:
            report(
                "engine",
                "ok",
                f"Docker {version.get('Version')} (API {version.get('ApiVersion')}), "
                f"{version.get('Os')}/{version.get('Arch')}, {info.get('Images')} images",
            )
            support = GPUSupport.from_info(info)
            report(
                "gpus",
                "ok" if support.available else "none",
                support.describe()
                + (
                    ""
                    if support.available
                    else " — kernels run on the CPU; install the NVIDIA Container Toolkit for GPUs"
                ),
            )
        if ks.PROVISIONER_NAME in installed_provisioners():
            report(
                "provisioner",
                "ok",
                f"'{ks.PROVISIONER_NAME}' is registered (jupyter-mlcontainer {__version__})",
            )
        else:
            report(
                "provisioner",
                "FAIL",
                "the 'mlcontainer' entry point is missing: reinstall jupyter-mlcontainer",
            )
            problems += 1
        specs = [s for s in installed_specs() if s.is_container]
        if not specs:
            report(
                "kernels", "", "no container kernelspecs (add one: jupyter mlcontainer add IMAGE)"
            )
        for spec in specs:
            if version is None:
                report(spec.name, "?", "engine unreachable")
                continue
            status, detail = await self._check_spec(engine, spec)
            gpus = _gpu_request(spec)
            no_gpus = support is not None and not support.available
            if status == "ok" and gpus is not None and gpus.explicit and no_gpus:
                assert support is not None
                source = ks.recorded(spec.spec).get("source") or spec.image
                status, detail = (
                    "NO GPU",
                    (
                        f"asks for {gpus.describe()}, but the engine has {support.describe()}: "
                        "it cannot start here. Install the NVIDIA Container Toolkit, or run "
                        f"`jupyter mlcontainer add {source} --name {spec.name} --replace "
                        "--gpus auto`"
                    ),
                )
            report(spec.name, status, detail)
            problems += status not in ("ok",)
        if version is not None:
            await self._report_volumes(engine, specs, report)
        return problems

    async def _report_volumes(
        self, engine: Engine, specs: list[InstalledSpec], report: Callable[[str, str, str], None]
    ) -> None:
        """Users' HOME volumes and kernel runtimes, their sizes, and which are unused."""
        found = await volumes.project_volumes(engine, sizes=True)
        wanted = volumes.families(ks.recorded(s.spec).get("source") or s.image for s in specs)
        for volume in found:
            size = human_size(volume.size) if volume.size is not None else "?"
            what = (
                f"HOME of uid {volume.uid} for {volume.image}"
                if volume.kind == "home"
                else f"ipykernel runtime (jupyter-mlcontainer {volume.version})"
            )
            status = "ok" if volume.needed(wanted) else "unused"
            hint = "" if status == "ok" else "; `jupyter mlcontainer prune` removes it"
            report(volume.name, status, f"{what}, {size}{hint}")

    async def _check_spec(self, engine: Engine, spec: InstalledSpec) -> tuple[str, str]:
        image = spec.image
        if not image:
            return "FAIL", "its kernel.json has no image"
        if await engine.image_inspect(image) is not None:
            return "ok", f"{image} present"
        source = ks.recorded(spec.spec).get("source")
        if source:
            current = await engine.image_inspect(source)
            if current is not None:
                now, _ = ks.pinned_reference(source, current)
                return "MISMATCH", (
                    f"pinned {image}, but {source} on the engine is {now}: the tag moved. "
                    f"Run `jupyter mlcontainer pull {spec.name}` to get the pinned image back, or "
                    f"`jupyter mlcontainer add {source} --replace` to pin the new one"
                )
        return (
            "MISSING",
            f"{image} is not on the engine: run `jupyter mlcontainer pull {spec.name}`",
        )


def _gpu_request(spec: InstalledSpec) -> GPURequest | None:
    """The kernelspec's GPU request (None when it is not valid; the provisioner says why)."""
    try:
        return parse_gpus(ks.provisioner_config(spec.spec).get("gpus", "auto"))
    except ValueError:
        return None


class PruneApp(_Command):
    name = "jupyter-mlcontainer-prune"
    description = """Remove volumes no container kernelspec needs any more: users' HOME volumes
    (caches) of image families no installed kernelspec uses, and kernel runtimes built by
    other versions of jupyter-mlcontainer. Volumes a container uses are kept."""

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
        images = [ks.recorded(s.spec).get("source") or s.image for s in container_specs()]
        removed, in_use = await volumes.prune(
            self.engine(), images, everything=self.everything, dry_run=self.dry_run
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


class MLContainerApp(JupyterApp):
    name = "jupyter-mlcontainer"
    version = __version__
    description = """Run Jupyter kernels inside pinned ML containers.

    Turn an image into a pinned, shareable kernelspec with `add`; see them with `list`;
    fetch their images with `pull`; share one with `export`; check the setup with `doctor`;
    remove caches no kernel needs with `prune`; execute a notebook headless with `run`."""
    examples = """
    jupyter mlcontainer add pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime --gpus all
    jupyter mlcontainer list
    jupyter mlcontainer export mlc-pytorch-2.5.1-cuda12.4-cudnn9-runtime ./team-kernel
    jupyter mlcontainer doctor
    """
    subcommands = {
        "add": (AddApp, AddApp.description.splitlines()[0]),
        "list": (ListApp, ListApp.description.splitlines()[0]),
        "pull": (PullApp, PullApp.description.splitlines()[0]),
        "export": (ExportApp, ExportApp.description.splitlines()[0]),
        "prune": (PruneApp, PruneApp.description.splitlines()[0]),
        "doctor": (DoctorApp, DoctorApp.description.splitlines()[0]),
        "run": (
            "jupyter_mlcontainer.run.RunApp",
            "Execute a notebook headless in a container kernel, with a record of the environment.",
        ),
    }

    def start(self) -> None:
        if self.subapp is None:
            print(f"{self.description}\n\nSubcommands: {', '.join(self.subcommands)}")
            print("Run `jupyter mlcontainer SUBCOMMAND --help` for the options of each.")
            self.exit(1)
        else:
            self.subapp.start()


def main() -> None:
    logging.getLogger("docker").setLevel(logging.WARNING)
    MLContainerApp.launch_instance()


if __name__ == "__main__":
    main()

"""``jupyter mlcontainer extend|versions|rollback|diff``: a kernel's environment over time.

``extend`` makes a new pinned version of a kernel's image with packages added; ``versions``
lists them, ``rollback`` makes an earlier one current again, ``diff`` says how two versions'
packages (or two notebooks' recorded environments) differ. The work is in kernel/extend.py and
kernel/versions.py; these commands parse, call and print.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, List, Unicode

from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.exceptions import ConfigurationError
from ..kernel.extend import ExtendRequest, extend_kernel
from ..kernel.versions import find_kernelspec, package_diff, rollback
from .base import Command


def _backend_of(command: Command, spec: ks.InstalledSpec) -> Any:
    return command.backend(spec.docker_host or None)


class ExtendApp(Command):
    name = "jupyter-mlcontainer-extend"
    description = """Add packages to KERNEL's environment as a new pinned version.

    Builds an image FROM the kernel's pinned image with the packages added (resolved by uv to
    a lock with hashes, installed with --require-hashes), pushes it where the kernel's image
    came from, and re-pins the kernelspec to it. An identical request reuses the image it made
    before. Nothing changes when it fails. `rollback` goes back."""
    examples = """
    jupyter mlcontainer extend mlc-python-3.11 --pip tqdm==4.66.5
    jupyter mlcontainer extend mlc-pytorch-2.5 -r requirements.txt --apt graphviz
    jupyter mlcontainer extend mlc-python-3.11 --pip rich --wheelhouse ./wheels
    """

    pip = List(Unicode(), help="A requirement to add (repeat for more).").tag(config=True)
    requirements = List(Unicode(), help="A requirements file (repeat for more).").tag(config=True)
    apt = List(Unicode(), help="A Debian package to add (repeat; images with apt).").tag(
        config=True
    )
    wheelhouse = Unicode(
        "", help="Resolve and install only from the wheels in this folder (offline)."
    ).tag(config=True)
    aliases = {
        "pip": "ExtendApp.pip",
        "r": "ExtendApp.requirements",
        "requirement": "ExtendApp.requirements",
        "apt": "ExtendApp.apt",
        "wheelhouse": "ExtendApp.wheelhouse",
    }

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("usage: jupyter mlcontainer extend KERNEL --pip PACKAGE [-r FILE] [--apt P]")
        wheelhouse = str(Path(self.wheelhouse).resolve()) if self.wheelhouse else ""
        self.run(self.extend(self.extra_args[0], wheelhouse))

    def _requirements(self) -> tuple[str, ...]:
        lines = list(self.pip)
        for path in self.requirements:
            try:
                text = Path(path).read_text()
            except OSError as e:
                msg = f"Cannot read {path}: {e.strerror or e}"
                raise ConfigurationError(msg) from None
            lines += [
                line.split("#", 1)[0].strip()
                for line in text.splitlines()
                if line.split("#", 1)[0].strip()
            ]
        return tuple(lines)

    async def extend(self, name: str, wheelhouse: str) -> None:
        spec = find_kernelspec(name)
        request = ExtendRequest(self._requirements(), tuple(self.apt), wheelhouse)
        result = await extend_kernel(spec, request, _backend_of(self, spec), self.log, on_line=_err)
        if result.unchanged:
            print(f"{name}: nothing to add (version {result.version.number} has it all)")
            return
        how = "reused the image made before" if result.reused else "built"
        print(f"{name}: version {result.version.number} ({how}): {result.version.summary()}")
        print(f"  image: {result.version.image}")
        print(f"  back:  jupyter mlcontainer rollback {name}")


class VersionsApp(Command):
    name = "jupyter-mlcontainer-versions"
    description = """List KERNEL's versions: when, by whom, what each added; * is current."""

    as_json = Bool(False, help="Print JSON.").tag(config=True)
    flags = {"json": ({"VersionsApp": {"as_json": True}}, "Print JSON.")}

    def start(self) -> None:
        if len(self.extra_args) != 1:
            self.fail("usage: jupyter mlcontainer versions KERNEL")
        try:
            spec = find_kernelspec(self.extra_args[0])
        except ConfigurationError as e:
            self.fail(str(e))
        versions, current = envs.history(spec.spec), envs.current(spec.spec)
        if self.as_json:
            data = {"name": spec.name, "current": current.number}
            print(json.dumps({**data, "versions": [v.to_json() for v in versions]}, indent=2))
            return
        for version in versions:
            mark = "*" if version.number == current.number else " "
            when = version.created.replace("T", " ").rstrip("Z") or "-"
            image = ks.short_id(version.image.split("@", 1)[-1])
            print(
                f"{mark} {version.number:>3}  {when:<19}  {version.author or '-':<12}  "
                f"{image:<20}  {version.summary()}"
            )


class RollbackApp(Command):
    name = "jupyter-mlcontainer-rollback"
    description = """Make an earlier version of KERNEL current again (default: the previous).

    `jupyter mlcontainer rollback KERNEL [VERSION]`: the kernelspec is re-pinned to that
    version's image; the history stays, so `rollback KERNEL N` can come back."""

    def start(self) -> None:
        if len(self.extra_args) not in (1, 2) or not self.extra_args[-1].strip():
            self.fail("usage: jupyter mlcontainer rollback KERNEL [VERSION]")
        number = _number(self, self.extra_args[1]) if len(self.extra_args) == 2 else None
        self.run(self.rollback(self.extra_args[0], number))

    async def rollback(self, name: str, number: int | None) -> None:
        spec = find_kernelspec(name)
        version = await rollback(spec, number, _backend_of(self, spec))
        print(f"{name}: version {version.number} is current ({version.summary()})")
        print(f"  image: {version.image}")


class DiffApp(Command):
    name = "jupyter-mlcontainer-diff"
    description = """How two environments differ: KERNEL [V1] [V2], or NB1.ipynb NB2.ipynb.

    For a kernel: the packages added, removed and changed between two versions (default: the
    current one and its parent), from the images' own package lists. For two notebooks: how
    the environments they recorded differ."""

    def start(self) -> None:
        args = self.extra_args
        if args and all(a.endswith(".ipynb") for a in args):
            if len(args) != 2:
                self.fail("usage: jupyter mlcontainer diff NB1.ipynb NB2.ipynb")
            self.run(self.notebooks(Path(args[0]), Path(args[1])))
        elif 1 <= len(args) <= 3:
            numbers: list[int | None] = [_number(self, a) for a in args[1:]]
            numbers += [None] * (2 - len(numbers))
            self.run(self.kernel(args[0], numbers[0], numbers[1]))
        else:
            self.fail("usage: jupyter mlcontainer diff KERNEL [V1] [V2] | diff NB1 NB2")

    async def kernel(self, name: str, old: int | None, new: int | None) -> None:
        spec = find_kernelspec(name)
        before, after, diff = await package_diff(spec, old, new, _backend_of(self, spec))
        print(f"{name}: version {before.number} → {after.number}")
        for line in diff.lines() or ["(same packages)"]:
            print(f"  {line}")

    async def notebooks(self, first: Path, second: Path) -> None:
        records = [_recorded(path) for path in (first, second)]
        lines = environment_differences(records[0], records[1])
        print(f"{first} → {second}")
        for line in lines or ["(same recorded environment)"]:
            print(f"  {line}")


def environment_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two notebooks' recorded environments (``metadata.
    jupyter_mlcontainer.environment``): kernel, version, image, packages installed in the
    kernel."""
    lines = []
    kernels = [r.get("kernel_name") or r.get("kernel") for r in (a, b)]
    if kernels[0] != kernels[1]:
        lines.append(f"kernel: {kernels[0]} → {kernels[1]}")
    if a.get("version") != b.get("version"):
        lines.append(f"version: {a.get('version')} → {b.get('version')}")
    image_a = a.get("digest") or a.get("image_id") or a.get("image")
    image_b = b.get("digest") or b.get("image_id") or b.get("image")
    if image_a != image_b:
        lines.append(f"image: {image_a} → {image_b}")
    drift_a = envs.PackageDiff.from_json(a.get("drift")).added
    drift_b = envs.PackageDiff.from_json(b.get("drift")).added
    changes = envs.PackageDiff.between(drift_a, drift_b)
    lines += [f"installed in the kernel: {line}" for line in changes.lines()]
    return lines


def _recorded(path: Path) -> dict[str, Any]:
    """The environment a notebook recorded (ConfigurationError: none)."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        msg = f"Cannot read notebook {path}: {e}"
        raise ConfigurationError(msg) from None
    record = (nb.get("metadata") or {}).get(ks.METADATA_KEY) or {}
    # A server's save records `environment`; `jupyter mlcontainer run` records `run`.
    environment = record.get("environment") or record.get("run")
    if not environment:
        msg = (
            f"{path} records no environment: save it while attached to a container kernel, "
            "or run it with `jupyter mlcontainer run`."
        )
        raise ConfigurationError(msg)
    return dict(environment)


def _number(command: Command, text: str) -> int:
    if not text.lstrip("v").isdigit():
        command.fail(f"{text!r} is not a version number (see `jupyter mlcontainer versions`)")
    return int(text.lstrip("v"))


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

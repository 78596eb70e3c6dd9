"""``extend``: a new version of a kernel's environment, an image derived FROM its pinned one.

1. The packages asked for are resolved to a lock with hashes by uv (``uv pip compile
   --generate-hashes``), with every package of the parent image as a constraint, so that
   nothing the image has moves; what the image has already is left out of the lock.
2. An identical request (same parent image, same lock) finds the image it made before by its
   label and builds nothing.
3. Otherwise the lock's wheels are downloaded on this host (``pip download --require-hashes``;
   from ``wheelhouse`` only, offline, when one is given) and installed with
   ``--require-hashes --no-index`` in a build container of the parent image, which has no
   network unless apt packages are asked for; the container is committed with labels naming
   its parent, its lock, when and by whom.
4. When the parent was pinned by a registry digest, the new image is pushed to the same
   repository (tag ``mlc-KEY``) and pinned by its digest; else by its image id.
5. Only then is kernel.json rewritten (atomically): the new version appended and made
   current. A failure before that changes nothing, and says which package failed and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from ..core import environments as envs
from ..core import kernelspec as ks
from ..core.backend import Backend
from ..core.exceptions import ConfigurationError, MLContainerError
from ..core.labels import process_owner
from ..core.reference import repository
from .versions import packages_of, write_spec

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
#: Where the build container finds the lock and the wheels (removed before the commit).
BUILD_DIR = "/tmp/mlc-extend"


class ExtendError(MLContainerError):
    """An extend that could not be done; nothing was changed. ``packages``: the ones that
    failed, when known."""

    def __init__(self, message: str, packages: Sequence[str] = ()):
        super().__init__(message)
        self.packages = tuple(packages)


@dataclass(frozen=True)
class ExtendRequest:
    """What to add to a kernel's environment."""

    #: Requirement lines (``tqdm==4.66.5``, ``rich>=13``), from ``--pip`` and ``-r`` files.
    requirements: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    #: A folder of wheels to resolve and install from, offline ("": the package index).
    wheelhouse: str = ""
    #: Who asks (recorded in the version and the image's label); "": this process's user.
    author: str = ""

    def check(self) -> None:
        if not self.requirements and not self.apt:
            msg = "Nothing to add: give packages with --pip, -r FILE or --apt."
            raise ConfigurationError(msg)
        for line in self.requirements:
            try:
                url = Requirement(line.strip()).url
            except InvalidRequirement:
                url = "invalid"
            if url:
                msg = (
                    f"{line!r} is not a package requirement: give index packages as "
                    "'name', 'name==version' or 'name>=version' (no options, paths or URLs)."
                )
                raise ConfigurationError(msg)
        for package in self.apt:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.:=~-]*", package):
                msg = f"{package!r} is not a Debian package name."
                raise ConfigurationError(msg)
        if self.wheelhouse and not Path(self.wheelhouse).is_dir():
            msg = f"The wheelhouse {self.wheelhouse!r} is not a folder."
            raise ConfigurationError(msg)


@dataclass(frozen=True)
class ExtendResult:
    name: str
    version: envs.Version
    #: The image existed already (an identical extend): nothing was built.
    reused: bool = False
    #: The image has every package already: kernel.json was not changed.
    unchanged: bool = False
    pushed: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


async def extend_kernel(
    spec: ks.InstalledSpec,
    request: ExtendRequest,
    backend: Backend,
    log: Log,
    on_line: Callable[[str], None] | None = None,
) -> ExtendResult:
    """Make and pin a new version of ``spec``'s environment (see the module's docstring)."""
    request.check()
    if not ks.made_by_us(spec.spec):
        msg = f"{spec.name!r} was not made by `jupyter mlcontainer add`: add it first."
        raise ConfigurationError(msg)
    say = on_line or (lambda line: log.info("%s", line))
    writable(spec)  # before any work that a refused write would waste
    current = envs.current(spec.spec)
    if not request.apt and has_pins(spec.spec, current, request.requirements):
        say(f"Version {current.number} has {', '.join(request.requirements)} already.")
        return ExtendResult(spec.name, current, unchanged=True)
    say(f"Resolving {', '.join(request.requirements + request.apt)} for {spec.name} "
        f"(version {current.number}, {ks.short_id(current.image.split('@')[-1])})")  # fmt: skip
    parent = await backend.obtain_image(current.image, "missing", log)
    parent_id = str(parent["Id"])
    probe = ks.recorded(spec.spec).get("probe") or {}
    image_packages = await packages_of(backend, current.image, parent_id)
    lock = (
        await asyncio.to_thread(resolve, request, image_packages, probe)
        if request.requirements
        else ""
    )
    if not lock.strip() and not request.apt:
        say("The image has every package asked for already: nothing to add.")
        return ExtendResult(spec.name, current, unchanged=True)
    key = envs.extend_key(parent_id, lock, request.apt)
    found = await backend.find_image(envs.EXTEND_KEY, key)
    if found is not None:
        say(f"An identical extend made {ks.short_id(str(found['Id']))} before: reusing it.")
        image_id = str(found["Id"])
    else:
        image_id = await _build(backend, spec, current, request, lock, key, probe, say)
    pinned, pushed = await _pin(backend, current.image, image_id, key, say)
    version = envs.Version(
        number=0,
        image=pinned,
        image_id=image_id,
        created=_now(),
        author=request.author or process_owner(),
        added=tuple(f"{n}=={v}" for n, v in sorted(envs.lock_pins(lock).items())),
        apt=request.apt,
        parent=current.number,
        parent_image=current.image,
        lock=lock,
    )
    new = envs.with_added_version(unchanged_since(spec, current), version)
    write_spec(spec, new)
    made = envs.current(new)
    say(f"{spec.name} is now version {made.number}: {made.summary()} ({pinned})")
    return ExtendResult(spec.name, made, reused=found is not None, pushed=pushed)


def writable(spec: ks.InstalledSpec) -> None:
    """Refuse before building when ``spec``'s kernel.json could not be rewritten."""
    if not os.access(spec.path, os.W_OK) or not os.access(spec.path / "kernel.json", os.W_OK):
        msg = (
            f"{spec.path} is not writable by this user: a kernelspec installed system-wide "
            "needs its owner (or root) to extend it; nothing was changed."
        )
        raise ConfigurationError(msg)


def unchanged_since(spec: ks.InstalledSpec, current: envs.Version) -> dict[str, Any]:
    """``spec``'s kernel.json as it is now, when its current version is still ``current``
    (a rollback, extend or replace made meanwhile by someone else is never undone)."""
    try:
        now: dict[str, Any] = json.loads((spec.path / "kernel.json").read_text())
    except (OSError, ValueError) as e:
        msg = f"{spec.path / 'kernel.json'} could not be read again ({e}); nothing was changed."
        raise ExtendError(msg) from None
    if envs.current(now).to_json() != current.to_json():
        msg = (
            f"{spec.name} changed while it was being extended (its current version is no "
            f"longer {current.number}); nothing was changed. Extend it again: an identical "
            "request reuses the image just made."
        )
        raise ExtendError(msg)
    return now


def has_pins(spec_json: dict[str, Any], version: envs.Version, wanted: Sequence[str]) -> bool:
    """Whether ``version`` or one of its ancestors added exactly the pinned ``wanted``
    (``name==version`` each): then there is nothing to do, and no engine to ask."""
    added: dict[str, str] = {}
    seen: set[int] = set()
    step: envs.Version | None = version
    while step is not None and step.number not in seen:
        seen.add(step.number)
        added = {**envs.lock_pins("\n".join(step.added)), **added}
        step = envs.version_of(spec_json, step.parent) if step.parent else None
    pins = envs.lock_pins("\n".join(line.strip() for line in wanted))
    return len(pins) == len(wanted) and all(added.get(n) == v for n, v in pins.items())


# --- resolving ------------------------------------------------------------------------


def _target(probe: dict[str, Any]) -> list[str]:
    """uv's options for the image's interpreter and platform."""
    version = ".".join(str(probe.get("python_version") or "3").split(".")[:2])
    machine = str(probe.get("machine") or "x86_64")
    libc = str(probe.get("libc") or "glibc")
    platform = f"{machine}-unknown-linux-musl" if "musl" in libc else f"{machine}-manylinux_2_17"
    return ["--python-version", version, "--python-platform", platform]


def _index_options(wheelhouse: str) -> list[str]:
    return ["--no-index", "--find-links", wheelhouse] if wheelhouse else []


def resolve(request: ExtendRequest, image: dict[str, str], probe: dict[str, Any]) -> str:
    """The lock of what ``request`` adds to an image that has ``image``: uv's pins with
    hashes, less what the image has already."""
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory() as tmp:
        wanted = Path(tmp, "requirements.in")
        wanted.write_text("\n".join(request.requirements) + "\n")
        constraints = Path(tmp, "image.txt")
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(image.items())))
        command = [
            find_uv_bin(),
            "pip",
            "compile",
            str(wanted),
            "--constraint",
            str(constraints),
            "--generate-hashes",
            "--no-header",
            "--no-annotate",
            "--system-certs",
            *_target(probe),
            *_index_options(request.wheelhouse),
        ]  # fmt: skip (the lock on stdout)
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise _resolve_failed(request.requirements, done.stderr)
    have = {envs.normalize(n): v for n, v in image.items()}
    present = [n for n, v in envs.lock_pins(done.stdout).items() if have.get(n) == v]
    return envs.lock_without(done.stdout, present)


def _resolve_failed(requirements: Sequence[str], stderr: str) -> ExtendError:
    text = stderr.strip()
    named = [
        line
        for line in requirements
        if (envs.requirement_name(line) or "\0") in envs.normalize(text.lower())
    ]
    lines = "\n".join(text.splitlines()[-12:])
    which = ", ".join(named) if named else ", ".join(requirements)
    msg = (
        f"Could not resolve {which} against the kernel's image (nothing was changed):\n{lines}\n"
        "Check the names and versions, and that the index or wheelhouse has them for the "
        "image's Python."
    )
    return ExtendError(msg, named)


# --- building -------------------------------------------------------------------------


async def _build(
    backend: Backend,
    spec: ks.InstalledSpec,
    current: envs.Version,
    request: ExtendRequest,
    lock: str,
    key: str,
    probe: dict[str, Any],
    say: Callable[[str], None],
) -> str:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlc-extend-") as tmp:
        archive = await asyncio.to_thread(_archive, lock, request, probe, Path(tmp))
        image_id = await _derive(backend, current, request, lock, key, probe, archive, say)
    say(f"Built {ks.short_id(image_id)} in {time.monotonic() - started:.1f} s")
    return image_id


async def _derive(
    backend: Backend,
    current: envs.Version,
    request: ExtendRequest,
    lock: str,
    key: str,
    probe: dict[str, Any],
    archive: Path,
    say: Callable[[str], None],
) -> str:
    python = str(probe.get("python") or "python3")
    labels = {
        envs.PARENT: current.image,
        envs.PARENT_ID: str(current.image_id),
        envs.LOCK: lock,
        envs.APT: " ".join(request.apt),
        envs.EXTENDED_AT: _now(),
        envs.EXTENDED_BY: request.author or process_owner(),
        envs.EXTEND_KEY: key,
    }
    say(f"Building FROM {current.image}")
    image_id, output = await backend.derive_image(
        current.image,
        build_script(python, bool(lock.strip()), request.apt),
        archive=(os.path.dirname(BUILD_DIR), archive),
        labels=labels,
        network=bool(request.apt),
        on_line=say,
    )
    if image_id is None:
        raise _build_failed(lock, request.apt, output)
    return image_id


def build_script(python: str, pip: bool, apt: Sequence[str]) -> str:
    """What runs in the build container: apt packages, then the lock's wheels (offline)."""
    steps = ["set -e"]
    if apt:
        steps += [
            "command -v apt-get >/dev/null || { echo 'This image has no apt-get: --apt needs "
            "a Debian or Ubuntu image.'; exit 3; }",
            "apt-get update -qq",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            + " ".join(apt),
            "rm -rf /var/lib/apt/lists/*",
        ]
    if pip:
        steps.append(
            f"{python} -m pip install --no-input --disable-pip-version-check --no-index "
            f"--no-deps --require-hashes --find-links {BUILD_DIR}/wheels "
            f"-r {BUILD_DIR}/lock.txt"
        )
    steps.append(f"rm -rf {BUILD_DIR}")
    return "\n".join(steps)


def _archive(lock: str, request: ExtendRequest, probe: dict[str, Any], tmp: Path) -> Path:
    """A tar file (in ``tmp``) of ``mlc-extend/``: the lock and its wheels, downloaded here
    with their hashes checked."""
    wheels = tmp / "wheels"
    wheels.mkdir()
    (tmp / "lock.txt").write_text(lock)
    if lock.strip():
        version = ".".join(str(probe.get("python_version") or "3").split(".")[:2])
        machine = str(probe.get("machine") or "x86_64")
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--require-hashes", "--only-binary", ":all:", "--python-version",
            version, "--platform", f"manylinux2014_{machine}", "--platform", "any",
            "-r", str(tmp / "lock.txt"), "--dest", str(wheels),
            *(["--no-index", "--find-links", request.wheelhouse] if request.wheelhouse else []),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise _download_failed(lock, done.stderr + done.stdout)
    folder = os.path.basename(BUILD_DIR)
    archive = tmp / "extend.tar"
    with tarfile.open(archive, mode="w") as tar:
        tar.add(tmp, folder, recursive=False, filter=_readable)
        tar.add(tmp / "lock.txt", f"{folder}/lock.txt", filter=_readable)
        tar.add(wheels, f"{folder}/wheels", filter=_readable)  # with the folder itself
    return archive


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by root and readable by all in the build container, whoever made them here."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _failing(lock: str, apt: Sequence[str], output: str) -> list[str]:
    """The packages a failure's output names (of the lock's and the apt ones)."""
    text = envs.normalize(output.lower())
    names = [*envs.lock_pins(lock), *apt]
    return [name for name in names if envs.normalize(name) in text]


def _download_failed(lock: str, output: str) -> ExtendError:
    named = _failing(lock, (), output)
    lines = "\n".join(output.strip().splitlines()[-8:])
    msg = (
        f"Could not download {', '.join(named) or 'the locked packages'} for the image "
        f"(nothing was changed):\n{lines}"
    )
    return ExtendError(msg, named)


def _build_failed(lock: str, apt: Sequence[str], output: str) -> ExtendError:
    if "No module named pip" in output:
        msg = (
            "The image's Python has no pip, which extend installs with (nothing was changed): "
            "use an image whose Python has pip (python -m ensurepip in its Dockerfile)."
        )
        return ExtendError(msg)
    named = _failing(lock, apt, output)
    lines = "\n".join(output.strip().splitlines()[-12:])
    msg = (
        f"Installing {', '.join(named) or 'the packages'} into the image failed "
        f"(nothing was changed):\n{lines}"
    )
    return ExtendError(msg, named)


# --- pinning --------------------------------------------------------------------------


async def _pin(
    backend: Backend, parent: str, image_id: str, key: str, say: Callable[[str], None]
) -> tuple[str, bool]:
    """The reference the new version is pinned by, and whether it was pushed: the parent's
    registry repository (by digest) when it came from one, else the local image id."""
    if "@sha256:" not in parent:
        return image_id, False
    repo = repository(parent)
    say(f"Pushing to {repo}")
    try:
        digest = await backend.push_image(image_id, repo, f"mlc-{key[:12]}")
    except MLContainerError as e:  # e.g. an upstream repository nobody here may push to
        say(
            f"{str(e).strip()}\nThe new version is pinned by its image id "
            f"{ks.short_id(image_id)} and runs on this engine only. Versions "
            "are shared through the repository the kernel came from: to share them, push the "
            "kernel's image to a registry you can write to, `jupyter mlcontainer add` it from "
            "there and extend that kernel."
        )
        return image_id, False
    return f"{repo}@{digest}", True


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

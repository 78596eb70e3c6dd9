"""A kernel runtime for images without ipykernel, provided from outside the image.

Design:

- The runtime is ipykernel and its dependencies, installed on the *server's* machine with
  pip for the image's Python (version, implementation, CPU, libc — from the image probe),
  binary wheels only, optionally offline from a wheelhouse. It is cached on disk there.
- It reaches the engine as a Docker volume, filled through the engine's archive API (so a
  remote engine works too) by a helper container of the image itself, which also compiles
  it with the image's Python and proves that ``import ipykernel`` works. A second, empty
  "seal" volume marks it complete; later kernels find the seal and reuse the volume.
- Kernels mount the volume read-only and start through a bootstrap that *appends* it to
  ``sys.path``: the image's own packages (numpy, torch, …) always win over the runtime's.
- Nothing in the image is changed and nothing is rebuilt.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from docker.types import Mount

from .._version import __version__
from ..agent import program
from ..agent.protocol import RUNTIME_DIR
from ..core import labels as lbl
from ..core.exceptions import KernelStartError
from ..core.probe import ImageProbe
from ..core.runtime import DEFAULT_PACKAGES
from . import containers, volumes

if TYPE_CHECKING:
    from .engine import Engine

_SEAL_SUFFIX = "-sealed"
#: The unprivileged user who fills and compiles runtimes (``nobody``).
BUILDER_UID = 65534
logger = logging.getLogger(__name__)
_locks: dict[str, asyncio.Lock] = {}


@dataclass(frozen=True)
class RuntimeTarget:
    """The Python a runtime is built for."""

    python_minor: str  # "3.11"
    implementation: str  # "cpython"
    machine: str  # "x86_64", "aarch64"
    libc: str | None  # "glibc-2.36", "musl-1.2.4" or None

    @classmethod
    def from_probe(cls, probe: ImageProbe) -> RuntimeTarget:
        return cls(probe.python_minor, probe.implementation, probe.machine, probe.libc)

    @property
    def python_tag(self) -> str:
        return "cp" + self.python_minor.replace(".", "")

    @property
    def wheel_machine(self) -> str:
        """The CPU as wheel tags name it (``amd64`` → ``x86_64``, ``arm64`` → ``aarch64``)."""
        return {"amd64": "x86_64", "arm64": "aarch64"}.get(self.machine, self.machine)

    def platforms(self) -> list[str]:
        """pip ``--platform`` tags the image's libc can load (pip matches them exactly)."""
        machine = self.wheel_machine
        family, _, version = (self.libc or "glibc-2.17").partition("-")
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()] or [2, 17]
        if family == "musl":
            minor = parts[1] if len(parts) > 1 else 1
            return [f"musllinux_1_{m}_{machine}" for m in range(minor, 0, -1)]
        newest = parts[1] if len(parts) > 1 else 17
        tags = [f"manylinux_2_{m}_{machine}" for m in range(newest, 16, -1)]
        return [*tags, f"manylinux2014_{machine}"]


#: The wheel platforms each lock was resolved for (scripts/lock.py): glibc ≥ 2.28 or musl ≥ 1.2.
LOCK_FAMILIES = {
    "glibc": ("manylinux", (2, 28), ("manylinux_2_28", "manylinux_2_17", "manylinux2014")),
    "musl": ("musllinux", (1, 2), ("musllinux_1_2", "musllinux_1_1")),
}


def locks_dir() -> Path | None:
    """images/runtime-locks: in the wheel next to this module, in a checkout under images/."""
    for candidate in (
        Path(__file__).with_name("runtime-locks"),
        Path(__file__).resolve().parents[2] / "images" / "runtime-locks",
    ):
        if candidate.is_dir():
            return candidate
    return None


def _lock_family(target: RuntimeTarget) -> tuple[str, tuple[str, ...]] | None:
    """The lock family (``manylinux``) and its platform prefixes when the libc is new enough."""
    kind, _, version = (target.libc or "").partition("-")
    if kind not in LOCK_FAMILIES:
        return None
    family, oldest, platforms = LOCK_FAMILIES[kind]
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return (family, platforms) if parts >= oldest else None


def hash_pinned(target: RuntimeTarget, packages: Sequence[str]) -> Path | None:
    """The lock to install from with ``--require-hashes``, when one covers this runtime: the
    default packages on a CPython, CPU and libc that scripts/lock.py resolved."""
    found = _lock_family(target)
    folder = locks_dir()
    if found is None or folder is None or tuple(packages) != DEFAULT_PACKAGES:
        return None
    lock = folder / f"{target.python_tag}-{target.wheel_machine}-{found[0]}.lock"
    return lock if target.implementation == "cpython" and lock.is_file() else None


def _lock_platforms(target: RuntimeTarget) -> list[str]:
    found = _lock_family(target)
    assert found is not None
    return [f"{prefix}_{target.wheel_machine}" for prefix in found[1]]


def pip_command(
    target: RuntimeTarget, packages: Sequence[str], into: str, wheelhouse: str | None
) -> list[str]:
    """The pip call that installs the runtime for ``target`` into directory ``into``: every
    wheel checked against its pinned hash where the lock covers the target, else pinned by
    version."""
    lock = hash_pinned(target, packages)
    implementation = "cp" if target.implementation == "cpython" else target.implementation[:2]
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-compile", "--no-warn-script-location", "--only-binary=:all:",
        "--target", into,
        "--python-version", target.python_minor,
        "--implementation", implementation,
        "--abi", target.python_tag, "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for platform in _lock_platforms(target) if lock else target.platforms():
        cmd += ["--platform", platform]
    if wheelhouse:
        cmd += ["--no-index", "--find-links", wheelhouse]
    if lock:
        return [*cmd, "--require-hashes", "--no-deps", "-r", str(lock)]
    return [*cmd, *packages]


def runtime_key(target: RuntimeTarget, packages: Sequence[str]) -> str:
    """What a runtime is made of: target, packages, and the lock's pins when it uses them."""
    lock = hash_pinned(target, packages)
    pins = [lock.read_text()] if lock else []
    text = "|".join([target.python_tag, target.machine, target.libc or "", *sorted(packages)])
    return hashlib.sha256("|".join([text, *pins]).encode()).hexdigest()[:12]


def volume_name(target: RuntimeTarget, packages: Sequence[str]) -> str:
    return (
        f"mlcontainer-runtime-{target.python_tag}-{target.machine}-{runtime_key(target, packages)}"
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jupyter-mlcontainer" / "runtimes"


async def _build_on_host(
    target: RuntimeTarget,
    packages: Sequence[str],
    wheelhouse: str | None,
    cache_dir: Path,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> Path:
    """pip-install the runtime into the host cache (atomically); return its directory."""
    final = cache_dir / runtime_key(target, packages)
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (microseconds, local disk)
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir))
    cmd = pip_command(target, packages, str(staging), wheelhouse)
    log.info(
        "Building a kernel runtime (%s) for Python %s on %s: %s",
        ", ".join(packages),
        target.python_minor,
        target.machine,
        "offline from " + wheelhouse if wheelhouse else "from the package index",
    )
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        msg = (
            f"Could not build the kernel runtime ({', '.join(packages)}) for Python "
            f"{target.python_minor}: pip said:\n{out.decode(errors='replace')[-2000:]}\n"
            "Without network, point MLContainerProvisioner.wheelhouse at a folder of wheels "
            "(`pip download ipykernel --only-binary=:all: --python-version "
            f"{target.python_minor} -d WHEELHOUSE`), or install ipykernel in the image."
        )
        raise KernelStartError(msg)
    try:
        staging.rename(final)  # noqa: ASYNC240  (microseconds, local disk)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _tar_directory(root: Path) -> bytes:
    """The runtime as a tar, owned by the unprivileged builder (who compiles it in place)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(".")  # the volume's own folder: the builder's too
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o755, BUILDER_UID, BUILDER_UID
        tar.addfile(top)
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = BUILDER_UID
            info.uname = info.gname = ""
            info.mode = 0o755 if path.is_dir() else (info.mode & 0o755) | 0o644
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


async def ensure_runtime(
    engine: Engine,
    image: str,
    probe: ImageProbe,
    *,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    wheelhouse: str | None = None,
    cache_dir: Path | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> tuple[str, str]:
    """(volume, sealed digest) of a runtime for ``probe``'s Python, built when missing.

    Built by an unprivileged user (uid :data:`BUILDER_UID`) in a container without network
    or capabilities; its files' digest is recorded on the seal, and every kernel checks it
    before it imports anything from the runtime (see agent/bootstrap.py).
    """
    log = log or logger
    target = RuntimeTarget.from_probe(probe)
    volume = volume_name(target, packages)
    lock = _locks.setdefault(volume, asyncio.Lock())
    async with lock:
        sealed = await volumes.labels_of(engine, volume + _SEAL_SUFFIX)
        if sealed is not None and sealed.get(lbl.RUNTIME_DIGEST):
            return volume, sealed[lbl.RUNTIME_DIGEST]
        if sealed is not None:  # sealed by a version that recorded no digest: rebuild
            await volumes.remove(engine, volume + _SEAL_SUFFIX)
        built = await _build_on_host(
            target, packages, wheelhouse, cache_dir or default_cache_dir(), log
        )
        archive = await asyncio.get_running_loop().run_in_executor(None, _tar_directory, built)
        runtime_labels = {lbl.MANAGED: "true", lbl.RUNTIME: volume, lbl.VERSION: __version__}
        await volumes.create(engine, volume, runtime_labels)
        check = (
            "import compileall, sys\n"
            f"compileall.compile_dir({RUNTIME_DIR!r}, quiet=1, workers=0)\n"
            f"sys.path.append({RUNTIME_DIR!r})\n"
            "import ipykernel.kernelapp\n"
            f"{program('digest')}\n"
            f"print('runtime ok', ipykernel.__version__, tree_digest({RUNTIME_DIR!r}))\n"
        )
        code, output = await containers.run(
            engine,
            image,
            [probe.python, "-c", check],
            labels=runtime_labels,
            mounts=[Mount(target=RUNTIME_DIR, source=volume, type="volume")],
            user=f"{BUILDER_UID}:{BUILDER_UID}",
            archive=(RUNTIME_DIR, archive),
        )
        last = output.strip().splitlines()[-1] if output.strip() else ""
        if code != 0 or not last.startswith("runtime ok"):
            msg = (
                f"The kernel runtime ({', '.join(packages)}) does not work with the Python "
                f"of image {image!r} ({probe.python}, {probe.python_version}):\n"
                f"{output.strip()[-2000:]}\n"
                "Install ipykernel in the image instead."
            )
            raise KernelStartError(msg)
        digest = last.split()[-1]
        await volumes.create(
            engine,
            volume + _SEAL_SUFFIX,
            {**runtime_labels, lbl.RUNTIME_SEAL: "true", lbl.RUNTIME_DIGEST: digest},
        )
        log.info("Kernel runtime %s is ready (%s)", volume, " ".join(last.split()[:3]))
        return volume, digest


async def discard_runtime(engine: Engine, volume: str) -> None:
    """Forget a runtime whose files no longer match its seal: the next start rebuilds it."""
    await volumes.remove(engine, volume + _SEAL_SUFFIX)
    await volumes.remove(engine, volume)  # kept (a 409) while another kernel still mounts it

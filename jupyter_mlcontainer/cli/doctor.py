"""``jupyter mlcontainer doctor``: the engine, GPU support, the nodes of the swarms that
kernelspecs run on, the provisioner, every container kernel's image and the volumes, each with
what to do when it is wrong."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from traitlets import TraitError

from .._version import __version__
from ..core import backend as backends
from ..core import kernelspec as ks
from ..core.backend import Backend, NodeInfo, families
from ..core.diagnostics import human_size
from ..core.exceptions import MLContainerError
from ..core.gpus import GPURequest, GPUSupport
from ..core.kernelspec import InstalledSpec, installed_provisioners, installed_specs
from ..kernel.grant import gpu_table
from ..kernel.policy import MLContainerPolicy
from ..kernel.settings import requested_gpus
from .base import Command


class DoctorApp(Command):
    name = "jupyter-mlcontainer-doctor"
    description = (
        "Check the engine, GPU support, the provisioner and every container kernel's image."
    )

    def start(self) -> None:
        ok = self.run(self.doctor())
        if not ok:
            self.exit(1)

    async def _gpu_holders(self, backend: Backend, report: Callable[[str, str, str], None]) -> None:
        """Each GPU of the host with who holds it (the GPU ledger)."""
        images = [s.image for s in installed_specs() if s.is_container and s.image]
        table = await gpu_table(
            backend, MLContainerPolicy.for_kernel(self), images[0] if images else ""
        )
        each = "" if table["sharing"] == 1 else f", up to {table['sharing']} kernels each"
        for gpu in table["gpus"]:
            holders = collections.Counter(h["user"] for h in gpu["holders"])
            held = ", ".join(f"{user} ×{n}" for user, n in sorted(holders.items()))
            report(
                f"gpu {gpu['index']}",
                "ok" if gpu["free"] else "busy",
                f"{gpu['uuid']} ({gpu['name']}, {human_size(gpu['memory_total'])}): "
                + (f"held by {held}" if held else "free")
                + each,
            )

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

    async def _networks(self, backend: Backend, report: Callable[[str, str, str], None]) -> int:
        """Networks of this project made twice (concurrent first starts on an older version):
        the unused copies are removed; one still in use is a problem to name."""
        problems = 0
        for name, in_use in await backend.settle_networks(repair=True):
            if in_use:
                report(
                    f"network {name}",
                    "FAIL",
                    f"made {len(in_use) + 1} times; copies still used by containers: "
                    f"{', '.join(i[:12] for i in in_use)}. Stop those kernels, then run "
                    "`jupyter mlcontainer doctor` again",
                )
                problems += 1
            else:
                report(
                    f"network {name}",
                    "fixed",
                    "it had been made twice; the extra copies are removed",
                )
        return problems

    async def _diagnose(self, add_row: Callable[[tuple[str, str, str]], None]) -> int:
        """Check everything; one row (label, status, detail) per check; return the problems."""
        problems = 0

        def report(label: str, status: str, detail: str) -> None:
            add_row((label, status, detail))

        backend = self.backend()
        version: Mapping[str, Any] | None = None
        info: Mapping[str, Any] | None = None
        try:
            report("client", "", backend.describe_client())
            version = await backend.version()
            info = await backend.info()
            kind = await backend.kind()
        except MLContainerError as e:
            report("engine", "FAIL", str(e))
            problems += 1
        support: GPUSupport | None = None
        if version is not None and info is not None:
            report(
                "engine",
                "ok",
                f"{kind.describe()}{', remote' if backend.remote else ''} (API "
                f"{version.get('ApiVersion')}), {version.get('Os')}/{version.get('Arch')}, "
                f"{info.get('Images')} images",
            )
            problems += await self._networks(backend, report)
            images = [s.image for s in installed_specs() if s.is_container and s.image]
            # Tried with a GPU request (an image of a kernelspec), not read from `docker info`.
            support = await backend.gpu_support(try_image=images[0] if images else "")
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
            await self._gpu_holders(backend, report)
        problems += await self._swarms(report)
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
            status, detail = await self._check_kernel(backend, spec, support)
            report(spec.name, status, detail)
            problems += status not in ("ok",)
        if version is not None:
            await self._report_volumes(backend, specs, report)
        return problems

    async def _swarms(self, report: Callable[[str, str, str], None]) -> int:
        """The nodes of each swarm a kernelspec runs on (``backend: swarm``): their state,
        free memory and GPUs; a problem when no node can take a kernel."""
        problems = 0
        addresses = sorted(
            {s.docker_host for s in installed_specs() if s.is_container and s.backend == "swarm"}
        )
        for address in addresses:
            label = f"swarm {address or '(default)'}"
            try:
                nodes = await backends.connect(address or None, "swarm").nodes()
            except MLContainerError as e:
                report(label, "FAIL", str(e))
                problems += 1
                continue
            rows = node_rows(nodes)
            usable = sum(n.schedulable for n in nodes)
            report(
                label,
                "ok" if usable else "FAIL",
                f"{len(nodes)} node(s), {usable} taking kernels"
                + ("" if usable else ": no node is ready and active, so no kernel can start"),
            )
            problems += not usable
            for row in rows:
                report(*row)
        return problems

    async def _check_kernel(
        self, backend: Backend, spec: InstalledSpec, support: GPUSupport | None
    ) -> tuple[str, str]:
        """One kernelspec's status and detail: its image, then whether its GPUs can start."""
        status, detail = await self._check_spec(backend, spec)
        gpus = _gpu_request(spec)
        if status != "ok" or gpus is None or not gpus.explicit:
            return status, detail
        if support is None or support.available:
            return status, detail
        return (
            "NO GPU",
            f"asks for {gpus.describe()}, but the engine has {support.describe()}: it cannot "
            f"start here. Install the NVIDIA Container Toolkit, or run `jupyter mlcontainer add "
            f"{spec.source} --name {spec.name} --replace --gpus auto`",
        )

    async def _report_volumes(
        self, backend: Backend, specs: list[InstalledSpec], report: Callable[[str, str, str], None]
    ) -> None:
        """Users' HOME volumes and kernel runtimes, their sizes, and which are unused."""
        found = await backend.project_volumes(sizes=True)
        wanted = families(spec.source for spec in specs)
        for volume in found:
            size = human_size(volume.size) if volume.size is not None else "?"
            what = (
                f"HOME of uid {volume.uid} for {volume.image}"
                if volume.kind == "home"
                else f"ipykernel runtime (jupyter-mlcontainer {volume.version})"
            )
            status = "ok" if volume.needed(wanted) else "unused"
            hint = "" if status == "ok" else "; `jupyter mlcontainer prune` removes it"
            packages = await backend.home_packages(volume) if volume.kind == "home" else []
            if packages:
                status = "packages"
                hint += (
                    f"; it carries pip --user packages ({', '.join(packages)}) that kernels do "
                    "not import: add them to the kernel's environment with `jupyter mlcontainer "
                    f"extend KERNEL --pip {packages[0]}`"
                )
            report(volume.name, status, f"{what}, {size}{hint}")

    async def _check_spec(self, backend: Backend, spec: InstalledSpec) -> tuple[str, str]:
        image = spec.image
        if not image:
            return "FAIL", "its kernel.json has no image"
        if await backend.image(image) is not None:
            return "ok", f"{image} present"
        source = ks.recorded(spec.spec).get("source")
        if source:
            current = await backend.image(source)
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
        return requested_gpus(ks.provisioner_config(spec.spec))
    except TraitError:
        return None


def node_rows(nodes: Iterable[NodeInfo]) -> list[tuple[str, str, str]]:
    """One doctor row per node: "node sw-gpu", "ok" (else its state: "down", "drain"...), and
    "worker, 6.94 GiB free of 8 GiB, GPUs: 2 (GPU-aaaa, GPU-bbbb), 0 free, held by our
    kernels: GPU-bbbb, 1 held by other tasks" (free memory as the scheduler counts it)."""
    rows = []
    for node in nodes:
        status = (
            "ok"
            if node.schedulable
            else (node.state if node.state != "ready" else node.availability)
        )
        detail = (
            f"{node.role or 'node'}, {human_size(node.memory_free)} free of "
            f"{human_size(node.memory_total)}"
        )
        if node.gpus:
            named = [g for g in node.gpus if g]
            free = len(node.gpus) - len(node.gpus_held)
            detail += f", GPUs: {len(node.gpus)}"
            if named:
                detail += f" ({', '.join(named)})"
            detail += f", {max(free, 0)} free"
            if node.gpus_ours:
                detail += f", held by our kernels: {', '.join(node.gpus_ours)}"
            others = len(node.gpus_held) - len(node.gpus_ours)
            if others > 0:
                detail += f", {others} held by other tasks"
        if not node.schedulable:
            detail += f" — {node.state}/{node.availability}: the scheduler places no kernel there"
        rows.append((f"node {node.name}", status, detail))
    return rows

"""Starting a kernel in a new container, and what a start recovers from on its own.

One attempt (:func:`_start_container`) creates the container from the pure plan
(core/plan.py ``build_plan``), copies its files in, starts it and waits for the kernel's
heartbeat. Around it, each recovery is one layer that knows its own cause:

- the kernels' network was removed meanwhile (a prune): it is made again;
- the image has no ipykernel (``inject_runtime: auto``): a sealed runtime is injected;
- the injected runtime changed after it was sealed: it is rebuilt;
- the user's HOME volume is not writable by them: it is given to them when it is ours;
- a chosen host port or address was taken meanwhile (concurrent starts, or another process
  on the host's network): fresh ones;
- a GPU the ledger chose was taken by another server's kernel created a moment earlier: the
  ledger chooses again.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..agent.protocol import HOME_NOT_WRITABLE_EXIT, PORT_TAKEN_EXIT, RUNTIME_MISMATCH_EXIT
from ..core import kernelspec
from ..core.backend import random_address
from ..core.exceptions import (
    AddressTaken,
    CommandNotFound,
    EngineError,
    ImageNotFoundError,
    KernelStartError,
    NetworkGoneError,
    PortTaken,
    Unschedulable,
)
from ..core.plan import KernelLaunch, build_plan
from ..core.probe import ImageProbe
from . import launch as launches
from . import reach
from .exits import discard_container, wait_until_up
from .grant import GPUsTakenMeanwhile, confirm_gpus, resolve_gpus
from .quota import check_quota

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner

#: Fresh host ports to try when the backend finds a chosen one taken (concurrent starts).
PORT_RETRIES = 3
#: Images found to lack ipykernel in this process, with their probes (skips a failing start).
_RUNTIME_PROBES: dict[str, ImageProbe] = {}


async def start_fresh(p: MLContainerProvisioner, launch: KernelLaunch) -> None:
    """A new container; when the kernels' network was removed meanwhile (a prune while the
    server ran), it is made again and the start tried once more."""
    p.run.has_started = True
    try:
        await _start_in_network(p, launch)
    except NetworkGoneError:
        p.log.warning(
            "Kernel %s: the kernels' network %s was removed meanwhile; making it again",
            p.kernel_id,
            p.bridge_network,
        )
        await launches.join_kernel_network(p)
        p.container.pinned_ip = ""  # the new network's subnet may differ
        network_id = p.run.network.id if p.run.network is not None else ""
        await _start_in_network(p, dataclasses.replace(launch, bridge_network=network_id))


def _subnet(p: MLContainerProvisioner) -> str:
    return (p.run.network.subnet if p.run.network is not None else None) or ""


async def _start_in_network(p: MLContainerProvisioner, launch: KernelLaunch) -> None:
    """A new container; an image without ipykernel is started again with an injected runtime
    (``inject_runtime: auto``)."""
    if not launch.publish_ports and _subnet(p):
        # An address of its own, kept across restarts: Jupyter's open channels (the
        # notebook's websocket) stay connected to it.
        p.container.pinned_ip = p.container.pinned_ip or random_address(_subnet(p))
        launch = dataclasses.replace(launch, address=p.container.pinned_ip)
    probe = await probe_for_runtime(p)
    try:
        await _start_with_untouched_runtime(p, launch, probe)
    except KernelStartError:
        missing = p.last_exit is not None and p.last_exit.missing_ipykernel
        if probe is not None or p.inject_runtime != "auto" or not missing:
            raise
        p.log.info(
            "Kernel %s: image %s has no ipykernel; starting it with an injected runtime",
            p.kernel_id,
            p.image,
        )
        probe = _RUNTIME_PROBES[p.image] = await p.container_backend.probe_image(p.image)
        await _start_with_untouched_runtime(p, launch, probe)


async def _start_with_untouched_runtime(
    p: MLContainerProvisioner, launch: KernelLaunch, probe: ImageProbe | None
) -> None:
    """Start; a kernel that finds its injected runtime changed since it was sealed (poisoned,
    or damaged) refuses it: rebuild the runtime once and start again."""
    try:
        await _start_with_writable_home(p, launch, probe)
    except KernelStartError:
        exit_ = p.last_exit
        if probe is None or exit_ is None or exit_.exit_code != RUNTIME_MISMATCH_EXIT:
            raise
        volume = p.container_backend.runtime_volume(probe, p.runtime_packages)
        p.log.warning(
            "Kernel %s: the runtime %s changed after it was sealed; rebuilding it",
            p.kernel_id,
            volume,
        )
        await p.container_backend.discard_runtime(volume)
        await _start_with_writable_home(p, launch, probe)


async def _start_with_writable_home(
    p: MLContainerProvisioner, launch: KernelLaunch, probe: ImageProbe | None
) -> None:
    """Start; a kernel whose HOME volume its user may not write (a volume of an older
    version, or one made by hand as root) stops at once: the volume is given to the user
    when it is this project's HOME volume of that user, then the kernel starts again."""
    try:
        await _start_with_free_ports(p, launch, probe)
    except KernelStartError:
        exit_ = p.last_exit
        if not launch.home_volume or exit_ is None or exit_.exit_code != HOME_NOT_WRITABLE_EXIT:
            raise
        p.log.warning(
            "Kernel %s: uid %s may not write its HOME volume %s; giving it to that user",
            p.kernel_id,
            launch.uid,
            launch.home_volume,
        )
        await p.container_backend.give_home_to_user(
            launch.home_volume,
            launch.uid if launch.uid is not None else 0,
            launch.gid if launch.gid is not None else 0,
            launch.image,
            probe.python if probe is not None else launch.python,  # as _start_container
        )
        await _start_with_free_ports(p, launch, probe)


async def _start_with_free_ports(
    p: MLContainerProvisioner, launch: KernelLaunch, probe: ImageProbe | None
) -> None:
    """Start; when a chosen host port was taken meanwhile (ports are picked free, then
    published by the backend or bound by the kernel on the host's network a moment later, so
    concurrent starts and other processes can race), pick fresh ports (or a fresh address)
    and try again."""
    for attempt in range(PORT_RETRIES + 1):
        try:
            await _start_container(p, launch, probe)
            return
        except (PortTaken, KernelStartError) as e:
            exit_ = p.last_exit  # this attempt's container's, never an earlier one's
            taken_inside = (
                exit_ is not None
                and exit_.exit_code == PORT_TAKEN_EXIT
                and exit_.name == p.container.name
            )
            if isinstance(e, KernelStartError) and not taken_inside:
                raise
            if attempt == PORT_RETRIES:
                raise e if isinstance(e, KernelStartError) else KernelStartError(str(e)) from None
            p.log.info("Kernel %s: a host port was taken meanwhile", p.kernel_id)
            p.container.lease_port = None
            launch = dataclasses.replace(
                launch, connection_info=reach.fresh_ports(p), lease=reach.lease_address(p)
            )
        except AddressTaken as e:
            if attempt == PORT_RETRIES or not launch.address:
                raise KernelStartError(str(e)) from None
            p.log.warning(
                "Kernel %s: its address %s is taken; it gets another (open notebooks "
                "reconnect to it when reloaded)",
                p.kernel_id,
                launch.address,
            )
            p.container.pinned_ip = random_address(_subnet(p))
            launch = dataclasses.replace(launch, address=p.container.pinned_ip)
        except GPUsTakenMeanwhile:
            if attempt == PORT_RETRIES:
                msg = "Other kernels took every GPU this kernel was given, again and again."
                raise KernelStartError(msg) from None
            p.log.info("Kernel %s: its GPUs were taken meanwhile; choosing again", p.kernel_id)
            launch = dataclasses.replace(launch, gpus=await resolve_gpus(p))


async def _start_container(
    p: MLContainerProvisioner, launch: KernelLaunch, probe: ImageProbe | None
) -> None:
    """One attempt: create, copy the connection file in, start, wait for the heartbeat."""
    backend = p.container_backend
    p.run.launches += 1
    p.run.exit_code = None
    runtime_volume, runtime_digest = None, ""
    if probe is not None:
        runtime_volume, runtime_digest = await backend.ensure_runtime(
            p.image, probe, p.runtime_packages, p.wheelhouse, p.log
        )
    plan = build_plan(
        dataclasses.replace(
            launch,
            container_name=f"mlc-{p.kernel_id}-{p.run.launches}",
            runtime_volume=runtime_volume,
            runtime_digest=runtime_digest,
            python=probe.python if probe is not None else launch.python,
        )
    )
    for note in plan.notes:
        p.log.warning("Kernel %s: %s", p.kernel_id, note)
    p.container.name = plan.name
    try:
        p.container.id = container_id = await backend.create(plan)
    except ImageNotFoundError:
        # Creating first saves an inspect on every start; the image is rarely missing.
        await backend.obtain_image(p.image, p.pull_policy, p.log)
        p.container.id = container_id = await backend.create(plan)
    p.log.info(
        "Kernel %s: starting container %s (%s, image %s, %s, user %s%s)",
        p.kernel_id,
        plan.name,
        container_id[:12],
        p.image,
        launch.gpus.describe(),
        plan.create_args["user"],
        f", injected runtime {runtime_volume}" if runtime_volume else "",
    )
    try:
        await confirm_gpus(p, container_id, launch.gpus)
        await check_quota(p, launch, container_id)
        if plan.archive:
            await backend.put_files(container_id, plan.archive_path, plan.archive)
        try:
            await backend.start(container_id)
        except (NetworkGoneError, PortTaken, AddressTaken):
            raise  # the layers above recover from these
        except Unschedulable:
            raise  # says what to free or ask for less of
        except CommandNotFound as e:
            msg = (
                f"The image {p.image!r} cannot run the kernel command: {e}. The image needs "
                f"Python at '{p.python}' (set the provisioner's `python` to its interpreter) "
                "and ipykernel."
            )
            raise KernelStartError(msg) from None
        except EngineError as e:
            raise KernelStartError(str(e)) from None
        p.run.running = True
        reach.reach_started(p, launch)
        await wait_until_up(p)
        reach.renew_lease(p, launch)
        p.container.launch = launch
    except BaseException:
        await discard_container(p)
        raise


async def probe_for_runtime(p: MLContainerProvisioner) -> ImageProbe | None:
    """The image's probe when the kernel needs an injected runtime, else None."""
    if p.inject_runtime == "never":
        return None
    recorded = kernelspec.recorded(p.kernel_spec.to_dict() if p.kernel_spec else {})
    probe = ImageProbe.from_dict(recorded["probe"]) if recorded.get("probe") else None
    if p.inject_runtime == "always":
        if probe is None:
            probe = _RUNTIME_PROBES.get(p.image) or await p.container_backend.probe_image(p.image)
        return probe
    if probe is not None:
        return probe if probe.ipykernel is None else None
    return _RUNTIME_PROBES.get(p.image)

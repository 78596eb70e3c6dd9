"""What one start's container is made from: the kernelspec's settings, checked against the
admin policy and resolved against the backend (GPUs, memory, network, HOME volume), as one
:class:`~jupyter_mlcontainer.core.plan.KernelLaunch`, before anything exists on the backend.

A setting's walk: ``kernel.json`` → the provisioner's trait (kernel/settings.py) → here
(the policy may refuse or default it, kernel/policy.py) → ``KernelLaunch`` → ``build_plan``
(core/plan.py) → the backend's ``create``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..core import gpus as gpu
from ..core import kernelspec, labels
from ..core.plan import KernelLaunch, home_volume_name, parse_mount, select_env
from . import reach, recorded
from .grant import FACTS_MAX_AGE, resolve_gpus
from .identity import kernel_user
from .quota import check_quota, kernel_user_name

if TYPE_CHECKING:
    from .provisioner import MLContainerProvisioner


async def prepare_launch(p: MLContainerProvisioner, kwargs: dict[str, Any]) -> KernelLaunch:
    """Everything that decides this start's container, resolved against the backend and
    checked against the policy before anything exists there."""
    p.cwd = working_dir(p, kwargs.get("cwd"))
    #: The notebook this kernel serves, as the server sees it (for the save hook).
    p.session_path = (kwargs.get("env") or {}).get("JPY_SESSION_NAME")
    as_recorded = recorded.chosen(p.session_path, getattr(p.parent, "kernel_name", "") or "")
    if as_recorded and as_recorded != p.image:  # "Run as recorded" (server/environments.py)
        p.log.info("Kernel %s runs %s as recorded in %s", p.kernel_id, as_recorded, p.session_path)
        p.image = as_recorded
    if p.network != "none" and not p.connection_info.get("curve_secretkey"):
        # ipykernel warns of eavesdropping on every such start: say why it is safe here.
        p.log.info(
            "Kernel %s: its traffic is not encrypted (local_encryption=%s, or its kernelspec "
            "does not declare CurveZMQ); only this machine reaches it: ports on 127.0.0.1 or "
            "the kernels' network, where containers cannot reach each other",
            p.kernel_id,
            p.local_encryption,
        )
    uid, gid = kernel_user(p.cwd, p.uid, p.gid)
    p.policy.check_user(uid, gid)  # before anything exists on the backend
    backend = p.container_backend
    host_memory = 0
    if p.mem_limit is None:  # the policy's default applies: it may be a share of this
        host_memory = await backend.memory_total(max_age=FACTS_MAX_AGE)
    mem_limit = p.policy.memory_limit(p.mem_limit, host_memory)  # may refuse
    p.run.kernel_host = reach.remote_kernel_host(p, server_root(p))
    backend.exits()  # subscribe to exits before there is anything to miss
    if p.pull_policy == "always":
        await backend.pull(p.image, p.log)
    await join_kernel_network(p)
    publish = await reach.publishes_ports(p)
    request = await resolve_gpus(p)
    if p.run.ipc_dir is not None and os.getuid() == 0:
        os.chown(p.run.ipc_dir, uid, gid)
    spec_json = p.kernel_spec.to_dict() if p.kernel_spec else {}
    source = str(kernelspec.recorded(spec_json).get("source") or "")
    home_volume, home_volume_is_new = await ensure_home_volume(p, uid, source or p.image)
    settings = p.launch_settings()
    if p.run.network is not None:  # by id: a name may be ambiguous (see docker/networks.py)
        settings["bridge_network"] = p.run.network.id
    if not p.path_map:  # a server in a container: its own mounts say where things are
        settings["path_map"] = await backend.own_path_map()
    launch = KernelLaunch(
        **settings,
        kernel_id=str(p.kernel_id),
        kernel_name=getattr(p.parent, "kernel_name", "") or "",
        argv=[*p.kernel_spec.argv, *p.run.extra_arguments],
        connection_info=p.connection_info,
        cwd=p.cwd if p.mount_cwd else "",
        env=select_env(
            kwargs.get("env") or {},
            p.env_allowlist,
            (p.kernel_spec.env or {}).keys() if p.kernel_spec else (),
            p.env,
        ),
        uid=uid,
        gid=gid,
        gpus=request,
        gpu_support=p.container.gpu_support or gpu.GPUSupport(),
        mounts=[parse_mount(m) for m in p.mounts],
        ipc_dir=p.run.ipc_dir,
        mem_limit=mem_limit,
        reserve_memory=p.mem_limit,  # the kernelspec's own, not the policy's default
        source_image=source,
        home_volume=home_volume,
        home_volume_is_new=home_volume_is_new,
        lease=reach.lease_address(p),
        publish_ports=publish,
        publish_ip=p.publish_address if p.run.kernel_host else "127.0.0.1",
        mount_root=server_root(p),
        pooled=p.fills_a_pool,
        supervise=p.restart_in_container,
        userns=await user_namespace(p),
        user=kernel_user_name(p),
    )
    await check_quota(p, launch)  # before anything exists on the backend
    return launch


async def join_kernel_network(p: MLContainerProvisioner) -> None:
    """Bridge mode: the kernels' network (made on first use), by id, with its fixed subnet."""
    p.run.network = None
    if p.network == "bridge" and p.bridge_network:
        p.run.network = await p.container_backend.kernel_network(p.bridge_network)


async def ensure_home_volume(
    p: MLContainerProvisioner, uid: int, image: str
) -> tuple[str | None, bool]:
    """The user's HOME volume for this image family, and whether it was made now."""
    if not p.persistent_home:
        return None, False
    name = home_volume_name(uid, image)
    made = await p.container_backend.ensure_volume(
        name,
        {
            labels.MANAGED: "true",
            labels.PURPOSE: labels.PURPOSE_HOME,
            labels.HOME_UID: str(uid),
            labels.HOME_IMAGE: image,
        },
    )
    return name, made


async def user_namespace(p: MLContainerProvisioner) -> str:
    """keep-id on rootless Podman: the kernel's uid is the user's own on the host too
    (without it, uid N inside is the user's N-th subordinate uid outside)."""
    kind = await p.container_backend.kind()
    return "keep-id" if kind.podman and kind.rootless else ""


def working_dir(p: MLContainerProvisioner, cwd: str | None) -> str:
    """The kernel's directory: Jupyter's ``cwd``, else the server's root_dir, else ours."""
    if not cwd:
        multikernel_manager = getattr(p.parent, "parent", None)
        cwd = getattr(multikernel_manager, "root_dir", None) or os.getcwd()
    return os.path.abspath(cwd)


def server_root(p: MLContainerProvisioner) -> str:
    """The directory a server's kernels mount (its root_dir), or '' outside a server."""
    if not p.in_a_server:
        return ""
    return str(getattr(getattr(p.parent, "parent", None), "root_dir", "") or "")

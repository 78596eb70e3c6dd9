"""Translate a kernel's settings into Docker create arguments.

Pure: no engine, no clock, no files but the agent's own source (read once).
:func:`build_plan` takes everything it needs in a :class:`KernelLaunch` and returns a
:class:`ContainerPlan` that the provisioner hands to the engine façade unchanged. Keeping this
apart from orchestration lets remote engines, pools and other runtimes reuse it, and lets it
be unit-tested exhaustively.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import posixpath
import re
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker.types import Mount

from ..agent import program
from ..agent.protocol import (
    CONTAINER_CONNECTION_FILE,
    CONTAINER_DIR,
    CONTAINER_HOME,
    ENV_ANNOUNCE,
    ENV_CONNECTION,
    ENV_HOME_CHECK,
    ENV_LEASE,
    ENV_LEASE_TIMEOUT,
    ENV_RUNTIME,
    ENV_RUNTIME_DIGEST,
    ENV_SUPERVISE,
    RUNTIME_DIR,
)
from . import labels
from .gpus import GPURequest, GPUSupport, device_requests
from .reference import repository, split_registry
from .sizes import parse_bytes

_LAUNCHERS = {"ipykernel_launcher", "ipykernel"}

NETWORK_MODES = ("bridge", "host", "none")
MAX_VOLUME_NAME = 128
#: Where Docker-compatible engines listen on their host: mounting one gives a kernel root.
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")
#: The network bridge-mode kernels join: made with inter-container traffic off.
KERNEL_NETWORK = "mlc-kernels"
#: Where user-site packages go in a kernel's container (its own layer, never HOME).
USER_BASE = "/tmp/mlc-user-site"
#: Variables every kernel container gets: the pinned image, its source reference, the GPUs
#: granted, the kernelspec's name.
ENV_IMAGE = "JUPYTER_MLCONTAINER_IMAGE"
ENV_SOURCE_IMAGE = "JUPYTER_MLCONTAINER_SOURCE_IMAGE"
ENV_GPUS = "JUPYTER_MLCONTAINER_GPUS"
ENV_KERNEL = "JUPYTER_MLCONTAINER_KERNEL"
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
_PYTHON_NAMES = {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}


@dataclass(frozen=True)
class KernelLaunch:
    """Everything that decides how one kernel's container looks."""

    kernel_id: str
    kernel_name: str
    image: str
    argv: Sequence[str]
    connection_info: Mapping[str, Any]
    cwd: str
    env: Mapping[str, str]
    network: str = "bridge"
    bridge_network: str = KERNEL_NETWORK
    uid: int | None = None
    gid: int | None = None
    #: Whom the kernel is for (labels the container for the GPU ledger and quotas).
    user: str = ""
    gpus: GPURequest = field(default_factory=lambda: GPURequest("none"))
    gpu_support: GPUSupport = field(default_factory=GPUSupport)
    python: str = "python3"
    host_python: str = sys.executable
    shm_size: str | int | None = None
    mem_limit: str | int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    mounts: Sequence[Mount] = ()
    ipc_dir: str | None = None
    path_map: Mapping[str, str] = field(default_factory=dict)
    container_name: str | None = None
    runtime_volume: str | None = None
    #: The sealed digest of that runtime (checked by the kernel before it imports from it).
    runtime_digest: str = ""
    use_image_entrypoint: bool = False
    #: The reference the image was pinned from (``add`` records it), for the kernel to show.
    source_image: str = ""
    #: A named volume mounted as the kernel's HOME (caches survive restarts), or None.
    home_volume: str | None = None
    #: That volume was made for this start: it is empty, and takes its owner from the HOME
    #: directory copied in before the start.
    home_volume_is_new: bool = False
    #: Where the kernel's lease watchdog listens inside the container ("tcp:0.0.0.0:PORT",
    #: "unix:PATH"), and the seconds without a renewal after which it stops the kernel.
    lease: str | None = None
    lease_timeout: float = 0
    #: Run the kernel under the bootstrap's supervisor, which restarts it in place (needs the
    #: lease, whose connection carries the commands); the modules it imports first.
    supervise: bool = False
    preload: Sequence[str] = ()
    #: Bridge mode: publish the kernel's ports on the engine host's ``publish_ip`` (else the
    #: server connects to the container's own address).
    publish_ports: bool = True
    #: Where they are published: 127.0.0.1, but for a remote engine (its kernels' traffic
    #: is CurveZMQ-encrypted) an interface this server reaches.
    publish_ip: str = "127.0.0.1"
    #: The directory to mount when ``cwd`` lies inside it (the server's root): the kernel
    #: sees the notebook's neighbours as a local kernel would, and one pooled container fits
    #: every notebook under it. "" mounts ``cwd`` itself.
    mount_root: str = ""
    #: Started ready for a warm pool, to be claimed by a later start.
    pooled: bool = False
    #: Bridge mode: the container's address on ``bridge_network`` ("" lets the engine pick).
    address: str = ""
    #: The user namespace ("keep-id" on rootless Podman: the user's uid is the same inside,
    #: so files the kernel writes are the user's), or "" for the engine's default.
    userns: str = ""
    #: Placement constraints for a scheduled backend (Swarm: ``node.hostname==gpu-3``).
    placement: Sequence[str] = ()
    #: Memory a scheduled backend reserves for the kernel on its node: the kernelspec's own
    #: ``mem_limit``. The policy's default limit is a cap, not a claim: reserved, it would
    #: give each kernel most of a node.
    reserve_memory: str | int | None = None


@dataclass(frozen=True)
class ContainerPlan:
    """Arguments for ``APIClient.create_container`` / ``create_host_config`` plus files."""

    name: str
    create_args: dict[str, Any]
    host_config: dict[str, Any]
    #: Files to copy in before the start (b"": none, the bootstrap writes them).
    archive: bytes
    archive_path: str = "/tmp"
    notes: tuple[str, ...] = ()
    #: HostConfig fields the SDK's ``create_host_config`` refuses (``UsernsMode: keep-id``),
    #: set on its result as they are.
    raw_host_config: dict[str, Any] = field(default_factory=dict)
    #: Where a scheduled backend may place the container (Swarm placement constraints); a
    #: Docker engine refuses any.
    placement: tuple[str, ...] = ()
    #: Bytes a scheduled backend reserves on the node (None: no reservation); a Docker
    #: engine has nothing to reserve.
    reserve_memory: int | None = None


def container_command(
    argv: Sequence[str],
    python: str,
    host_python: str = sys.executable,
    injected: bool = False,
    watched: bool = False,
) -> list[str]:
    """The kernelspec's argv as the container runs it.

    ``{connection_file}`` becomes the container's copy, and an argv[0] naming Python
    (``python``, ``python3``, or the host interpreter jupyter_client substituted) becomes
    the image's Python. ``python -m MODULE …`` starts through the agent's bootstrap when the
    runtime is ``injected`` (which needs that form) or the kernel is ``watched`` by its lease.
    """
    if not argv:
        msg = "The kernelspec's argv is empty: it must name the kernel command."
        raise ValueError(msg)
    cmd = [str(a).replace("{connection_file}", CONTAINER_CONNECTION_FILE) for a in argv]
    if cmd[0] in _PYTHON_NAMES or cmd[0] == host_python:
        cmd[0] = python
    runs_a_module = len(cmd) >= 3 and cmd[0] == python and cmd[1] == "-m"
    if injected and not (runs_a_module and cmd[2] in _LAUNCHERS):
        msg = (
            "This image has no ipykernel, and the injected one can only start kernelspecs "
            f"whose argv is `python -m ipykernel_launcher …` (this one: {list(argv)})."
        )
        raise ValueError(msg)
    if runs_a_module and (injected or watched):
        cmd = [python, "-c", program("bootstrap"), *cmd[2:]]
    return cmd


def container_connection_info(info: Mapping[str, Any], network: str) -> dict[str, Any]:
    """The container's copy of the connection info.

    On the bridge network the kernel listens on every interface of its own network
    namespace (reached at the container's address, or through ports Docker publishes on the
    host's 127.0.0.1 only); with ``host``
    and ``none`` it keeps the host's address (127.0.0.1 / the ipc path).
    """
    conn = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
    if network == "bridge":
        conn["ip"] = "0.0.0.0"  # noqa: S104  the container's own namespace, published on 127.0.0.1
    return conn


def kernel_ports(info: Mapping[str, Any]) -> list[int]:
    return [int(info[name]) for name in PORT_NAMES]


def mapped_prefix(path: str, path_map: Mapping[str, str]) -> str | None:
    """The longest prefix of ``path_map`` that ``path`` lies under, or None."""
    for prefix in sorted(path_map, key=len, reverse=True):
        norm = prefix.rstrip("/")
        if path == norm or path.startswith(norm + "/"):
            return prefix
    return None


def translate_path(path: str, path_map: Mapping[str, str]) -> str:
    """Map a path as the server sees it to the engine host's path (longest prefix wins)."""
    prefix = mapped_prefix(path, path_map)
    if prefix is None:
        return path
    rest = path[len(prefix.rstrip("/")) :].lstrip("/")
    target = path_map[prefix].rstrip("/") or "/"
    return posixpath.join(target, rest) if rest else target


def parse_mount(value: str | Mapping[str, Any]) -> Mount:
    """A mount from ``"SRC:DST[:ro|rw]"`` or a dict (source, target, read_only, type).

    A source that is not an absolute path names a Docker volume.
    """
    if isinstance(value, Mapping):
        try:
            source, target = str(value["source"]), str(value["target"])
        except KeyError as e:
            msg = f"Mount {dict(value)!r} needs 'source' and 'target'."
            raise ValueError(msg) from e
        kind = str(value.get("type") or ("bind" if source.startswith("/") else "volume"))
        read_only = bool(value.get("read_only", False))
    else:
        parts = str(value).split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            msg = f"Mount {value!r} must look like 'SOURCE:TARGET' or 'SOURCE:TARGET:ro'."
            raise ValueError(msg)
        if len(parts) == 3 and parts[2] not in ("ro", "rw"):
            msg = f"Mount {value!r}: the third field must be 'ro' or 'rw'."
            raise ValueError(msg)
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith("/") else "volume"
        read_only = len(parts) == 3 and parts[2] == "ro"
    if not target.startswith("/"):
        msg = f"Mount target {target!r} must be an absolute path inside the container."
        raise ValueError(msg)
    return Mount(target=target, source=source, type=kind, read_only=read_only)


def select_env(
    env: Mapping[str, str],
    allowlist: Iterable[str],
    kernelspec_keys: Iterable[str],
    extra: Mapping[str, str],
) -> dict[str, str]:
    """The kernel's environment: allowlisted and kernelspec variables, then ``extra``.

    The server's own environment (tokens, credentials, paths of the host) never passes
    unless a name is allowlisted or set in the kernelspec.
    """
    wanted = set(allowlist) | set(kernelspec_keys)
    selected = {k: str(v) for k, v in env.items() if k in wanted}
    selected.update({k: str(v) for k, v in extra.items()})
    return selected


def _tar_dir(tar: tarfile.TarFile, name: str, uid: int, gid: int, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode, info.uid, info.gid = mode, uid, gid
    tar.addfile(info)


def container_files(connection: Mapping[str, Any], uid: int, gid: int) -> bytes:
    """A tar of the container's own directory: its connection file (0600) and HOME."""
    buf = io.BytesIO()
    base = posixpath.basename(CONTAINER_DIR)
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _tar_dir(tar, base, uid, gid, 0o700)
        _tar_dir(tar, f"{base}/home", uid, gid, 0o700)
        payload = json.dumps(dict(connection), indent=1).encode()
        info = tarfile.TarInfo(f"{base}/{posixpath.basename(CONTAINER_CONNECTION_FILE)}")
        info.size, info.mode, info.uid, info.gid = len(payload), 0o600, uid, gid
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def mounted_dir(cwd: str, root: str) -> str:
    """What a kernel in ``cwd`` mounts: ``root`` when ``cwd`` lies inside it (never ``/``),
    else ``cwd``."""
    root = posixpath.normpath(root) if root else ""
    if root and root != "/" and (cwd == root or cwd.startswith(root.rstrip("/") + "/")):
        return root
    return cwd


#: Variables that differ between starts of one kernelspec in one server: a pooled kernel gets
#: the claiming start's values when it is claimed.
PER_START_ENV = frozenset({"JPY_SESSION_NAME"})


def pool_key(launch: KernelLaunch) -> str:
    """What a pooled kernel must share with the start that claims it: everything that decides
    its container (image, resources, GPUs, mounts, user, network, command, environment),
    but not what each start has of its own (ids, ports and key, directory inside the mounted
    root, the notebook's name)."""
    shared = dataclasses.replace(
        launch,
        kernel_id="",
        connection_info={},
        cwd=mounted_dir(launch.cwd, launch.mount_root),
        env={k: v for k, v in sorted(launch.env.items()) if k not in PER_START_ENV},
        container_name=None,
        lease=None,
        home_volume_is_new=False,
        pooled=False,
        address="",
    )
    return hashlib.sha256(repr(shared).encode()).hexdigest()[:16]


def home_volume_name(uid: int, image: str) -> str:
    """The HOME volume of user ``uid`` for an image family: the repository without registry,
    tag or digest (``mlc-home-1000-pytorch-pytorch``), so that a new tag or digest of the
    same image keeps its caches. Image ids (``sha256:…``) have no family: their own volume."""
    if image.startswith("sha256:"):
        family = image[len("sha256:") :][:16]
    else:
        family = split_registry(repository(image))[1]
    name = re.sub(r"[^a-zA-Z0-9_.-]+", "-", f"mlc-home-{uid}-{family}").strip("-.")
    return name[:MAX_VOLUME_NAME]


def _nano_cpus(cpus: float) -> int:
    return round(cpus * 1e9)


def build_plan(launch: KernelLaunch) -> ContainerPlan:
    """Docker create arguments for one kernel container."""
    if launch.network not in NETWORK_MODES:
        msg = f"Unknown network {launch.network!r}: use one of {', '.join(NETWORK_MODES)}."
        raise ValueError(msg)
    notes: list[str] = []
    uid = 0 if launch.uid is None else launch.uid
    gid = uid if launch.gid is None else launch.gid
    watched = bool(launch.lease and launch.lease_timeout > 0)
    gpu_requests = device_requests(launch.gpus, launch.gpu_support)
    env = kernel_environment(launch, watched, gpus_granted=bool(gpu_requests))
    mounts, working_dir = kernel_mounts(launch, notes)
    host_config = _host_config(launch, mounts, gpu_requests)
    create_args: dict[str, Any] = {
        "image": launch.image,
        "command": container_command(
            launch.argv,
            launch.python,
            launch.host_python,
            injected=bool(launch.runtime_volume),
            watched=watched,
        ),
        "name": launch.container_name or f"mlc-{launch.kernel_id}",
        "labels": {
            **labels.kernel_labels(
                launch.kernel_id, launch.kernel_name, launch.network, pooled=launch.pooled
            ),
            **({labels.GPUS: ",".join(launch.gpus.ids)} if launch.gpus.mode == "ids" else {}),
            **({labels.USER: launch.user} if launch.user else {}),
            **(
                {labels.MEMORY: str(int(parse_bytes(launch.mem_limit)))} if launch.mem_limit else {}
            ),
        },
        "environment": env,
        "working_dir": working_dir,
        "user": f"{uid}:{gid}",
        "detach": True,
    }
    if not launch.use_image_entrypoint:
        # Entrypoint scripts print banners, switch users or start services; the kernel
        # command is run as is (init=True already gives it a proper PID 1).
        create_args["entrypoint"] = []
    if watched and create_args["command"][1:2] != ["-c"]:
        notes.append(
            "the kernel's command is not `python -m …`, so it cannot watch its lease: if its "
            "Jupyter process is killed, it runs until a later one reaps it"
        )
    _network_args(launch, watched, create_args, host_config)
    connection = container_connection_info(launch.connection_info, launch.network)
    bootstrapped = create_args["command"][1:3] == ["-c", program("bootstrap")]
    archive = b""
    if bootstrapped and not (launch.home_volume and launch.home_volume_is_new):
        env[ENV_CONNECTION] = json.dumps(connection)
    else:
        archive = container_files(connection, uid, gid)
    return ContainerPlan(
        name=create_args["name"],
        create_args=create_args,
        host_config=host_config,
        archive=archive,
        archive_path=posixpath.dirname(CONTAINER_DIR),
        notes=tuple(notes),
        raw_host_config={"UsernsMode": launch.userns} if launch.userns else {},
        placement=tuple(c.strip() for c in launch.placement),
        reserve_memory=(
            int(parse_bytes(launch.reserve_memory)) if launch.reserve_memory is not None else None
        ),
    )


def kernel_environment(launch: KernelLaunch, watched: bool, gpus_granted: bool) -> dict[str, str]:
    """The kernel container's environment: the kernelspec's and the server's allowed
    variables, what the kernel runs in, and what the agent's bootstrap reads."""
    env = dict(launch.env)
    env.setdefault("HOME", CONTAINER_HOME)
    # The kernel's parent is the container's init, PID 1. Saying so keeps ipykernel's parent
    # poller off and silences its "Ctrl-C will not work" banner (SIGINT does reach it).
    env["JPY_PARENT_PID"] = "1"
    # `pip install --user` (and `%pip install` where the image's environment is not the
    # kernel user's to write) go into the kernel's own container, never into the persistent
    # HOME (~/.local), which every later kernel of the image would import with no notebook
    # recording it: in the container, a restart in place keeps them, a new kernel does not,
    # and the drift check finds and records them (`jupyter mlcontainer extend` makes them a
    # version). A kernelspec's env may set its own PYTHONUSERBASE.
    env.setdefault("PYTHONUSERBASE", USER_BASE)
    # What the kernel runs in, for notebooks to show or record (no secrets: all in kernel.json).
    env[ENV_IMAGE] = launch.image
    env[ENV_SOURCE_IMAGE] = launch.source_image or launch.image
    env[ENV_GPUS] = launch.gpus.describe()
    env[ENV_KERNEL] = launch.kernel_name
    if launch.runtime_volume:
        env[ENV_RUNTIME] = RUNTIME_DIR
        if launch.runtime_digest:
            env[ENV_RUNTIME_DIGEST] = launch.runtime_digest
    if launch.home_volume:
        env[ENV_HOME_CHECK] = "1"  # the bootstrap checks that the user may write it
    if launch.network == "bridge" and not launch.publish_ports:
        env[ENV_ANNOUNCE] = "1"
    if watched and launch.supervise:
        env[ENV_SUPERVISE] = ",".join(launch.preload) or "-"
    if watched:
        env[ENV_LEASE] = str(launch.lease)
        env[ENV_LEASE_TIMEOUT] = f"{launch.lease_timeout:g}"
    if not gpus_granted:
        # Images that bake in NVIDIA_VISIBLE_DEVICES=all would otherwise get every GPU
        # from a runtime configured to honour the variable.
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    return env


def kernel_mounts(launch: KernelLaunch, notes: list[str]) -> tuple[list[Mount], str]:
    """The kernel's mounts (its folder, ipc sockets, HOME, runtime, the kernelspec's own) and
    its working directory; what is dropped is said in ``notes``."""
    mounts: list[Mount] = []
    working_dir = launch.cwd
    if launch.cwd in ("", "/"):  # "": nothing mounted on purpose (mount_cwd false)
        if launch.cwd == "/":
            notes.append(
                "the kernel's directory is '/', which is not mounted; using the container's HOME"
            )
        working_dir = CONTAINER_HOME
    else:
        mounted = mounted_dir(launch.cwd, launch.mount_root)
        source = translate_path(mounted, launch.path_map)
        mounts.append(Mount(target=mounted, source=source, type="bind"))
    if launch.ipc_dir:
        source = translate_path(launch.ipc_dir, launch.path_map)
        mounts.append(Mount(target=launch.ipc_dir, source=source, type="bind"))
    if launch.home_volume:
        mounts.append(Mount(target=CONTAINER_HOME, source=launch.home_volume, type="volume"))
    if launch.runtime_volume:
        mounts.append(
            Mount(target=RUNTIME_DIR, source=launch.runtime_volume, type="volume", read_only=True)
        )
    taken = {m["Target"] for m in mounts}
    for mount in launch.mounts:
        if mount["Target"] in taken:
            notes.append(f"mount {mount['Target']} given twice; the first one is used")
            continue
        taken.add(mount["Target"])
        mounts.append(mount)
    return mounts, working_dir


def _host_config(
    launch: KernelLaunch, mounts: list[Mount], gpu_requests: list[Any]
) -> dict[str, Any]:
    host_config: dict[str, Any] = {
        "init": True,  # the kernel must not be PID 1: SIGINT reaches it through the init
        # A kernel needs no capability: files are written as the user, ports are high.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mounts": mounts,
        "network_mode": (
            launch.bridge_network or "bridge" if launch.network == "bridge" else launch.network
        ),
        "device_requests": gpu_requests or None,
    }
    if launch.shm_size is not None:
        host_config["shm_size"] = launch.shm_size
    if launch.mem_limit is not None:
        host_config["mem_limit"] = launch.mem_limit
    if launch.cpus is not None:
        host_config["nano_cpus"] = _nano_cpus(launch.cpus)
    if launch.pids_limit is not None:
        host_config["pids_limit"] = launch.pids_limit
    return host_config


def _network_args(
    launch: KernelLaunch, watched: bool, create_args: dict[str, Any], host_config: dict[str, Any]
) -> None:
    """Bridge mode: the ports published (and the lease's), or the container's own address."""
    if launch.network != "bridge":
        return
    if launch.publish_ports:
        ports = kernel_ports(launch.connection_info)
        if watched and str(launch.lease).startswith("tcp:"):
            ports.append(int(str(launch.lease).rsplit(":", 1)[1]))
        create_args["ports"] = ports
        host_config["port_bindings"] = {p: (launch.publish_ip, p) for p in ports}
    if launch.address:
        create_args["networking_config"] = {
            "EndpointsConfig": {
                launch.bridge_network or "bridge": {"IPAMConfig": {"IPv4Address": launch.address}}
            }
        }

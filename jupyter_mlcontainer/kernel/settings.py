"""Every setting of a container kernel, as traitlets traits.

Set them for all container kernels in Jupyter config (``c.MLContainerProvisioner.gpus =
"none"``) or per kernel in kernel.json's ``metadata.kernel_provisioner.config``; the kernelspec
wins. Kept apart from the provisioner, which only orchestrates.

Each setting is declared here once. Those that ``jupyter mlcontainer add`` (and the REST API's
new kernelspec, and the lab extension's dialog) offer are tagged ``add``; their CLI options,
REST fields, JSON schema and TypeScript types are derived from the trait (type, default, help):
see :mod:`jupyter_mlcontainer.kernel.schema` and ``docs/settings.md``. Tags:

- ``add=True``: offered by ``add`` (``--mem-limit`` on the command line, ``mem_limit`` in the
  REST request); ``add="argument"``: the command's argument, and required in the request;
- ``rest=False``: the command line only;
- ``image_label``: an image label that gives ``add`` its value when none is given (then the
  trait's default); such a setting is always recorded in the kernelspec, the others only when
  given;
- ``json_schema``: the JSON schema of the value in a request, for a trait whose type does not
  say it (``Any``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from traitlets import (
    Any as AnyTrait,
)
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    HasTraits,
    Int,
    List,
    TraitError,
    Unicode,
    validate,
)

from ..core import gpus as gpu
from ..core.kernelspec import LABEL_GPUS
from ..core.plan import KERNEL_NETWORK, NETWORK_MODES, KernelLaunch, parse_mount
from ..core.runtime import DEFAULT_PACKAGES
from ..core.sizes import parse_bytes

#: Settings the provisioner turns into something else before the plan is built: ``env`` is
#: merged with the allowed server variables, ``uid``/``gid`` default from the notebook's owner,
#: ``gpus`` is resolved against the engine, ``mounts`` are parsed, ``mem_limit`` defaults from
#: the admin policy.
RESOLVED_AT_START = frozenset({"env", "uid", "gid", "gpus", "mounts", "mem_limit"})
DEFAULT_PIDS_LIMIT = 4096
#: A Swarm placement constraint: ``node.labels.gpu==true``, ``node.role != manager``.
PLACEMENT = re.compile(r"\s*[A-Za-z][\w.-]*\s*(==|!=)\s*\S.*")
DEFAULT_ENV_ALLOWLIST = ["LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "JPY_SESSION_NAME"]


class ContainerKernelSettings(HasTraits):
    """The settings of one container kernel; the provisioner
    (:class:`~jupyter_mlcontainer.kernel.provisioner.MLContainerProvisioner`) has them all."""

    image = Unicode(
        "",
        help="""The kernel's container image, e.g. ``pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime``
        or an image pinned by digest (``repo@sha256:…``). Required.""",
    ).tag(config=True, add="argument")

    pull_policy = CaselessStrEnum(
        ["missing", "always", "never"],
        default_value="missing",
        help="""When to pull the image: ``missing`` (only when the engine lacks it),
        ``always`` (before every start; fails when the registry cannot be reached), or
        ``never`` (a missing image is an error). Pulls log their progress.""",
    ).tag(config=True)

    gpus = AnyTrait(
        "auto",
        help="""GPUs for the kernel: ``auto`` (every GPU when the engine can provide them,
        otherwise CPU with a warning), ``all``, a count (``2``), a list of device indexes or
        UUIDs (``["0", "GPU-…"]``, or as text: ``0,1``) or ``none``. Explicit requests fail
        clearly on an engine without GPU support.""",
    ).tag(
        config=True,
        add=True,
        image_label=LABEL_GPUS,
        # What a request may give: text, or a count as a number (taken as its text).
        json_schema={"type": ["string", "integer"]},
    )

    shm_size = Unicode(
        "2g",
        allow_none=True,
        help="""Size of ``/dev/shm``. Docker's 64 MB default kills PyTorch DataLoader workers
        ("bus error"); memory in it counts against ``mem_limit``. None keeps Docker's default.""",
    ).tag(config=True, add=True)

    mem_limit = Unicode(
        None,
        allow_none=True,
        help="""Memory limit of the container (``"8g"``, ``"512m"``). A kernel that exceeds it
        is killed by the out-of-memory killer and the reason is reported. None: no limit.""",
    ).tag(config=True, add=True)

    cpus = Float(
        None,
        allow_none=True,
        help="""CPU share of the container, in CPUs (``1.5``). None: no limit.""",
    ).tag(config=True)

    pids_limit = Int(
        DEFAULT_PIDS_LIMIT,
        allow_none=True,
        help="""Maximum number of processes and threads in the container, so that a fork bomb
        or a runaway DataLoader cannot exhaust the host's. None: no limit.""",
    ).tag(config=True)

    network = CaselessStrEnum(
        list(NETWORK_MODES),
        default_value="bridge",
        help="""How the server reaches the kernel: ``bridge`` (the container's own network,
        kernel ports published on 127.0.0.1 only), ``host`` (the engine host's network; the
        kernel binds 127.0.0.1; local engines on Linux only) or ``none`` (no network at all;
        ZMQ over ipc sockets in a directory shared with the container; local engines only).""",
    ).tag(config=True)

    bridge_network = Unicode(
        KERNEL_NETWORK,
        help="""With ``network="bridge"``: the Docker network kernel containers join. The
        default is created on first use with inter-container traffic off
        (``enable_icc=false``): no kernel, and no container on another network (Docker's
        default bridge included), can reach a kernel's ports; only the host can, through the
        ports published on 127.0.0.1. "" uses Docker's default bridge instead.""",
    ).tag(config=True)

    bridge_access = CaselessStrEnum(
        ["auto", "address", "ports"],
        default_value="auto",
        help="""With ``network="bridge"``: how the server reaches the kernel's ports.
        ``address``: at the container's own address on ``bridge_network``, nothing published
        (no port proxy in the way: faster starts and round trips); ``ports``: through ports
        the engine publishes on the engine host's 127.0.0.1. ``auto``: ``address`` where this
        machine routes to the network (a local engine on Linux), else ``ports`` (Docker
        Desktop, remote engines).""",
    ).tag(config=True)

    restart_in_container = Bool(
        True,
        help="""Restart the kernel as a fresh process inside its running container (the
        kernel runs under a small supervisor there) when that is safe: the container runs and
        the kernelspec, directory, environment and connection are unchanged. Its state is gone
        as with any restart; files it wrote outside mounts (``/tmp``) stay. False, or not
        safe: a new container.""",
    ).tag(config=True)

    preload = List(
        Unicode(),
        [],
        help="""Modules the kernel container's supervisor imports once, before it starts the
        kernel: every kernel process it starts (the first, and each restart) finds them
        imported. ``["ipykernel.kernelapp"]`` makes in-container restarts about a quarter
        faster, for about 13 MiB more per idle kernel (benchmarks/kernels.py); [] (the
        default) imports nothing ahead.""",
    ).tag(config=True)

    pool_size = Int(
        None,
        allow_none=True,
        help="""Ready kernels a Jupyter server keeps for this kernelspec (a warm pool: a
        start claims one instead of starting a container). None: ``MLContainerPool.size``; 0:
        none. Capped by ``MLContainerPool.max_per_kernelspec``.""",
    ).tag(config=True)

    lease_timeout = Float(
        90.0,
        help="""Seconds a kernel container keeps running once the Jupyter process that started
        it stops renewing its lease (that process crashed or was killed: SIGKILL, OOM, a
        reboot): the kernel then stops itself, so it never holds GPUs for ever, and the next
        server start in the same runtime dir removes it. Renewals go every ``lease_timeout /
        6`` seconds over a connection of their own. 0: kernels never stop themselves.""",
    ).tag(config=True)

    persistent_home = Bool(
        True,
        help="""Keep the kernel's HOME in a named Docker volume per user and image family
        (``mlc-home-UID-REPOSITORY``): ``~/.cache`` (pip, torch hub, Hugging Face), ``~/.keras``,
        IPython's history and the like survive restarts and new containers, and are shared by
        the user's kernels of that image (any tag). ``jupyter mlcontainer doctor`` lists them
        with their sizes; ``jupyter mlcontainer prune`` removes those no kernelspec needs. False:
        a fresh HOME in every container.""",
    ).tag(config=True)

    mount_cwd = Bool(
        True,
        help="""Mount the notebook's directory at the same path in the container and start the
        kernel there, so relative paths and tracebacks match the host.""",
    ).tag(config=True)

    mounts: List[Any] = List(
        AnyTrait(),
        [],
        help="""Extra mounts: ``"SOURCE:TARGET"``, ``"SOURCE:TARGET:ro"`` or
        ``{"source": …, "target": …, "read_only": true}``. A source that is not an absolute
        path names a Docker volume.""",
    ).tag(config=True)

    path_map = Dict(
        {},
        help="""Paths as the server sees them → paths on the engine's host, for bind mounts
        when the server itself runs in a container or the engine is remote
        (``{"/home/jovyan/work": "/srv/users/alice/work"}``). Longest prefix wins. Empty, and
        the server in a Docker container: its own container's bind mounts (Compose).""",
    ).tag(config=True)

    env = Dict(
        {},
        help="""Extra environment variables for the kernel (after the kernelspec's ``env``).""",
    ).tag(config=True)

    env_allowlist = List(
        DEFAULT_ENV_ALLOWLIST,
        help="""Names of the server's environment variables passed to the kernel. Nothing
        else of the server's environment reaches the container (tokens, credentials, host
        paths) unless the kernelspec's ``env`` names it.""",
    ).tag(config=True)

    uid = Int(
        None,
        allow_none=True,
        help="""User id the kernel runs as. None: the server's uid; when the server runs as
        root, the owner of the notebook's directory (root only if root owns it).""",
    ).tag(config=True)

    gid = Int(
        None,
        allow_none=True,
        help="""Group id the kernel runs as. None: the group that goes with ``uid``.""",
    ).tag(config=True)

    python = Unicode(
        "python3",
        help="""The image's Python: replaces ``python``/``python3`` at the start of the
        kernelspec's argv (jupyter_client would put the *server's* interpreter there).""",
    ).tag(config=True)

    docker_host = Unicode(
        None,
        allow_none=True,
        help="""The Docker engine: a URL (``unix:///var/run/docker.sock``, ``ssh://user@host``,
        ``tcp://host:2376`` with TLS from ``DOCKER_CERT_PATH``) or a docker context's name. None:
        ``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then the current docker context, then the
        default socket. On an engine at another host, kernel ports are published there and
        CurveZMQ-encrypted, and the notebook's folder is mounted through ``path_map``.""",
        # Not in the REST API: its kernelspecs are pinned and probed on its own server's engine.
    ).tag(config=True, add=True, rest=False)

    backend = CaselessStrEnum(
        ["docker", "swarm"],
        default_value="docker",
        help="""Where the kernel's container runs: ``docker`` (the default), a Docker engine;
        ``swarm``, a service of one task on a Docker Swarm, placed by its scheduler on a node
        with room for its memory and GPUs (``docker_host`` names a manager; ports are published
        on the task's node, CurveZMQ-encrypted). On a swarm, set ``persistent_home`` to false
        (volumes are per node), use an image with ipykernel, and ask for GPUs by count; a
        kernel is interrupted through its in-container supervisor (see docs/backends.md).""",
    ).tag(config=True, add=True, rest=False)

    placement = List(
        Unicode(),
        [],
        help="""With ``backend="swarm"``: Swarm placement constraints the kernel's task must
        meet, as ``docker service create --constraint`` takes them (``node.hostname==gpu-3``,
        ``node.labels.gpu==true``, ``node.role!=manager``, ``node.platform.arch==x86_64``). []:
        any node with room. A Docker engine is one machine: a constraint there is refused.""",
    ).tag(config=True, add=True, rest=False)

    remote_encryption = CaselessStrEnum(
        ["curve", "none"],
        default_value="curve",
        help="""Kernel traffic to a kernel on a remote engine: ``curve`` encrypts every ZMQ
        channel with CurveZMQ keys made per kernel (the kernel's Python needs ipykernel ≥ 7);
        ``none`` is clear text and needs MLContainerPolicy.allow_unencrypted_remote.""",
    ).tag(config=True)

    local_encryption = CaselessStrEnum(
        ["auto", "curve", "none"],
        default_value="auto",
        help="""Kernel traffic to a kernel on this machine's engine. ``auto`` (the default):
        CurveZMQ-encrypted when the kernelspec says its kernel speaks it
        (``metadata.supported_encryption``, which ``add`` writes for ipykernel ≥ 7), else
        clear text; ``curve``: encrypted, refused when the kernel cannot; ``none``: clear text
        (the kernels' network has inter-container traffic off and ports are published on
        127.0.0.1 only, so only processes of this machine can reach a kernel).""",
    ).tag(config=True)

    kernel_address = Unicode(
        "",
        help="""Remote engines: the address at which this server reaches the engine's host
        (its kernels' published ports). "": the host in the engine's URL (for ssh://, the
        HostName that ~/.ssh/config gives it).""",
    ).tag(config=True)

    publish_address = Unicode(
        "0.0.0.0",  # noqa: S104 (remote engines only, traffic encrypted)
        help="""Remote engines: the interface on the engine's host where kernel ports are
        published (a local engine always publishes on 127.0.0.1).""",
    ).tag(config=True)

    inject_runtime = CaselessStrEnum(
        ["auto", "always", "never"],
        default_value="auto",
        help="""Provide ipykernel from outside the image, unchanged, when the image lacks it:
        ``auto`` (when the kernelspec's recorded probe says so, or when a start fails with
        "No module named ipykernel_launcher"), ``always`` or ``never``. The runtime is a
        read-only volume appended to ``sys.path``, so the image's own packages win.""",
    ).tag(config=True)

    runtime_packages = List(
        list(DEFAULT_PACKAGES),
        help="""Requirements of the injected runtime (pinned; built once per Python version
        and platform, then reused by every kernel).""",
    ).tag(config=True)

    wheelhouse = Unicode(
        None,
        allow_none=True,
        help="""A folder of wheels for building injected runtimes offline (``pip download
        ipykernel --only-binary=:all: --python-version 3.11 -d DIR``). None: the package
        index.""",
    ).tag(config=True)

    use_image_entrypoint = Bool(
        False,
        help="""Run the kernel through the image's ENTRYPOINT. By default it is bypassed:
        entrypoint scripts print banners, switch users or start services.""",
    ).tag(config=True)

    ready_timeout = Float(
        60.0,
        help="""Seconds to wait, after the container starts, for the kernel to answer its
        heartbeat. A container that exits meanwhile fails the start with its reason; past
        the timeout the start goes on and Jupyter's own timeouts apply.""",
    ).tag(config=True)

    log_tail = Int(
        30,
        help="""Lines of the container's log quoted when a kernel dies or fails to start.""",
    ).tag(config=True)

    def launch_settings(self) -> dict[str, Any]:
        """The settings the container plan takes as they are: every trait that
        :class:`~jupyter_mlcontainer.core.plan.KernelLaunch` has a field of the same name for,
        except those the provisioner resolves first (:data:`RESOLVED_AT_START`)."""
        fields = {f.name for f in dataclasses.fields(KernelLaunch)} - RESOLVED_AT_START
        return {
            name: getattr(self, name) for name in self.trait_names(config=True) if name in fields
        }

    #: The ``gpus`` value last parsed, and what it reads as.
    _gpus_parsed: tuple[Any, gpu.GPURequest] | None = None

    @property
    def gpu_request(self) -> gpu.GPURequest:
        """The ``gpus`` setting, parsed: when it was set (the trait's validator), or for the
        default value on first use. Everything that needs to know what ``gpus`` asks for reads
        this, never the setting itself."""
        value = self.gpus
        parsed = self._gpus_parsed
        if parsed is None or parsed[0] is not value:
            parsed = (value, gpu.parse_gpus(value))
            self._gpus_parsed = parsed
        return parsed[1]

    @validate("gpus")
    def _validate_gpus(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        try:
            self._gpus_parsed = (value, gpu.parse_gpus(value))
        except ValueError as e:
            raise TraitError(str(e)) from e
        return value

    @validate("shm_size", "mem_limit")
    def _validate_size(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if value is not None:
            try:
                parse_bytes(value)
            except ValueError as e:
                msg = (
                    f"Invalid {proposal['trait'].name} {value!r}: use a size such as "
                    "'512m', '2g' or a number of bytes."
                )
                raise TraitError(msg) from e
        return value

    @validate("cpus")
    def _validate_cpus(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if value is not None and value <= 0:
            msg = f"Invalid cpus {value!r}: use a positive number of CPUs such as 0.5 or 2."
            raise TraitError(msg)
        return value

    @validate("placement")
    def _validate_placement(self, proposal: dict[str, Any]) -> Any:
        for constraint in proposal["value"]:
            if not PLACEMENT.fullmatch(constraint):
                msg = (
                    f"Invalid placement constraint {constraint!r}: use ATTRIBUTE==VALUE or "
                    "ATTRIBUTE!=VALUE, such as node.hostname==gpu-3 or node.labels.gpu==true."
                )
                raise TraitError(msg)
        return proposal["value"]

    @validate("mounts")
    def _validate_mounts(self, proposal: dict[str, Any]) -> Any:
        for item in proposal["value"]:
            try:
                parse_mount(item)
            except ValueError as e:
                raise TraitError(str(e)) from e
        return proposal["value"]


def requested_gpus(config: dict[str, Any]) -> gpu.GPURequest:
    """The GPUs a kernelspec's provisioner config (kernel.json) asks for, read as its kernel
    reads them (the trait's default when it names none). Raises TraitError when invalid."""
    given = {"gpus": config["gpus"]} if "gpus" in config else {}
    return ContainerKernelSettings(**given).gpu_request

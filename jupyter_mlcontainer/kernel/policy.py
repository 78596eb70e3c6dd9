"""The admin policy: what kernelspecs may ask for. Server-side settings only, never kernel.json.

kernel.json is data anyone can share, so it must not decide that a kernel mounts ``/`` or the
Docker socket, joins the host's network, runs as root, talks to another engine or installs
packages from anywhere. The policy comes from Jupyter config (``c.MLContainerPolicy.…`` in
``jupyter_server_config.py`` or the command line) and, for every process that starts kernels
(the server, nbconvert, papermill, ``jupyter mlcontainer run``), from
``mlcontainer_policy.json`` in any Jupyter config directory (``jupyter --paths``; an admin puts
it in ``/etc/jupyter``). A kernel that breaks a rule fails before anything is created, with one
line naming the rule and the setting to change.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_config_path
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Int,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import Config, Configurable

from ..core.exceptions import ConfigurationError
from ..core.plan import ENGINE_SOCKETS, parse_mount
from ..core.reference import split_registry
from ..core.sizes import parse_bytes

POLICY_FILE = "mlcontainer_policy.json"
#: Our own volumes: never mounted through a kernelspec (read-write, they could poison every
#: kernel's runtime or read another user's HOME), whatever the policy.
PROJECT_VOLUMES = ("mlcontainer-runtime-", "mlc-home-")
#: A requirement specifier, and nothing that pip would read as an option or a path.
_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?\s*([<>=!~]=?[^\s;]+\s*,?\s*)*$"
)


class PolicyError(ConfigurationError):
    """A kernelspec asks for something the admin policy does not allow."""


class QuotaExceededError(PolicyError):
    """The user already holds what the admin's quota allows (kernels, GPUs or memory)."""


#: What a quota limits, and how its value reads.
QUOTA_KEYS = ("kernels", "gpus", "memory")


class MLContainerPolicy(Configurable):
    """Limits on what a container kernelspec may ask for."""

    allowed_images = List(
        Unicode(),
        default_value=["*"],
        help="""Image references kernels may use: shell-style patterns (``registry.example.com/
        ml/*``, ``pytorch/pytorch@sha256:*``) matched against the reference in kernel.json.""",
    ).tag(config=True)

    require_digest = Bool(
        False,
        help="""Only images pinned by digest (``repo@sha256:…``) or by local image id.""",
    ).tag(config=True)

    allowed_registries = List(
        Unicode(),
        default_value=["*"],
        help="""Registries images may come from (``docker.io`` for references without a
        registry host, ``localhost:5000``…); shell-style patterns.""",
    ).tag(config=True)

    allowed_networks = List(
        Unicode(),
        default_value=["bridge", "none"],
        help="""Network modes kernels may use. ``host`` (the host's network: every service on
        the host is reachable) must be allowed explicitly.""",
    ).tag(config=True)

    allowed_mount_roots = List(
        Unicode(),
        default_value=["~"],
        help="""Host folders under which kernel.json's extra ``mounts`` may bind (``~`` is the
        server user's home). The notebook's own directory is always mounted. ``/`` and the
        Docker engine's socket never are, unless ``allow_engine_mounts`` says so.""",
    ).tag(config=True)

    allow_named_volumes = Bool(True, help="""Whether ``mounts`` may name Docker volumes.""").tag(
        config=True
    )

    allow_engine_mounts = Bool(
        False,
        help="""Let ``mounts`` bind ``/`` or the Docker engine's socket (root on the host for
        whoever writes the kernelspec).""",
    ).tag(config=True)

    allow_root = Bool(
        False,
        help="""Let kernels run as uid or gid 0 (for instance a root server whose notebook
        directory root owns). Otherwise set ``MLContainerProvisioner.uid`` or use a notebook
        directory owned by a user.""",
    ).tag(config=True)

    allowed_engines = List(
        Unicode(),
        default_value=[],
        help="""Docker engine addresses a kernelspec's ``docker_host`` may name (``ssh://gpu-
        box``, ``tcp://10.0.0.5:2376``…). Kernels without one use the server's engine.""",
    ).tag(config=True)

    allow_unencrypted_remote = Bool(
        False,
        help="""Let kernels on a remote engine (ssh://, tcp://, a context naming another host)
        talk in clear text: kernel traffic without CurveZMQ (``remote_encryption: none``), or
        the engine's API over plain tcp:// without TLS. Off: both are refused, as anyone on the
        network could read the code and outputs or drive the engine.""",
    ).tag(config=True)

    max_memory = Unicode(
        None,
        allow_none=True,
        help="""The largest ``mem_limit`` a kernel may ask for (``64g``); also required: a kernel
        without a limit is refused while this is set.""",
    ).tag(config=True)

    default_memory = Unicode(
        "90%",
        help="""The memory limit of kernels whose kernelspec sets none: a size (``16g``) or a
        share of the engine host's memory (``90%``), so that one runaway kernel is OOM-killed
        alone instead of starving the host. ``""``: no limit.""",
    ).tag(config=True)

    max_cpus = Float(
        None, allow_none=True, help="""The most CPUs (``cpus``) a kernel may ask for."""
    ).tag(config=True)

    max_gpus = Int(
        None,
        allow_none=True,
        help="""The most GPUs a kernel may ask for; ``all`` and ``auto`` count as every GPU and
        are refused while this is set.""",
    ).tag(config=True)

    quotas = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="""The most each user may hold at once, across every server that uses the same
        backend: ``{"*": {"kernels": 4, "gpus": 2, "memory": "64g"}, "alice": {"gpus": 4},
        "@ml-team": {"gpus": 3}}``. A user's limit is their own entry's, else the highest of
        their system groups' (``@group``), else ``*``'s; a limit not set anywhere is none.
        The user is the one the gateway verified, else whoever runs the server. Counted from
        the backend's kernel containers (their labels), so a crashed server's kernels count
        until they end; a start over the quota is refused with what the user holds.""",
    ).tag(config=True)

    @validate("quotas")
    def _check_quotas(self, proposal: Any) -> dict[str, dict[str, Any]]:
        quotas: dict[str, dict[str, Any]] = proposal["value"]
        for who, limits in quotas.items():
            unknown = sorted(set(limits) - set(QUOTA_KEYS))
            if unknown:
                msg = (
                    f"MLContainerPolicy.quotas[{who!r}] has {', '.join(unknown)}: a quota "
                    f'limits {", ".join(QUOTA_KEYS)} (e.g. {{"kernels": 4, "gpus": 2, '
                    '"memory": "64g"}).'
                )
                raise TraitError(msg)
            for key in ("kernels", "gpus"):
                if key in limits and (not isinstance(limits[key], int) or limits[key] < 0):
                    msg = f"MLContainerPolicy.quotas[{who!r}][{key!r}] must be a whole number >= 0."
                    raise TraitError(msg)
            if "memory" in limits:
                try:
                    parse_bytes(limits["memory"])
                except (TypeError, ValueError) as e:
                    msg = f"MLContainerPolicy.quotas[{who!r}]['memory']: {e}"
                    raise TraitError(msg) from None
        return quotas

    def quota_for(self, user: str, groups: Sequence[str] = ()) -> dict[str, int]:
        """The user's limits (bytes for memory); a key absent is no limit."""
        found: dict[str, int] = {}
        own = self.quotas.get(user, {})
        shared = [self.quotas[f"@{g}"] for g in groups if f"@{g}" in self.quotas]
        anyone = self.quotas.get("*", {})
        for key in QUOTA_KEYS:
            if key in own:
                value = own[key]
            elif any(key in q for q in shared):
                value = max(parse_bytes(q[key]) for q in shared if key in q)
            elif key in anyone:
                value = anyone[key]
            else:
                continue
            found[key] = int(parse_bytes(value))
        return found

    gpu_sharing = Int(
        1,
        min=0,
        help="""How many kernels may hold one GPU at a time. 1 (the default): a GPU is a
        kernel's alone until it ends. N: up to N kernels per GPU, the least used first. 0: no
        ledger, Docker picks the devices (a count is then always the *first* GPUs, and every
        kernel lands on GPU 0). With the ledger, ``auto`` is one free GPU (the CPU when none is
        free), a count is that many free GPUs by UUID, and a kernel that asks for more than
        is free is refused with who holds what.""",
    ).tag(config=True)

    gpu_devices = Enum(
        ["gpus", "mig"],
        "gpus",
        help="""What the ledger hands out: whole GPUs (``gpus``), or the MIG instances the
        admin made on them (``mig``, read from ``nvidia-smi -L``; GPUs without instances are
        not handed out then). A kernel asking ``gpus: 1`` gets one instance by its UUID.""",
    ).tag(config=True)

    gpu_inventory_command = Unicode(
        "nvidia-smi",
        help="""The program that lists the host's GPUs for the ledger (asked
        ``--query-gpu=index,uuid,name,memory.total --format=csv,noheader``): run here for a
        local engine, in a probe container for a remote one. Not found, or no GPU listed: no
        ledger, and GPU requests go to the engine as they are.""",
    ).tag(config=True)

    allow_runtime_packages = Bool(
        False,
        help="""Let kernelspecs change ``runtime_packages`` (what the injected runtime installs
        with pip). Even then only plain requirement specifiers (``numpy==2.3.5``), never pip
        options or files.""",
    ).tag(config=True)

    allowed_env_passthrough = List(
        Unicode(),
        help="""Server environment variables a kernelspec's ``env_allowlist`` may pass into
        kernels (the default allowlist's: locale, time zone, the session name).""",
    ).tag(config=True)

    @default("allowed_env_passthrough")
    def _allowed_env_passthrough_default(self) -> list[str]:
        from .settings import DEFAULT_ENV_ALLOWLIST

        return list(DEFAULT_ENV_ALLOWLIST)

    @classmethod
    def for_kernel(cls, parent: Any) -> MLContainerPolicy:
        """The policy in force for a kernel: Jupyter config (through ``parent``), then the
        policy files of the Jupyter config path, which win, the system-wide one (an admin's
        ``/etc/jupyter``) over a user's."""
        policy = cls(parent=parent)
        for folder in jupyter_config_path():  # the user's first: the system's are applied last
            path = Path(folder) / POLICY_FILE
            if path.is_file():
                try:
                    rules = json.loads(path.read_text()).get(cls.__name__, {})
                except ValueError as e:
                    msg = f"The admin policy file {path} is not valid JSON: {e}"
                    raise PolicyError(msg) from None
                policy.update_config(Config({cls.__name__: rules}))
        return policy

    # --- the rules -------------------------------------------------------------------

    def check_settings(self, asked: dict[str, Any], settings: Any) -> None:
        """What the kernelspec asks for (``asked``: its kernel.json config), before any engine
        call. Settings from the server's own configuration are the admin's, not checked;
        resource limits are checked on the values in force (``settings``)."""
        self._check_image(settings.image)
        if "network" in asked and settings.network not in self.allowed_networks:
            self._refuse(
                "allowed_networks",
                f"network {settings.network!r}",
                f"use one of {', '.join(self.allowed_networks)}",
            )
        for mount in asked.get("mounts") or []:
            self._check_mount(mount)
        if asked.get("docker_host") and asked["docker_host"] not in self.allowed_engines:
            self._refuse(
                "allowed_engines", f"docker_host {asked['docker_host']!r}", "remove docker_host"
            )
        self._check_resources(settings)
        if "wheelhouse" in asked and not self.allow_runtime_packages:
            self._refuse(
                "allow_runtime_packages",
                f"wheelhouse {asked['wheelhouse']!r} (where the runtime's wheels come from)",
                "remove wheelhouse",
            )
        if "runtime_packages" in asked:
            if not self.allow_runtime_packages:
                self._refuse(
                    "allow_runtime_packages",
                    f"runtime_packages {list(settings.runtime_packages)}",
                    "remove runtime_packages",
                )
            for requirement in settings.runtime_packages:
                if not _REQUIREMENT.match(str(requirement).strip()):
                    msg = (
                        f"Not allowed by the admin policy: runtime package {requirement!r} is not "
                        "a plain requirement such as 'numpy==2.3.5' (no pip options or files)."
                    )
                    raise PolicyError(msg)
        extra_env = set(asked.get("env_allowlist") or []) - set(self.allowed_env_passthrough)
        if extra_env:
            self._refuse(
                "allowed_env_passthrough",
                f"passing {', '.join(sorted(extra_env))} from the server's environment",
                "remove them from env_allowlist",
            )

    def memory_limit(self, asked: str | int | None, host_bytes: int) -> str | int | None:
        """The limit a kernel gets: its own (refused above :attr:`max_memory`), else
        :attr:`default_memory` of this host. The one place the policy meets ``mem_limit``."""
        if self.max_memory is not None:
            limit = parse_bytes(self.max_memory)
            if asked is None or parse_bytes(asked) > limit:
                self._refuse(
                    "max_memory",
                    f"mem_limit {asked}",
                    f"set mem_limit to {self.max_memory} or less",
                )
        if asked is not None or not self.default_memory:
            return asked
        if self.default_memory.endswith("%"):
            share = float(self.default_memory[:-1]) / 100
            return int(host_bytes * share) if host_bytes else None
        return self.default_memory

    def check_user(self, uid: int, gid: int) -> None:
        if (uid == 0 or gid == 0) and not self.allow_root:
            msg = (
                f"Not allowed by the admin policy (allow_root): the kernel would run as "
                f"{uid}:{gid}, root, because root owns the notebook directory. Set "
                "MLContainerProvisioner.uid (and gid) to a user, use a notebook directory a user "
                "owns, or set MLContainerPolicy.allow_root = True (in Jupyter config, or "
                "--MLContainerPolicy.allow_root=True on the command line)."
            )
            raise PolicyError(msg)

    def _check_image(self, image: str) -> None:
        if not any(fnmatch.fnmatchcase(image, p) for p in self.allowed_images):
            self._refuse("allowed_images", f"image {image!r}", "choose an allowed image")
        pinned = "@sha256:" in image or image.startswith("sha256:")
        if self.require_digest and not pinned:
            self._refuse(
                "require_digest", f"image {image!r} (not pinned)", "pin it: jupyter mlcontainer add"
            )
        registry = registry_of(image)
        if registry and not any(fnmatch.fnmatchcase(registry, p) for p in self.allowed_registries):
            self._refuse("allowed_registries", f"registry {registry!r}", "use an allowed one")

    def _check_mount(self, mount: Any) -> None:
        parsed = parse_mount(mount)
        source = str(parsed["Source"])
        if parsed["Type"] == "volume":
            if source.startswith(PROJECT_VOLUMES):
                msg = (
                    f"Not allowed: mounting {source!r}, a volume of jupyter-mlcontainer (an "
                    "injected runtime or a user's HOME): kernels get theirs by themselves. Remove "
                    "the mount from the kernelspec."
                )
                raise PolicyError(msg)
            if not self.allow_named_volumes:
                self._refuse("allow_named_volumes", f"volume {source!r}", "remove the mount")
            return
        real = os.path.realpath(source)
        if real == "/" or real in ENGINE_SOCKETS or os.path.basename(real) == "docker.sock":
            if not self.allow_engine_mounts:
                self._refuse("allow_engine_mounts", f"mounting {source}", "remove the mount")
            return
        roots = [os.path.realpath(os.path.expanduser(r)) for r in self.allowed_mount_roots]
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots):
            self._refuse(
                "allowed_mount_roots",
                f"mounting {source}",
                "mount something under " + (", ".join(roots) or "no folder at all"),
            )

    def _check_resources(self, settings: Any) -> None:
        """CPUs and GPUs (memory: :meth:`memory_limit`, where its default is decided too)."""
        if self.max_cpus is not None and (settings.cpus is None or settings.cpus > self.max_cpus):
            self._refuse(
                "max_cpus", f"cpus {settings.cpus}", f"set cpus to {self.max_cpus:g} or less"
            )
        if self.max_gpus is not None:
            request = settings.gpu_request
            count = {"count": request.count, "ids": len(request.ids), "none": 0}.get(request.mode)
            if count is None or count > self.max_gpus:
                self._refuse(
                    "max_gpus", f"gpus {settings.gpus!r}", f"ask for {self.max_gpus} GPUs or fewer"
                )

    def check_remote(self, address: str, api_encrypted: bool, kernel_encryption: str) -> None:
        """A kernel on a remote engine talks encrypted, unless the policy allows clear text."""
        if self.allow_unencrypted_remote:
            return
        if kernel_encryption == "none":
            self._refuse(
                "allow_unencrypted_remote",
                f"remote_encryption 'none' for the remote engine {address} (kernel traffic in "
                "clear text)",
                "remove remote_encryption (CurveZMQ is the default)",
            )
        if not api_encrypted:
            self._refuse(
                "allow_unencrypted_remote",
                f"the remote engine {address} without TLS (its API in clear text)",
                "use ssh://user@host, or tcp:// with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH "
                "(or a docker context with certificates)",
            )

    @staticmethod
    def _refuse(rule: str, what: str, fix: str) -> None:
        msg = (
            f"Not allowed by the admin policy ({rule}): {what}. In the kernelspec, {fix}; or "
            f"change MLContainerPolicy.{rule} in the server's configuration."
        )
        raise PolicyError(msg)


def registry_of(image: str) -> str:
    """The registry host of a reference (``docker.io`` when it names none; "" for an id)."""
    if image.startswith("sha256:"):
        return ""
    return split_registry(image)[0] or "docker.io"

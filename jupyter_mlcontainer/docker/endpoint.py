"""Which Docker engine an address names, and how to reach it.

An address is what a kernelspec's or the server's ``docker_host`` says, as the docker CLI
takes it:

- a URL: ``unix:///run/docker.sock``, ``ssh://user@gpu-box``, ``tcp://gpu-box:2376``; a ``tcp``
  URL uses TLS with the client certificate in ``DOCKER_CERT_PATH`` (or ``~/.docker``) when
  ``DOCKER_TLS_VERIFY`` is set, or when that folder holds one;
- a docker context's name (``docker context create gpu --docker host=…,ca=…,cert=…,key=…``),
  whose host and certificates are used;
- nothing: ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), then
  ``DOCKER_CONTEXT``, then the current context, then Docker's socket, and without one
  Podman's (the user's rootless one, then the system's).

An engine is *remote* when it is reached over the network at another host: its kernels'
ports cannot be published on this machine's loopback, and this machine's folders are not
there to bind-mount.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.exceptions import ConfigurationError

NETWORK_SCHEMES = ("tcp", "ssh", "http", "https")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


class EndpointError(ConfigurationError):
    """An address that names no engine we can reach (a context that does not exist)."""


@dataclass(frozen=True)
class Endpoint:
    #: The SDK's base_url ("" leaves the SDK's default socket).
    url: str
    #: ``docker.tls.TLSConfig`` for a tcp engine with TLS, else None.
    tls: Any = None
    #: Where the address came from, for messages ("context gpu", "DOCKER_HOST").
    source: str = "the default socket"

    @property
    def scheme(self) -> str:
        return urllib.parse.urlsplit(self.url).scheme if "://" in self.url else "unix"

    @property
    def host(self) -> str:
        """The engine's host name or address ('' for a local socket)."""
        if self.scheme not in NETWORK_SCHEMES:
            return ""
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def remote(self) -> bool:
        return self.scheme in NETWORK_SCHEMES and not is_loopback(self.host)

    @property
    def api_encrypted(self) -> bool:
        """Whether the engine's API itself travels encrypted (ssh, or TLS)."""
        return self.scheme in ("ssh", "https") or self.tls is not None

    def describe(self) -> str:
        shown = self.url or "the default socket"
        return shown if self.source in ("", shown) else f"{shown} ({self.source})"


def is_loopback(host: str) -> bool:
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_from_dir(cert_dir: str) -> Any:
    import docker.tls

    ca, cert, key = (os.path.join(cert_dir, name) for name in TLS_FILES)
    return docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)


def _tcp_tls(environ: Mapping[str, str]) -> Any:
    """TLS for a tcp URL, as the docker CLI finds it (None: plain TCP)."""
    cert_dir = environ.get("DOCKER_CERT_PATH") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".docker"
    )
    has_files = all(os.path.exists(os.path.join(cert_dir, name)) for name in TLS_FILES)
    if environ.get("DOCKER_TLS_VERIFY") or (environ.get("DOCKER_CERT_PATH") and has_files):
        if not has_files:
            missing = ", ".join(n for n in TLS_FILES if not os.path.exists(f"{cert_dir}/{n}"))
            msg = (
                f"DOCKER_TLS_VERIFY is set but {cert_dir} lacks {missing}: put the engine's CA "
                "and your client certificate there, or set DOCKER_CERT_PATH to their folder."
            )
            raise EndpointError(msg)
        return _tls_from_dir(cert_dir)
    return None


def docker_config_dir(environ: Mapping[str, str]) -> str:
    home = environ.get("HOME") or os.path.expanduser("~")
    return environ.get("DOCKER_CONFIG") or os.path.join(home, ".docker")


def _context(name: str | None, environ: Mapping[str, str]) -> tuple[str, Any] | None:
    """The (host, TLS config) of a docker context, read from the store the docker CLI
    writes (``$DOCKER_CONFIG`` or ``~/.docker``: ``contexts/meta/<sha256 of the name>/``); None
    when there is no such context. No name: ``DOCKER_CONTEXT``, then config.json's
    ``currentContext``; "default" and no current context mean the default socket ("").

    Read here, not through docker-py's ContextAPI, which looks for the store next to a
    config.json and so misses it when there is none."""
    config_dir = docker_config_dir(environ)
    if not name:
        name = environ.get("DOCKER_CONTEXT") or ""
    if not name:
        try:
            with open(os.path.join(config_dir, "config.json")) as f:
                name = str(json.load(f).get("currentContext") or "")
        except (OSError, ValueError, AttributeError):
            name = ""
    if name in ("", "default"):
        return "", None
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta_file = os.path.join(config_dir, "contexts", "meta", digest, "meta.json")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        msg = f"Cannot read docker context {name!r} ({meta_file}): {e}"
        raise EndpointError(msg) from None
    docker_endpoint = (meta.get("Endpoints") or {}).get("docker") or {}
    host = str(docker_endpoint.get("Host") or "")
    tls_dir = os.path.join(config_dir, "contexts", "tls", digest, "docker")
    tls = None
    if host.startswith("tcp://") and os.path.isdir(tls_dir):
        import docker.tls

        ca, cert, key = (os.path.join(tls_dir, n) for n in TLS_FILES)
        tls = docker.tls.TLSConfig(
            client_cert=(cert, key) if os.path.exists(cert) else None,
            ca_cert=ca if os.path.exists(ca) else None,
            verify=not docker_endpoint.get("SkipTLSVerify"),
        )
    return host, tls


def resolve(address: str | None, environ: Mapping[str, str] | None = None) -> Endpoint:
    """The engine an address names (see the module's docstring)."""
    env = os.environ if environ is None else environ
    if address and "://" in address:
        tls = _tcp_tls(env) if address.startswith("tcp://") else None
        return Endpoint(address, tls, "docker_host")
    if address:
        found = _context(address, env)
        if found is None:
            msg = (
                f"docker_host {address!r} is neither an engine URL (unix://, ssh://user@host, "
                "tcp://host:2376) nor a docker context on this machine (`docker context ls`)."
            )
            raise EndpointError(msg)
        return Endpoint(found[0], found[1], f"context {address}")
    if env.get("DOCKER_HOST"):
        url = env["DOCKER_HOST"]
        return Endpoint(url, _tcp_tls(env) if url.startswith("tcp://") else None, "DOCKER_HOST")
    name = env.get("DOCKER_CONTEXT")
    try:
        found = _context(name, env)
    except EndpointError:
        if name:
            raise
        found = None  # a damaged context store must not stop local kernels
    if found is None and name:
        msg = f"DOCKER_CONTEXT names {name!r}, which is no docker context (`docker context ls`)."
        raise EndpointError(msg)
    if found and found[0]:
        source = f"context {name}" if name else "the current docker context"
        return Endpoint(found[0], found[1], source)
    return _default_socket(env)


DOCKER_SOCKET = "/var/run/docker.sock"


def _default_socket(env: Mapping[str, str], docker_socket: str = DOCKER_SOCKET) -> Endpoint:
    """Docker's socket; without one, Podman's Docker-compatible socket: the user's own
    (rootless: ``$XDG_RUNTIME_DIR/podman/podman.sock``), then the system's (rootful)."""
    if os.path.exists(docker_socket):
        return Endpoint("", None, "the default socket")
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append((f"{env['XDG_RUNTIME_DIR']}/podman/podman.sock", "rootless Podman"))
    candidates.append(("/run/podman/podman.sock", "Podman"))
    for path, what in candidates:
        if os.path.exists(path):
            return Endpoint(f"unix://{path}", None, f"{what}'s socket")
    return Endpoint("", None, "the default socket")


def kernel_host(where: Endpoint, environ: Mapping[str, str] | None = None) -> str:
    """The host at which this machine reaches a remote engine's published ports: the URL's
    host; for ssh, the HostName ``~/.ssh/config`` gives an alias (as ssh itself would)."""
    host = where.host
    if where.scheme != "ssh":
        return host
    env = os.environ if environ is None else environ
    config_file = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".ssh", "config")
    if not os.path.exists(config_file):
        return host
    try:
        import paramiko

        config = paramiko.SSHConfig.from_path(config_file)
        return str(config.lookup(host).get("hostname") or host)
    except Exception:  # an unreadable config: ssh would fail on it too, and say why
        return host

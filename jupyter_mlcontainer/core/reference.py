"""Image references: checked before the engine is ever contacted.

Pure. The grammar is the registry's own (distribution's ``reference`` package): an optional
registry host with an optional port, lowercase path components, an optional tag, an optional
digest; or a bare image id (``sha256:`` and 64 hex digits), which ``add`` pins to when an image
has no registry digest.
"""

from __future__ import annotations

import re

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_LENGTH = 255


def check_reference(image: str) -> str:
    """Return ``image`` stripped when it is a valid reference; raise ValueError saying why not.

    ``localhost:5000/team/torch:2.13``, ``pytorch/pytorch@sha256:…`` and ``sha256:<id>`` are
    valid; ``UPPER/Case::bad`` is not.
    """
    ref = image.strip()
    if not ref:
        msg = "No image given: name one, e.g. python:3.11-slim or registry.example.com/ml/torch:2.6"
        raise ValueError(msg)
    if _IMAGE_ID.match(ref):
        return ref
    match = _REFERENCE.match(ref)
    if match is None or len(match.group("path")) > MAX_LENGTH or not _host_ok(match["host"]):
        hint = " (repository names are lowercase)" if ref.lower() != ref else ""
        msg = (
            f"{ref!r} is not a valid image reference{hint}: write [REGISTRY[:PORT]/]NAME[:TAG]"
            "[@sha256:DIGEST], e.g. python:3.11-slim or localhost:5000/team/torch:2.13"
        )
        raise ValueError(msg)
    return ref


def _host_ok(host: str | None) -> bool:
    """A first part without a dot or port that is not localhost is a path component."""
    if host is None or is_registry_host(host):
        return True
    return re.fullmatch(_COMPONENT, host) is not None


def is_registry_host(part: str) -> bool:
    """The registry's own rule: a first component with a dot, a port or brackets, or
    ``localhost``, names a registry host; any other is part of the repository path."""
    return part == "localhost" or any(c in part for c in ".:[")


def split_registry(ref: str) -> tuple[str, str]:
    """(registry host, or "" when the reference names none; the rest of the reference)."""
    first, _, rest = ref.partition("/")
    return (first, rest) if rest and is_registry_host(first) else ("", ref)


def repository(ref: str) -> str:
    """The reference without its digest and tag (``localhost:5000/team/torch`` of
    ``localhost:5000/team/torch:2.13@sha256:…``)."""
    ref = ref.split("@", 1)[0]
    last_colon = ref.rfind(":")
    return ref[:last_colon] if last_colon > ref.rfind("/") else ref

"""Byte sizes (core/sizes.py): what the Docker SDK's parse_bytes accepts, and nothing else,
to the same number of bytes; settings are checked with it, without the SDK."""

from __future__ import annotations

import docker.utils
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_mlcontainer.core.sizes import parse_bytes


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("512m", 512 * 1024**2),
        ("2g", 2 * 1024**3),
        ("2G", 2 * 1024**3),
        ("1.5GB", int(1.5 * 1024**3)),
        ("512mb", 512 * 1024**2),
        ("64k", 64 * 1024),
        ("100", 100),
        ("2b", 2),
        ("", 0),
        (1024, 1024),
        (1.5, 1.5),
    ],
)
def test_sizes_read_as_docker_reads_them(size, expected):
    assert parse_bytes(size) == expected


@pytest.mark.parametrize("size", ["lots", "x1", "huge", "2x", "g", "b", "2t", "1e400g", "nanm"])
def test_what_is_not_a_size_is_refused(size):
    with pytest.raises(ValueError, match="memory"):
        parse_bytes(size)


def _docker(size: str) -> tuple[str, int | float | None]:
    try:
        return "ok", docker.utils.parse_bytes(size)
    except Exception:  # DockerException, and OverflowError or ValueError for inf and nan
        return "error", None


def _ours(size: str) -> tuple[str, int | float | None]:
    try:
        return "ok", parse_bytes(size)
    except ValueError:
        return "error", None


@given(st.text(alphabet="0123456789.e+-_ bBkKmMgGtx", max_size=6) | st.text(max_size=4))
def test_the_same_sizes_as_the_docker_sdk(size):
    assert _ours(size) == _docker(size)

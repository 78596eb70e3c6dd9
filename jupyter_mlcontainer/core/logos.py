"""Kernel logos for container kernelspecs: an SVG for JupyterLab and PNGs for older clients.

Generated, not shipped as binary files: a coloured tile with the framework's initials, so a
team's PyTorch, TensorFlow and plain-Python container kernels are told apart at a glance.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

#: kind → (tile colour, initials)
STYLES = {
    "pytorch": ("#ee4c2c", "PT"),
    "tensorflow": ("#ff8f00", "TF"),
    "python": ("#3776ab", "Py"),
}

SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
  <rect x="2" y="2" width="60" height="60" rx="10" fill="{color}"/>
  <rect x="8" y="44" width="48" height="12" rx="2" fill="{accent}"/>
  <text x="32" y="36" text-anchor="middle" font-family="Helvetica, Arial, sans-serif"
        font-size="24" font-weight="700" fill="#ffffff">{initials}</text>
</svg>
"""


def accent(image: str) -> str:
    """A colour of the image's own (from its name), for the strip under the initials: two
    kernels of the same framework from different images do not share a logo."""
    digest = hashlib.sha256(image.encode()).digest()
    r, g, b = (160 + digest[i] % 96 for i in range(3))
    return f"#{r:02x}{g:02x}{b:02x}"


def _rgb(color: str) -> tuple[int, int, int]:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return r, g, b


def _png(size: int, color: str, strip: str) -> bytes:
    """A square PNG: a rounded tile of ``color`` with a ``strip`` along its bottom."""
    tile, band = _rgb(color), _rgb(strip)
    radius = size // 6
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            dx = max(radius - x, 0, x - (size - 1 - radius))
            dy = max(radius - y, 0, y - (size - 1 - radius))
            inside = dx * dx + dy * dy <= radius * radius
            in_strip = size * 11 // 16 <= y < size * 7 // 8 and size // 8 <= x < size * 7 // 8
            row += bytes([*(band if in_strip else tile), 255 if inside else 0])
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def write_logos(folder: Path, kind: str, accent_of: str = "") -> list[str]:
    """Write logo-svg.svg, logo-32x32.png and logo-64x64.png; return their names.

    ``accent_of``: the image whose own colour marks the logo (none: a neutral strip).
    """
    color, initials = STYLES.get(kind, STYLES["python"])
    strip = accent(accent_of) if accent_of else "#ffffff"
    svg = SVG.format(color=color, initials=initials, accent=strip)
    (folder / "logo-svg.svg").write_text(svg)
    for size in (32, 64):
        (folder / f"logo-{size}x{size}.png").write_bytes(_png(size, color, strip))
    return ["logo-svg.svg", "logo-32x32.png", "logo-64x64.png"]

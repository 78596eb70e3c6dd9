"""Byte sizes as settings write them (``"512m"``, ``"2g"``, ``"1.5GB"``, ``"1073741824"``).

The rules are the Docker SDK's (``docker.utils.parse_bytes``, which the engine calls on
``mem_limit`` and ``shm_size``), kept here so that settings are checked without the SDK: what
this accepts the SDK accepts, and means the same number of bytes.
"""

from __future__ import annotations

#: Units: a power of 1024 (``k``, ``m``, ``g``, either case, optionally followed by ``b``).
BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(size: str | int | float) -> int | float:
    """The bytes of ``size``: a number as it is, "" as 0, else digits (a float too) with an
    optional unit: ``"512m"`` → 536870912, ``"1.5GB"`` → 1610612736, ``"100"`` → 100 (bytes).
    Raises ValueError for anything else (``"2x"``, ``"lots"``, ``"g"``)."""
    if isinstance(size, (int, float)):
        return size
    if len(size) == 0:
        return 0
    text = size
    if text[-2:-1].isalpha() and text[-1].isalpha() and text[-1] in "bB":
        text = text[:-1]
    suffix = text[-1].lower()
    if suffix.isdigit():
        digits, suffix = text, "b"
    else:
        digits = text[:-1]
    if suffix not in BYTE_UNITS:
        msg = (
            f"The specified value for memory ({text}) should specify the units. "
            "The postfix should be one of the `b` `k` `m` `g` characters"
        )
        raise ValueError(msg)
    try:
        number = float(digits)
    except ValueError:
        msg = f"Failed converting the string value for memory ({digits}) to an integer."
        raise ValueError(msg) from None
    try:
        return int(number * BYTE_UNITS[suffix])
    except (OverflowError, ValueError):  # inf, nan
        msg = f"The value for memory ({size}) is not a finite number of bytes."
        raise ValueError(msg) from None

"""Host subnets for the suite's own links: engine bridges, the remote engine's veth pair,
the test swarm's bridge.

A fixed subnet is not enough. A link that a killed run left behind, or a second run on the
same machine, may already hold it, and two links with one address break both: the host
sends to whichever route it finds first, and the tests of the other fail with "unable to
connect". So each link takes the first subnet of its range that no interface here holds,
and takes it under a lock held until its address is set, so two runs never take the same.
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = Path("/run/lock/mlc-test-subnets.lock")


def used_addresses() -> str:
    """``ip -o -4 addr show``: one line per IPv4 address of this namespace."""
    done = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    )
    return done.stdout


@contextmanager
def claim(prefix: str, numbers: range) -> Iterator[int]:
    """The first N of ``numbers`` such that no address here starts with
    ``prefix.format(N)`` (e.g. ``"10.231.{}."``). The caller sets its address inside the
    ``with`` block, while the lock is held."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        used = used_addresses()
        free = next((n for n in numbers if f" {prefix.format(n)}" not in used), None)
        if free is None:
            msg = (
                f"no free subnet {prefix.format('N')}0 for N in {numbers.start}..."
                f"{numbers.stop - 1}: links of killed runs hold them "
                "(`ip -o -4 addr show`; delete them with `ip link del`)"
            )
            raise RuntimeError(msg)
        yield free

"""Load, short form (benchmarks/load.py; `MLC_LOAD_CYCLES=500` runs the full one): 16 kernels
started at once all work, and start/stop cycles leave no container, no volume, and no growth in
open files or threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.load]
SCRIPT = Path(__file__).parent.parent / "benchmarks" / "load.py"


def test_concurrent_starts_and_many_cycles_leak_nothing(tmp_path, docker_api):
    cycles = os.environ.get("MLC_LOAD_CYCLES", "25")
    out = tmp_path / "load.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cycles", cycles, "--concurrent", "16", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    print(result.stdout)  # the table, for whoever reads the log
    assert figures["containers_left"] == 0
    assert figures["volumes_growth"] == 0
    assert figures["threads_growth"] <= 0
    # A few descriptors the first cycles open for good (connection pools), none per cycle.
    assert figures["open_files_growth"] <= 4

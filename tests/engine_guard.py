"""pytest plugin: make a run that skipped the Docker-engine tests fail loudly when asked.

With ``--require-engine`` (CI and ``scripts/dev test``), the session fails when any test
marked ``engine`` was skipped or deselected, or when none ran at all. A summary is written
to ``--engine-report`` so that ``.ci/run`` can check it independently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

_counts = {"collected": 0, "passed": 0, "failed": 0, "skipped": 0, "deselected": 0}
_skips: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engine")
    group.addoption(
        "--require-engine",
        action="store_true",
        help="fail the run if any engine test is skipped or deselected, or none runs",
    )
    group.addoption("--engine-report", default=None, help="write engine test counts here (JSON)")


def _is_engine(item: pytest.Item) -> bool:
    return item.get_closest_marker("engine") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _counts["collected"] = sum(_is_engine(i) for i in items)


def pytest_deselected(items: list[pytest.Item]) -> None:
    _counts["deselected"] += sum(_is_engine(i) for i in items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "engine" not in report.keywords:
        return
    if report.skipped:
        _counts["skipped"] += 1
        _skips.append(f"{report.nodeid}: {report.longrepr}")
    elif report.when == "call":
        _counts["passed" if report.passed else "failed"] += 1
    elif report.failed:
        _counts["failed"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    path = config.getoption("--engine-report")
    if path:
        Path(path).write_text(json.dumps(_counts, indent=1))
    if not config.getoption("--require-engine"):
        return
    problems = []
    if _counts["passed"] + _counts["failed"] == 0:
        problems.append("no Docker-engine test ran")
    if _counts["skipped"]:
        problems.append(f"{_counts['skipped']} engine test(s) skipped")
    if _counts["deselected"]:
        problems.append(f"{_counts['deselected']} engine test(s) deselected")
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("ENGINE TESTS NOT RUN: " + "; ".join(problems), red=True, bold=True)
            for line in _skips[:20]:
                reporter.write_line("  " + line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

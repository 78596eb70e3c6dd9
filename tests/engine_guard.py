"""pytest plugin: a run that skipped the Docker-engine tests fails loudly.

By default (``--allow-missing-engine`` turns it off, for a quick `-m "not engine"` run
without Docker) the session fails when any test marked ``engine`` was skipped or
deselected, or when none ran at all. A summary is written to ``--engine-report`` so that
``.ci/run`` can check it independently.

Hardware decides two markers: ``gpu`` tests (a kernel that really gets a GPU) run only where
the engine can give containers GPUs, ``no_gpu`` tests (what a GPU-less engine does) only
where it cannot. The others are not collected, and are reported as not applicable here: never
counted as passed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

_counts = {
    "collected": 0,
    "passed": 0,
    "failed": 0,
    "skipped": 0,
    "deselected": 0,
    "not_applicable": 0,
}
_skips: list[str] = []
_not_applicable: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("engine")
    group.addoption(
        "--require-engine",
        action="store_true",
        default=True,
        help="fail the run if any engine test is skipped or deselected, or none runs (the default)",
    )
    group.addoption(
        "--allow-missing-engine",
        action="store_false",
        dest="require_engine",
        help="do not fail when engine tests are skipped or deselected",
    )
    group.addoption("--engine-report", default=None, help="write engine test counts here (JSON)")


def _is_engine(item: pytest.Item) -> bool:
    return item.get_closest_marker("engine") is not None


def engine_has_gpus() -> bool:
    """Whether the Docker engine here can give containers GPUs (False when unreachable)."""
    import docker

    from jupyter_mlcontainer.core.gpus import GPUSupport

    try:
        info = docker.APIClient(version="auto").info()
    except docker.errors.DockerException:
        return False
    return GPUSupport.from_info(info).available


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hardware = [i for i in items if i.get_closest_marker("gpu") or i.get_closest_marker("no_gpu")]
    if hardware:
        has_gpus = engine_has_gpus()
        wrong = "no_gpu" if has_gpus else "gpu"
        why = "the engine has GPUs" if has_gpus else "the engine has no GPU support"
        for item in hardware:
            if item.get_closest_marker(wrong):
                items.remove(item)
                _not_applicable.append(f"{item.nodeid} ({why})")
        _counts["not_applicable"] = len(_not_applicable)
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
        report = {**_counts, "not_applicable_tests": _not_applicable}
        Path(path).write_text(json.dumps(report, indent=1))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _not_applicable:
        reporter.write_line(f"not applicable on this machine ({len(_not_applicable)}):")
        for line in _not_applicable:
            reporter.write_line("  " + line)
    if not config.getoption("require_engine"):
        return
    problems = []
    if _counts["passed"] + _counts["failed"] == 0:
        problems.append("no Docker-engine test ran")
    if _counts["skipped"]:
        problems.append(f"{_counts['skipped']} engine test(s) skipped")
    if _counts["deselected"]:
        problems.append(f"{_counts['deselected']} engine test(s) deselected")
    if problems:
        if reporter is not None:
            reporter.write_line("ENGINE TESTS NOT RUN: " + "; ".join(problems), red=True, bold=True)
            for line in _skips[:20]:
                reporter.write_line("  " + line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

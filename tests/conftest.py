"""Suite-wide rules: no test may pass by skipping.

A skip is accepted only with a reason registered in :data:`DELIBERATE_SKIPS`
(a name, and why skipping there is right); ``pytest.skip(deliberate(NAME))``
gives that reason.  Under ``make test`` (``P2PLAB_STRICT_SKIPS=1``, and always
when ``CI`` is set) any other skip fails the session, listed with its test.
"""

from __future__ import annotations

import os

import pytest

# name -> why a skip there is deliberate.  Empty today: every test runs in make test.
DELIBERATE_SKIPS: dict[str, str] = {}
_PREFIX = "deliberate:"


def deliberate(name: str) -> str:
    """The skip reason for a registered deliberate skip ``name``."""
    if name not in DELIBERATE_SKIPS:
        raise KeyError(f"{name!r} is not in tests/conftest.py DELIBERATE_SKIPS")
    return f"{_PREFIX}{name}: {DELIBERATE_SKIPS[name]}"


def _strict() -> bool:
    return bool(os.environ.get("P2PLAB_STRICT_SKIPS") or os.environ.get("CI"))


_undeclared: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(
        report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not reason.startswith(_PREFIX):
        _undeclared.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _undeclared and _strict() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _undeclared:
        return
    verdict = "FAIL the run" if _strict() else "would fail make test"
    terminalreporter.section(f"undeclared skips ({verdict})", red=True)
    for line in _undeclared:
        terminalreporter.line(line)
    terminalreporter.line("A skip needs a reason registered in tests/conftest.py "
                          "DELIBERATE_SKIPS; a missing artifact is an error naming its "
                          "make target (tests/support/artifacts.py).")

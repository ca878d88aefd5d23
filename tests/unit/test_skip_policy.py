"""The suite's skip policy (tests/conftest.py), run on a throwaway suite: an
undeclared skip fails the run under make test, a registered one does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUITE = '''
import pytest
from conftest import DELIBERATE_SKIPS, deliberate

DELIBERATE_SKIPS["demo"] = "shown by the policy's own test"


def test_runs() -> None:
    assert True


def test_deliberate() -> None:
    pytest.skip(deliberate("demo"))
'''


def _run(tmp: Path, extra: str, strict: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "tests" / "conftest.py", tmp / "conftest.py")
    (tmp / "test_suite.py").write_text(SUITE + extra)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "P2PLAB_STRICT_SKIPS")}
    if strict:
        env["P2PLAB_STRICT_SKIPS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_registered_skip_passes_under_make_test(tmp_path: Path) -> None:
    proc = _run(tmp_path, "", strict=True)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout


def test_undeclared_skip_fails_under_make_test(tmp_path: Path) -> None:
    extra = "\n\ndef test_lazy() -> None:\n    pytest.skip('not built')\n"
    proc = _run(tmp_path, extra, strict=True)
    assert proc.returncode == 1, proc.stdout
    assert "undeclared skips (FAIL the run)" in proc.stdout
    assert "test_suite.py::test_lazy: not built" in proc.stdout


def test_undeclared_skip_is_reported_outside_make_test(tmp_path: Path) -> None:
    extra = "\n\n@pytest.mark.skipif(True, reason='host lacks it')\ndef test_lazy() -> None:\n" \
            "    pass\n"
    proc = _run(tmp_path, extra, strict=False)
    assert proc.returncode == 0, proc.stdout
    assert "undeclared skips (would fail make test)" in proc.stdout
    assert "test_lazy: host lacks it" in proc.stdout

"""The malformed scenario corpus: each tests/scenarios/malformed/NAME.yaml must be
rejected with exit status 2, no traceback, and exactly the messages in NAME.expected
(``file:line:column: path: what``). UPDATE_GOLDEN=1 rewrites the expectations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.support.golden import check_golden

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "scenarios" / "malformed"
CASES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        assert case.with_suffix(".expected").exists(), f"{case.name} has no .expected"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_malformed_scenario(case: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    rel = case.relative_to(REPO)
    assert main(["validate", str(rel)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    check_golden(case.with_suffix(".expected"), err)
    for line in err.splitlines():
        assert line.startswith(f"error: {rel}:"), line


def test_validate_several_files_reports_all() -> None:
    cases = [CASES[0], CASES[1]]
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", *map(str, cases)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for case in cases:
        assert str(case) in proc.stderr


def test_run_refuses_an_invalid_scenario_before_booting(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(CORPUS / "bad-accel.yaml"),
         "--artifacts", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "machines[0].accel" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_valid_scenarios_validate(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((REPO / "scenarios").glob("*.yaml"))
    assert main(["validate", *map(str, files)]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(files)

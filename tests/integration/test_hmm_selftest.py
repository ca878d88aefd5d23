"""The kernel's HMM selftest in the guest, through the CLI, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli


def test_hmm_selftest_passes(no_leftovers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = no_leftovers / "results.json"
    junit = no_leftovers / "junit.xml"
    proc = run_cli("run", "scenarios/hmm-selftest.yaml", "--artifacts", str(no_leftovers),
                   "--json", str(out), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["status"] == "passed"
    (sc,) = data["scenarios"]
    metrics = sc["metrics"]
    assert metrics["passed"] > 0
    assert metrics["failed"] == 0
    assert metrics["skipped"] == 0  # hugetlbfs and DEVICE_COHERENT halves ran too
    with capsys.disabled():  # the count belongs in make test's output, not only in a log
        print(f"\nhmm-tests in the guest: passed={metrics['passed']} failed={metrics['failed']} "
              f"skipped={metrics['skipped']}; boot to agent ready "
              f"{sc['machines']['vm0']['boot_seconds']:.2f} s")
    assert sc["machines"]["vm0"]["boot_seconds"] > 0
    assert sc["machines"]["vm0"]["shutdown"] == "poweroff"
    assert junit.read_text().count("<testcase") == 3
    run_dir = Path(sc["run_dir"])
    assert (run_dir / "vm0" / "console.log").stat().st_size > 0
    assert "results in" in proc.stdout

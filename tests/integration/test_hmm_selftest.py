"""The kernel's HMM selftest in the guest, through the CLI, as a user runs it, on
every guest kernel that ``make test`` builds (``P2PLAB_TEST_KERNELS``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator import kernels

from .conftest import run_cli

TEST_KERNELS = os.environ.get("P2PLAB_TEST_KERNELS", "7.2 6.12 7.2-debug").split()

# hmm-tests cases that may skip, by kernel series, each with the reason.  Any
# other skip fails the test: a skip nobody explained hides a missing feature.
EXPECTED_SKIPS: dict[str, dict[str, str]] = {}


@pytest.mark.parametrize("kernel", TEST_KERNELS)
def test_hmm_selftest_passes(kernel: str, no_leftovers: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = no_leftovers / "results.json"
    junit = no_leftovers / "junit.xml"
    proc = run_cli("run", "scenarios/hmm-selftest.yaml", "--kernel", kernel,
                   "--artifacts", str(no_leftovers), "--json", str(out), "--junit", str(junit),
                   timeout=2400)
    data = json.loads(out.read_text()) if out.exists() else {}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert data["status"] == "passed"
    (sc,) = data["scenarios"]
    vm0 = sc["machines"]["vm0"]
    built = kernels.resolve(kernel)
    # The kernel that really booted is the one the build says it made.
    assert vm0["kernel"]["booted"] == built.info["release"], vm0["kernel"]
    assert vm0["kernel"]["name"] == kernel
    assert vm0["kernel_reports"] == []
    metrics = sc["metrics"]
    assert metrics["passed"] > 0
    assert metrics["failed"] == 0
    allowed = EXPECTED_SKIPS.get(built.info.get("series", ""), {})
    assert metrics["skipped"] == len(allowed), (
        f"hmm-tests skipped {metrics['skipped']} cases on {kernel}; explained: {sorted(allowed)}")
    with capsys.disabled():  # the counts belong in make test's output, not only in a log
        print(f"\nhmm-tests on {kernel} ({vm0['kernel']['booted']}): passed={metrics['passed']} "
              f"failed={metrics['failed']} skipped={metrics['skipped']}; boot to agent ready "
              f"{vm0['boot_seconds']:.2f} s wall, guest uptime {vm0['guest_uptime_at_ready']:.2f} s")
    assert vm0["boot_seconds"] > 0
    assert vm0["shutdown"] == "poweroff"
    assert junit.read_text().count("<testcase") == 3
    run_dir = Path(sc["run_dir"])
    assert (run_dir / "vm0" / "console.log").stat().st_size > 0
    assert "results in" in proc.stdout

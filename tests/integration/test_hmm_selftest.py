"""The kernel's HMM selftest in the guest, through the CLI, as a user runs it, on
every guest kernel that ``make test`` builds (``P2PLAB_TEST_KERNELS``).

The release kernels' runs start together (one TCG VM each); a debug kernel's
runs alone after them (see Runs).  Each kernel's test waits for its own.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import kernels

from .conftest import BackgroundRun, stop_runs

TEST_KERNELS = os.environ.get("P2PLAB_TEST_KERNELS", "7.2 6.12 7.2-debug").split()
RUN_TIMEOUT = 2400

# hmm-tests cases left out per kernel major by guest/tools/hmm-selftest.sh,
# where each reason is written.  Any other exclusion or skip fails the test: a
# case nobody explained hides a missing feature or a regression.
EXCLUDED: dict[str, set[str]] = {
    "6": set(),
    "7": {"hmm.hmm_device_coherent.benchmark_thp_migration",
          "hmm.hmm_device_coherent.migrate_anon_huge_err"},
}
# ... and on the debug flavour, cases whose fixed harness timeout it cannot meet.
EXCLUDED_DEBUG: dict[str, set[str]] = {
    "6": set(),
    "7": {"hmm.hmm_device_private.benchmark_thp_migration"},
}


class Runs:
    """The runs of this module: the release kernels' start together at once; a
    debug kernel's starts alone once they are done, because hmm-tests' harness
    gives each case a fixed timeout (30 s by default) that the debug kernel
    meets under TCG only with a host core to itself."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.started: dict[str, BackgroundRun] = {}
        for kernel in TEST_KERNELS:
            if not kernels.resolve(kernel).debug:
                self._start(kernel)

    def _start(self, kernel: str) -> BackgroundRun:
        d = self.tmp.mktemp(f"hmm-{kernel}")
        run = BackgroundRun.start(kernel, d, RUN_TIMEOUT, "run", "scenarios/hmm-selftest.yaml",
                                  "--kernel", kernel, "--artifacts", str(d),
                                  "--json", str(d / "results.json"),
                                  "--junit", str(d / "junit.xml"))
        self.started[kernel] = run
        return run

    def get(self, kernel: str) -> BackgroundRun:
        if kernel not in self.started:
            for other in list(self.started.values()):
                other.wait()
            self._start(kernel)
        return self.started[kernel]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    all_runs = Runs(tmp_path_factory)
    yield all_runs
    stop_runs(all_runs.started.values())


@pytest.mark.parametrize("kernel", TEST_KERNELS)
def test_hmm_selftest_passes(kernel: str, runs: Runs,
                             capsys: pytest.CaptureFixture[str]) -> None:
    run = runs.get(kernel)
    rc, out = run.wait()
    results = run.dir / "results.json"
    assert rc == 0, out[-4000:]
    data = json.loads(results.read_text())
    assert data["status"] == "passed"
    (sc,) = data["scenarios"]
    vm0 = sc["machines"]["vm0"]
    built = kernels.resolve(kernel)
    # The kernel that really booted is the one the build says it made.
    assert vm0["kernel"]["booted"] == built.info["release"], vm0["kernel"]
    assert vm0["kernel"]["name"] == kernel
    assert vm0["kernel_reports"] == []
    metrics = sc["metrics"]
    # All of them: every case the harness planned (all but the named exclusions) passed.
    assert metrics["planned"] > 0
    assert metrics["passed"] == metrics["planned"]
    assert metrics["failed"] == 0
    assert metrics["skipped"] == 0
    stdout = (Path(sc["run_dir"]) / "vm0" / "steps" / "01.stdout").read_text()
    excluded = set(re.findall(r"^# p2plab: excluded (\S+) on ", stdout, re.M))
    major = vm0["kernel"]["booted"].split(".")[0]
    assert excluded == EXCLUDED[major] | (EXCLUDED_DEBUG[major] if built.debug else set())
    assert metrics["excluded"] == len(excluded)
    with capsys.disabled():  # the counts belong in make test's output, not only in a log
        print(f"\nhmm-tests on {kernel} ({vm0['kernel']['booted']}): "
              f"passed={metrics['passed']}/{metrics['planned']} "
              f"failed={metrics['failed']} skipped={metrics['skipped']} "
              f"excluded={metrics['excluded']}; boot to agent ready "
              f"{vm0['boot_seconds']:.2f} s wall, guest uptime "
              f"{vm0['guest_uptime_at_ready']:.2f} s; scenario {sc['duration']:.0f} s")
    assert vm0["shutdown"] == "poweroff"
    assert (run.dir / "junit.xml").read_text().count("<testcase") == 3
    assert (Path(sc["run_dir"]) / "vm0" / "console.log").stat().st_size > 0
    assert (Path(sc["run_dir"]) / "vm0" / "dmesg.log").stat().st_size > 0
    assert "results in" in out

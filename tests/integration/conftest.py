"""Fixtures for tests that run the built QEMU and boot the built guest.

A missing guest is an error naming ``make build`` (never a skip): ``make test``
builds everything first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator import kernels
from tests.support.artifacts import require

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _guest_built() -> None:
    """Every integration test boots the default guest: without it, fail naming make build."""
    require(kernels.guest_dir() / kernels.DEFAULT / kernels.INITRD, "build")


def orchestrator_cmd(*args: str) -> list[str]:
    """The orchestrator CLI as a subprocess command (this interpreter, this checkout)."""
    return [sys.executable, "-m", "orchestrator.cli", *args]


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; force TCG-or-probe as the scenario says."""
    return subprocess.run(orchestrator_cmd(*args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def qemu_pids(run_root: Path) -> list[int]:
    """The QEMU pids recorded in every run directory under ``run_root``."""
    return [int(p.read_text()) for p in run_root.rglob("qemu.pid")]


@dataclass
class BackgroundRun:
    """One CLI run started in the background for one kernel, waited for on demand."""

    kernel: str
    dir: Path  # its --artifacts directory
    proc: subprocess.Popen[str]
    timeout: float
    result: tuple[int, str] | None = None

    @classmethod
    def start(cls, kernel: str, dir: Path, timeout: float, *args: str) -> BackgroundRun:
        proc = subprocess.Popen(orchestrator_cmd(*args), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        return cls(kernel, dir, proc, timeout)

    @classmethod
    def run_scenarios(cls, kernel: str, dir: Path, timeout: float, files: Iterable[str],
                      *extra: str) -> BackgroundRun:
        """``orchestrator run FILES --kernel KERNEL`` into ``dir``, results in results.json."""
        return cls.start(kernel, dir, timeout, "run", *files, "--kernel", kernel,
                         "--artifacts", str(dir), "--json", str(dir / "results.json"), *extra)

    def wait(self) -> tuple[int, str]:
        """Exit status and output (stdout and stderr together)."""
        if self.result is None:
            out, _ = self.proc.communicate(timeout=self.timeout)
            self.result = (self.proc.returncode, out)
        return self.result

    def passed_scenario(self, name: str) -> dict[str, Any]:
        """Scenario ``name``'s entry in results.json, once the run is over; it must have passed."""
        _, out = self.wait()
        data = json.loads((self.dir / "results.json").read_text())
        found = [sc for sc in data["scenarios"] if sc["name"] == name]
        assert found, f"{name} did not run on {self.kernel}"
        sc: dict[str, Any] = found[0]
        failed = [f"{s['name']}: {s.get('message')}" for s in sc["steps"]
                  if s["status"] != "passed"]
        assert sc["status"] == "passed", f"{sc['message']}\n{failed}\n{out[-3000:]}"
        assert not failed
        return sc


def stop_runs(runs: Iterable[BackgroundRun]) -> None:
    """Kill runs still going, then fail if any QEMU they started survived."""
    runs = list(runs)
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    alive = [pid for run in runs for pid in qemu_pids(run.dir) if pid_alive(pid)]
    assert not alive, f"QEMU processes survived: {alive}"


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[Path]:
    """An artifacts dir; after the test, every QEMU started under it must be gone."""
    yield tmp_path
    alive = [pid for pid in qemu_pids(tmp_path) if pid_alive(pid)]
    for pid in alive:  # clean up before failing, so one failure does not leak into others
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"QEMU processes survived: {alive}"

"""No QEMU survives: cancellation, an exception, SIGINT, SIGTERM, SIGKILL of the
orchestrator; and a crashed, hung or unbootable guest is reported with its console.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator import runner
from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import LoadedScenario, parse_scenario
from tests.support.poll import async_wait_until, wait_until, within

from .conftest import REPO, orchestrator_cmd, pid_alive, qemu_pids

SLEEPER = """
name: sleeper
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - exec: sleep 600
    timeout: 900
"""


def _scenario(tmp_path: Path, text: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _loaded(text: str) -> LoadedScenario:
    return parse_scenario(text, "test.yaml")



def _exec_started(artifacts: Path) -> bool:
    return any('"op":"exec"' in p.read_text() for p in artifacts.rglob("agent.log"))


def _start_sleeper(tmp_path: Path, artifacts: Path) -> subprocess.Popen[bytes]:
    scenario = _scenario(tmp_path, SLEEPER)
    proc = subprocess.Popen(
        orchestrator_cmd("run", str(scenario), "--artifacts", str(artifacts)),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _exec_started(artifacts), "the guest command to start", timeout=120,
               interval=0.1)
    return proc


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_tears_down(tmp_path: Path, no_leftovers: Path, sig: int, status: int) -> None:
    proc = _start_sleeper(tmp_path, no_leftovers)
    (pid,) = qemu_pids(no_leftovers)
    assert pid_alive(pid)
    proc.send_signal(sig)
    assert proc.wait(60) == status
    assert not pid_alive(pid)


def test_sigkill_of_the_orchestrator_takes_qemu_along(tmp_path: Path,
                                                       no_leftovers: Path) -> None:
    proc = _start_sleeper(tmp_path, no_leftovers)
    (pid,) = qemu_pids(no_leftovers)
    proc.kill()
    proc.wait(10)
    wait_until(lambda: not pid_alive(pid), "QEMU to die with its parent", timeout=10,
               interval=0.1)


async def test_cancellation_tears_down(no_leftovers: Path) -> None:
    task = asyncio.create_task(run_scenario(_loaded(SLEEPER), RunOptions(artifacts=no_leftovers)))
    await async_wait_until(lambda: _exec_started(no_leftovers) or task.done(),
                           "the long step to start", timeout=120)
    assert not task.done()
    (pid,) = qemu_pids(no_leftovers)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_alive(pid)


async def test_cancellation_during_boot(no_leftovers: Path) -> None:
    task = asyncio.create_task(run_scenario(_loaded(SLEEPER), RunOptions(artifacts=no_leftovers)))
    await async_wait_until(lambda: qemu_pids(no_leftovers), "QEMU to start", timeout=30,
                           interval=0.02)
    (pid,) = qemu_pids(no_leftovers)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not pid_alive(pid)


async def test_exception_tears_down(no_leftovers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in the orchestrator")

    monkeypatch.setattr(runner, "run_step", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await run_scenario(_loaded(SLEEPER), RunOptions(artifacts=no_leftovers))
    (pid,) = qemu_pids(no_leftovers)
    assert not pid_alive(pid)


async def test_guest_panic_is_reported_with_console(no_leftovers: Path) -> None:
    text = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - exec: sh -c 'echo c > /proc/sysrq-trigger'
  - exec: "true"
"""
    res = await run_scenario(_loaded(text), RunOptions(artifacts=no_leftovers))
    assert res.status == "error"
    first = res.steps[0]
    assert first.status == "error"
    # The panic is what happened, whatever QEMU's exit status: its line is the message.
    assert "vm0: guest crashed: " in first.message
    assert "Kernel panic - not syncing: sysrq triggered crash" in first.message
    assert "sysrq" in res.machines["vm0"].console_tail.lower()
    assert res.steps[1].status == "skipped"


async def test_hung_guest_is_detected(no_leftovers: Path) -> None:
    text = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - fault: stop
  - exec: "true"
    timeout: 2
"""
    async with within(60, "the hung guest to be detected (boot, then a 2 s step)"):
        res = await run_scenario(_loaded(text), RunOptions(artifacts=no_leftovers))
    step = res.steps[1]
    assert step.status == "error"
    assert "hung" in step.message
    assert res.machines["vm0"].shutdown in ("quit", "sigterm", "sigkill")


async def test_kernel_that_never_reaches_the_agent(no_leftovers: Path) -> None:
    text = """
machines:
  - {name: vm0, accel: tcg, memory: 256M, cmdline: "console=ttyS0 panic=-1 rdinit=/nonexistent"}
steps:
  - exec: "true"
"""
    res = await run_scenario(_loaded(text), RunOptions(artifacts=no_leftovers))
    assert res.status == "error"
    # QEMU exits with status 0 after the panic (panic=-1): reported as the panic.
    assert res.message.startswith("vm0: guest crashed: "), res.message
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in res.message
    assert "QEMU exited" not in res.message
    assert "Kernel panic" in res.machines["vm0"].console_tail


async def test_killing_a_vm_is_a_fault_and_later_steps_error(no_leftovers: Path) -> None:
    text = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - fault: kill
  - exec: "true"
"""
    res = await run_scenario(_loaded(text), RunOptions(artifacts=no_leftovers))
    assert res.steps[0].status == "passed"
    assert res.steps[1].status == "error"
    assert os.path.exists(res.machines["vm0"].artifacts["console"])


async def test_scenario_timeout(no_leftovers: Path) -> None:
    text = """
timeout: 8
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - exec: sleep 600
    timeout: 900
  - exec: "true"
"""
    async with within(30, "the 8 s scenario timeout to end the run"):
        res = await run_scenario(_loaded(text), RunOptions(artifacts=no_leftovers))
    assert res.status == "failed" and "scenario timed out after 8s" in res.message
    assert res.steps[0].status == "failed" and "during this step" in res.steps[0].message
    assert res.steps[1].status == "skipped"
    (pid,) = qemu_pids(no_leftovers)
    assert not pid_alive(pid)

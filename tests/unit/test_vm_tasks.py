"""A VM's background tasks live in its TaskGroup: a failing one fails the VM's
work with its error (not lost in a loose task), and shutdown leaves none behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.cmdline import Boot, VMPaths
from orchestrator.errors import VMError
from orchestrator.scenario import parse_scenario
from orchestrator.vm import VM, VMState


def _vm(tmp_path: Path) -> VM:
    machine = parse_scenario("machines: [{name: vm0}]\nsteps: [{exec: 'true'}]",
                             "s.yaml").scenario.machines[0]
    return VM(machine, Boot(Path("/q"), Path("/k"), None), VMPaths(tmp_path, tmp_path), "tcg")


async def test_a_failing_background_task_fails_what_the_vm_is_doing(tmp_path: Path) -> None:
    vm = _vm(tmp_path)
    assert vm.state is VMState.CREATED
    vm._supervisor = asyncio.create_task(vm._supervise())
    await vm._group_ready.wait()

    async def watcher() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("a bug in a watcher")

    async def idle() -> None:
        await asyncio.Event().wait()

    vm._spawn("watcher", watcher())
    vm._spawn("idle", idle())
    with pytest.raises(VMError, match="internal error: watcher failed: RuntimeError: "
                                      "a bug in a watcher"):
        await vm.guarded(asyncio.sleep(30))
    assert vm.background_error is not None
    # Stopping the group cancels and awaits what is left: nothing outlives the VM.
    vm._stop_background.set()
    await asyncio.wait_for(vm._supervisor, 5)
    assert all(t.done() for t in vm._background)


async def test_start_refuses_a_vm_that_is_not_new(tmp_path: Path) -> None:
    vm = _vm(tmp_path)
    vm._set_state(VMState.STOPPED)
    with pytest.raises(VMError, match="cannot start a VM that is stopped"):
        await vm.start()

"""QMP against the real built QEMU: commands, events, QOM counters, teardown paths."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import kernels, paths
from orchestrator.cmdline import Boot, VMPaths
from orchestrator.devices import read_counters
from orchestrator.errors import QMPCommandError
from orchestrator.scenario import parse_scenario
from orchestrator.vm import VM

from .conftest import pid_alive

GPU = """
machines:
  - name: vm0
    accel: tcg
    memory: 256M
    topology: [{kind: root-port, id: rp0}, {kind: root-port, id: rp1}]
    devices:
      - {driver: p2p-gpu, id: gpu0, bus: rp0, props: {vram-size: 64M, bar-size: 64M,
                                                      rebar-min: 64M}}
steps: [{exec: "true"}]
"""


@contextlib.asynccontextmanager
async def started(tmp_path: Path, text: str = GPU) -> AsyncIterator[VM]:
    machine = parse_scenario(text, "t.yaml").scenario.machines[0]
    kernel = kernels.resolve(None)
    boot = Boot(paths.default_qemu(), kernel.image, kernel.initrd)
    vm = VM(machine, boot, VMPaths(tmp_path / "vm0", tmp_path / "vm0"), "tcg")
    try:
        await vm.start()
        yield vm
    finally:
        await vm.shutdown()
        assert vm.proc is not None and not pid_alive(vm.proc.pid)


async def test_qmp_commands_and_events(no_leftovers: Path) -> None:
    async with started(no_leftovers) as vm:
        status = await vm.execute("query-status")
        assert status["status"] in ("running", "prelaunch")
        mark = vm.event_mark()
        await vm.execute("stop")
        await vm.wait_event("STOP", {}, mark)
        await vm.execute("cont")
        await vm.wait_event("RESUME", {}, mark)
        with pytest.raises(QMPCommandError):
            await vm.execute("no-such-command")
        log = (no_leftovers / "vm0" / "qmp.log").read_text()
        assert '"STOP"' in log and "query-status" in log


async def test_counters_and_qom_set(no_leftovers: Path) -> None:
    async with started(no_leftovers) as vm:
        counters = await read_counters(vm)
        assert counters["gpu0"]["copies"] == 0
        await vm.execute("qom-set", {"path": "/machine/peripheral/gpu0",
                                     "property": "fail-next-copy", "value": True})
        value = await vm.execute("qom-get", {"path": "/machine/peripheral/gpu0",
                                             "property": "fail-next-copy"})
        assert value is True


async def test_shutdown_of_a_ready_guest_is_a_poweroff(no_leftovers: Path) -> None:
    async with started(no_leftovers) as vm:
        await vm.wait_ready()
    assert vm.ended_by == "poweroff"
    assert vm.proc is not None and vm.proc.returncode == 0


async def test_shutdown_without_agent_uses_quit(no_leftovers: Path) -> None:
    async with started(no_leftovers) as vm:
        pass
    # No agent to ask for a poweroff yet: QEMU is told to quit, and exits 0.
    assert vm.ended_by == "quit"
    assert vm.proc is not None and vm.proc.returncode == 0


async def test_shutdown_of_a_stopped_guest(no_leftovers: Path) -> None:
    async with started(no_leftovers) as vm:
        await vm.wait_ready()
        await vm.execute("stop")
    # A paused guest cannot power itself off: shutdown sees that and quits instead.
    assert vm.ended_by == "quit"
    assert vm.proc is not None and vm.proc.returncode == 0

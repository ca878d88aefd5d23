"""Console watching (crash patterns, waits, tail) and the plain progress lines."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from orchestrator.console import ConsoleWatcher
from orchestrator.progress import Progress
from orchestrator.results import MachineResult, ScenarioResult, StepResult


@pytest.mark.parametrize("line", [
    "[    3.1] Kernel panic - not syncing: sysrq triggered crash",
    "[    2.0] Oops: general protection fault, probably for non-canonical address",
    "[    2.0] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    "[   30.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [hmm-tests:99]",
])
def test_crash_lines_are_caught(tmp_path: Path, line: str) -> None:
    log = tmp_path / "console.log"
    log.write_text("booting\n[    1.0] normal line\n")
    watcher = ConsoleWatcher(log)
    watcher.read_new()
    assert not watcher.crashed.is_set()
    with log.open("a") as f:
        f.write(line + "\nmore\n")
    watcher.read_new()
    assert watcher.crashed.is_set()
    assert watcher.crash_line == line
    assert watcher.tail(2) == f"{line}\nmore"


LOCKDEP = """\
[   12.0] ======================================================
[   12.0] WARNING: possible circular locking dependency detected
[   12.0] 7.2.13 #1 Not tainted
[   12.0] ------------------------------------------------------
[   12.0] modprobe/91 is trying to acquire lock:
[   12.0] ffff8880 (&a->lock){+.+.}-{4:4}, at: p2pgpu_probe+0x1/0x2
"""
KASAN = """\
[   13.0] ==================================================================
[   13.0] BUG: KASAN: slab-use-after-free in dmirror_fops_release+0x1/0x2
[   13.0] Read of size 8 at addr ffff888 by task hmm-tests/99
[   13.0] ==================================================================
[   13.1] after the report
"""


@pytest.mark.parametrize("line", [
    "[   12.0] WARNING: possible circular locking dependency detected",
    "[   12.0] WARNING: CPU: 0 PID: 91 at drivers/pci/p2pdma.c:100 pci_p2pdma_add_resource+0x1",
    "[   12.0] UBSAN: array-index-out-of-bounds in lib/test_hmm.c:100:5",
    "[   12.0] ODEBUG: free active (active state 0) object: ffff888 object type: timer_list",
    "[   12.0] kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
])
def test_kernel_reports_fail_too(tmp_path: Path, line: str) -> None:
    log = tmp_path / "console.log"
    log.write_text(f"[ 1.0] booting\n{line}\n")
    watcher = ConsoleWatcher(log)
    watcher.read_new()
    assert not watcher.crashed.is_set()
    assert watcher.report_lines == [line]


def test_reports_are_kept_whole(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("[ 1.0] booting\n" + LOCKDEP + KASAN)
    watcher = ConsoleWatcher(log)
    (lockdep, why1), (kasan, why2) = watcher.reports()
    assert why1 is None and why2 is None
    assert lockdep.splitlines()[0].endswith("=" * 54)
    assert "p2pgpu_probe" in lockdep and "KASAN" not in lockdep
    assert kasan.splitlines()[1].endswith("BUG: KASAN: slab-use-after-free in "
                                          "dmirror_fops_release+0x1/0x2")
    assert kasan.splitlines()[-1].endswith("=" * 66)
    assert watcher.report_lines[0].endswith("possible circular locking dependency detected")
    assert watcher.report_lines[1].endswith("BUG: KASAN: slab-use-after-free in "
                                            "dmirror_fops_release+0x1/0x2")


def test_a_panic_is_a_crash_not_a_report(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("[ 3.1] Kernel panic - not syncing: Attempted to kill init!\n")
    watcher = ConsoleWatcher(log)
    watcher.read_new()
    assert watcher.crashed.is_set() and not watcher.report_lines
    assert watcher.reports() == [("[ 3.1] Kernel panic - not syncing: Attempted to kill init!",
                                  None)]


def test_a_known_report_is_recorded_not_failed(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    warn = ("[ 42.0] ------------[ cut here ]------------\n"
            "[ 42.0] Conflicting mapping in same section\n"
            "[ 42.0] WARNING: mm/memremap.c:158 at memremap_pages+0x518/0x5e0, CPU#0: x/1\n")
    log.write_text("[ 1.0] booting\n" + warn[:60])
    watcher = ConsoleWatcher(log, known=[(r"Conflicting mapping in same section", "upstream")])
    watcher.read_new()
    with log.open("a") as f:
        f.write(warn[60:] + LOCKDEP)
    watcher.read_new()
    assert watcher.known_seen == [{"line": warn.splitlines()[2], "reason": "upstream"}]
    assert len(watcher.report_lines) == 1 and "circular locking" in watcher.report_lines[0]
    (known, why), (_, why2) = watcher.reports()
    assert why == "upstream" and "memremap_pages" in known and why2 is None


def test_a_pattern_split_across_reads_is_caught(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("[ 1.0] Kernel pan")
    watcher = ConsoleWatcher(log)
    watcher.read_new()
    with log.open("a") as f:
        f.write("ic - not syncing: x\n")
    watcher.read_new()
    assert watcher.crashed.is_set()


def test_ordinary_warnings_are_not_crashes(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("[ 1.0] pci 0000:02:00.0: BAR 2: failed to assign\n"
                   "[ 1.1] ACPI BIOS Error (bug): something\n")
    watcher = ConsoleWatcher(log)
    watcher.read_new()
    assert not watcher.crashed.is_set()


async def test_wait_for_sees_later_output(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("")
    watcher = ConsoleWatcher(log, poll=0.01)
    start = watcher.mark()

    async def later() -> None:
        await asyncio.sleep(0.05)
        with log.open("a") as f:
            f.write("p2plab-init: userspace up at 1.50s\n")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(later())
        m = await asyncio.wait_for(watcher.wait_for(r"up at ([0-9.]+)s", start), 5)
    assert m.group(1) == "1.50"


def test_plain_progress_lines() -> None:
    out = io.StringIO()
    p = Progress(out=out, live=False)
    p.phase("s", "booting vm0")
    p.step("s", StepResult(1, "tests", "exec", "vm0", "failed", 2.0, "exit status 1\nmore"))
    res = ScenarioResult("s", "s.yaml", "failed", 3.0, "/runs/s", "step 1 failed",
                         machines={"vm0": MachineResult("tcg", "", 2.25)})
    p.done(res)
    assert out.getvalue().splitlines() == [
        "[s] booting vm0",
        "[s] FAIL   1 tests (2.0s) - exit status 1",
        "[s] FAILED in 3.0s; boot to agent ready: vm0 2.25s: step 1 failed",
        "[s] results: /runs/s/results.json",
    ]


def test_disabled_progress_is_silent() -> None:
    out = io.StringIO()
    p = Progress(out=out, live=False, enabled=False)
    p.phase("s", "booting")
    assert out.getvalue() == ""

"""The KVM-or-TCG decision, with fake probes (nothing boots here)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.accel import ProbeOutcome, interpret_probe, resolve_accel, run_probe
from tests.support.poll import within

QEMU = Path("/fake/qemu")
KERNEL = Path("/fake/bzImage")

PANIC = (
    "[    0.9] Run /nonexistent as init process\n"
    "[    1.0] Kernel panic - not syncing: No working init found.\n"
)


class FakeProber:
    def __init__(self, outcome: ProbeOutcome) -> None:
        self.outcome = outcome
        self.calls = 0

    async def __call__(self, qemu: Path, kernel: Path) -> ProbeOutcome:
        self.calls += 1
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "works"),
    [
        (ProbeOutcome(True, PANIC), True),
        (ProbeOutcome(False, PANIC, "killed"), False),  # reached init but QEMU hung
        (ProbeOutcome(True, "kvm_buf_set_msrs: Assertion failed"), False),
        (ProbeOutcome(False, "", "still running after 8s"), False),  # decompressor death
        (ProbeOutcome(True, ""), False),
    ],
)
def test_interpret_probe(outcome: ProbeOutcome, works: bool) -> None:
    assert interpret_probe(outcome) is works


async def test_explicit_accel_never_probes(tmp_path: Path) -> None:
    prober = FakeProber(ProbeOutcome(True, PANIC))
    for wanted in ("tcg", "kvm"):
        choice = await resolve_accel(wanted, QEMU, KERNEL, tmp_path / "c.json", prober=prober)
        assert choice.accel == wanted
    assert prober.calls == 0


async def test_no_kvm_device_is_tcg_without_probe(tmp_path: Path) -> None:
    prober = FakeProber(ProbeOutcome(True, PANIC))
    choice = await resolve_accel(
        "auto", QEMU, KERNEL, tmp_path / "c.json", usable=lambda: False, prober=prober
    )
    assert choice.accel == "tcg"
    assert prober.calls == 0
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(("outcome", "accel"), [
    (ProbeOutcome(True, PANIC), "kvm"),
    (ProbeOutcome(False, "", "still running after 8s, killed"), "tcg"),
])
async def test_probe_result_is_cached_per_boot(tmp_path: Path, outcome: ProbeOutcome,
                                               accel: str) -> None:
    cache = tmp_path / "sub" / "kvm-probe.json"
    prober = FakeProber(outcome)

    async def choose(boot: str) -> str:
        c = await resolve_accel("auto", QEMU, KERNEL, cache, usable=lambda: True,
                                prober=prober, host_boot=lambda: boot)
        return c.accel

    assert await choose("boot-1") == accel
    assert await choose("boot-1") == accel
    assert prober.calls == 1
    assert json.loads(cache.read_text())["accel"] == accel
    assert await choose("boot-2") == accel  # a new host boot probes again
    assert prober.calls == 2


async def test_corrupt_cache_probes_again(tmp_path: Path) -> None:
    cache = tmp_path / "kvm-probe.json"
    cache.write_text("{not json")
    prober = FakeProber(ProbeOutcome(True, PANIC))
    c = await resolve_accel("auto", QEMU, KERNEL, cache, usable=lambda: True, prober=prober)
    assert c.accel == "kvm" and prober.calls == 1


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_run_probe_kills_a_hanging_qemu(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    fake = _script(tmp_path / "qemu", f'echo $$ > {pidfile}\necho "Decompressing"\nexec sleep 60\n')
    async with within(20, "the 0.5 s probe to kill a QEMU that never finishes"):
        outcome = await run_probe(fake, KERNEL, timeout=0.5)
    assert not outcome.exited and "Decompressing" in outcome.console
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_run_probe_reports_a_quick_exit(tmp_path: Path) -> None:
    fake = _script(tmp_path / "qemu", f'printf "%s" "{PANIC}"\nexit 0\n')
    outcome = await run_probe(fake, KERNEL, timeout=5)
    assert outcome.exited and interpret_probe(outcome)

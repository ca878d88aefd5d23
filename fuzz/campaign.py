"""Campaigns: seeded runs, crash reproducers, replay and minimisation."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from fuzz import gen_odp_nic, gen_p2p_gpu
from fuzz.target import Crash, Target
from fuzz.trace import Trace

GENERATORS: dict[str, ModuleType] = {"p2p-gpu": gen_p2p_gpu, "odp-nic": gen_odp_nic}
CHUNK = 2000          # lines generated and sent at a time
RESTART_EVERY = 50_000  # lines per QEMU: a fresh device now and then reaches set-up paths


@dataclass
class Report:
    """What a campaign did: per target, operations, seconds, crashes (by signature)."""

    target: str
    seed: int
    ops: int = 0
    seconds: float = 0.0
    qemu_runs: int = 0
    crashes: dict[str, str] = field(default_factory=dict)   # signature -> reproducer path
    counters: dict[str, int] = field(default_factory=dict)  # device counters, summed


def run_campaign(target: str, seed: int, ops: int, qemu: Path, out: Path,
                 seconds: float | None = None, minimize: bool = True,
                 progress: Callable[[Report], None] | None = None) -> Report:
    """Fuzz ``target`` with ``ops`` lines from ``seed`` (or until ``seconds``)."""
    gen = GENERATORS[target]
    rep = Report(target, seed)
    rng = random.Random(seed)
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    while rep.ops < ops and (seconds is None or time.monotonic() - t0 < seconds):
        run_seed = rng.getrandbits(32)
        work = Path(tempfile.mkdtemp(prefix=f"{target}-", dir=out))
        trace = Trace(target, run_seed)
        tgt = Target(gen.SPEC, qemu, work)
        crash: Crash | None = None
        try:
            tgt.start(record=trace.setup)
            assert tgt.qt is not None
            gen.setup(tgt.qt)
            tgt.qt.record = None
            gen.set_setup(trace.setup)
            run_rng = random.Random(run_seed)
            budget = min(RESTART_EVERY, ops - rep.ops)
            sent = 0
            while sent < budget and crash is None:
                lines = gen.ops(run_rng, min(CHUNK, budget - sent))
                crash = tgt.run(lines, base=len(trace.setup) + len(trace.ops))
                trace.ops += lines
                sent += len(lines)
            rep.ops += sent
            if crash is None:
                _add_counters(rep, tgt, gen)
        finally:
            tgt.close()
            rep.qemu_runs += 1
        if crash is not None:
            _save_crash(rep, trace, crash, qemu, out, minimize)
        shutil.rmtree(work, ignore_errors=True)
        rep.seconds = time.monotonic() - t0
        if progress is not None:
            progress(rep)
    rep.seconds = time.monotonic() - t0
    return rep


def _add_counters(rep: Report, tgt: Target, gen: ModuleType) -> None:
    assert tgt.qt is not None
    for name in gen.COUNTERS:
        try:
            val = int(tgt.qt.qom_get(gen.QOM, name))
        except Exception:       # the device may have been reset away: not a crash
            continue
        rep.counters[name] = rep.counters.get(name, 0) + val


def _save_crash(rep: Report, trace: Trace, crash: Crash, qemu: Path, out: Path,
                minimize: bool) -> None:
    sig = crash.signature()
    if sig in rep.crashes:
        return
    # Lines after the one whose answer was lost cannot matter.
    keep = crash.index + 1 - len(trace.setup)
    trace.ops = trace.ops[:max(keep, 0)]
    trace.note = sig
    path = out / f"crash-{rep.target}-{len(rep.crashes)}.trace"
    trace.save(path)
    (path.with_suffix(".log")).write_text(crash.detail)
    if minimize:
        small = minimize_trace(trace, qemu, sig)
        small.save(path.with_suffix(".min.trace"))
    rep.crashes[sig] = str(path)


def replay(trace: Trace, qemu: Path, workdir: Path | None = None) -> Crash | None:
    """Run a saved trace against a fresh QEMU; the Crash it reproduces, or None."""
    work = workdir or Path(tempfile.mkdtemp(prefix="replay-"))
    tgt = Target(GENERATORS[trace.target].SPEC, qemu, work)
    try:
        tgt.start()
        return tgt.run(trace.setup + trace.ops)
    finally:
        tgt.close()
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def minimize_trace(trace: Trace, qemu: Path, signature: str, max_runs: int = 300) -> Trace:
    """Delta debugging over the fuzz lines (the set-up stays whole): the smallest
    subsequence found, within ``max_runs`` replays, that still crashes the same way."""
    ops = list(trace.ops)
    runs = 0

    def crashes(candidate: list[str]) -> bool:
        nonlocal runs
        runs += 1
        c = replay(Trace(trace.target, trace.seed, trace.setup, candidate), qemu)
        return c is not None and c.signature() == signature

    n = 2
    while len(ops) >= 2 and runs < max_runs:
        size = max(len(ops) // n, 1)
        reduced = False
        for start in range(0, len(ops), size):
            candidate = ops[:start] + ops[start + size:]
            if runs >= max_runs:
                break
            if crashes(candidate):
                ops = candidate
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if size == 1:
                break
            n = min(n * 2, len(ops))
    return Trace(trace.target, trace.seed, trace.setup, ops,
                 f"{signature} (minimised in {runs} replays)")

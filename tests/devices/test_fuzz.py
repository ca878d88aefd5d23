"""The device fuzzer (python -m fuzz) in make test: a short fixed-seed smoke of
both device models against the normal build, and the crash pipeline itself
(capture, reproducer, replay, minimisation) on a trace that stops QEMU."""

from __future__ import annotations

import json
import random
from pathlib import Path

from fuzz import gen_p2p_gpu
from fuzz.campaign import minimize_trace, replay, run_campaign
from fuzz.trace import Trace
from tests.support.qtest import QEMU

SMOKE_OPS = 30_000
SMOKE_SEED = 20261207


def test_fuzz_smoke_p2p_gpu(tmp_path: Path) -> None:
    rep = run_campaign("p2p-gpu", SMOKE_SEED, SMOKE_OPS, QEMU, tmp_path)
    assert rep.crashes == {}, rep.crashes
    assert rep.ops >= SMOKE_OPS
    # The input reached the engine, the aperture, ReBAR and the error paths.
    c = rep.counters
    assert c["copies"] > 100 and c["copy-errors"] > 100, c
    assert c["aperture-maps"] > 10 and c["aperture-map-failures"] > 10, c
    assert c["resizes"] > 0 and c["bad-register-accesses"] > 0, c


def test_fuzz_smoke_odp_nic(tmp_path: Path) -> None:
    rep = run_campaign("odp-nic", SMOKE_SEED, SMOKE_OPS, QEMU, tmp_path)
    assert rep.crashes == {}, rep.crashes
    c = rep.counters
    assert c["commands"] > 100 and c["wrs"] > 50 and c["wr-errors"] > 0, c
    assert c["faults-raised"] > 0 and c["link-rx"] > 0 and c["link-dropped"] > 0, c


def test_a_crash_is_saved_replayed_and_minimised(tmp_path: Path) -> None:
    """QEMU stopped mid-trace stands in for a crash: the oracle sees it, the
    reproducer replays it, and minimisation finds the one line that matters."""
    rng = random.Random(7)
    harmless = gen_p2p_gpu.ops(rng, 400)
    harmless = [line for line in harmless if not line.startswith(("qmp", "frame"))]
    quit_line = "qmp " + json.dumps({"execute": "quit", "arguments": {}})
    trace = Trace("p2p-gpu", 7, [], [*harmless[:200], quit_line, *harmless[200:]])
    crash = replay(trace, QEMU)
    assert crash is not None and crash.kind == "exit 0", crash
    path = tmp_path / "t.trace"
    trace.save(path)
    again = replay(Trace.load(path), QEMU)
    assert again is not None and again.signature() == crash.signature()
    small = minimize_trace(Trace.load(path), QEMU, crash.signature())
    assert small.ops == [quit_line]
    assert replay(Trace("p2p-gpu", 7, [], harmless), QEMU) is None

"""odp-nic loopback benchmark: RDMA WRITE throughput and ODP fault round trip.

Runs QEMU under qtest (no guest kernel) with one odp-nic, and prints JSON:

- ``write``: loopback RDMA WRITE throughput per message size (wall clock from
  the doorbell to the completion seen by the poller), next to host memcpy
  measured in the same run on buffers of the same size;
- ``fault``: the fault-to-resume round trip for one 4 KiB page of an ODP
  region: WR posted -> fault event seen -> translations written (UPDATE_XLT)
  -> RESUME -> completion seen.  Compared with the ~215 us p50 per 4 KiB
  network page fault that Lesokhin et al. measured on ConnectX-4 (ASPLOS 2017).

The driver side is Python over the qtest socket, so every register access and
memory poll is a socket round trip: the figures are an upper bound on what a
guest driver would see from the device model itself.  The fault result also
counts the round trips and their unit cost, and estimates the device's share.

Usage: python bench/odp_nic_loopback.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _baseline import host_memcpy_gbps

from tests.support import odp_nic as o
from tests.support.odp_nic import OdpNic, Wqe
from tests.support.qtest import QTest

PAPER_P50_US = 215.0
PAPER_MAX_US = 464.0


def bench_write(nic: OdpNic, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    cq = nic.create_cq(0, log_size=10)
    qp = nic.create_qp(0, cq, sq_log=8)
    big = max(sizes)
    src, dst = nic.buffer(big), nic.buffer(big)
    nic.qt.memset(src.iova, big, 0xA5)
    assert nic.create_mr(1, src.va, big, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, big, xlt=dst.xlt()) == o.ST_OK
    out = []
    for size in sizes:
        # Enough WRs in one batch that queueing dominates the poll overhead.
        batch = max(1, min(64, (64 << 20) // size))
        times = []
        for _ in range(reps):
            wqes = [Wqe(o.WR_WRITE, wr_id=i, sges=[(1, src.va, size)], rkey=2,
                        remote_va=dst.va) for i in range(batch)]
            t0 = time.perf_counter()
            nic.post_send(qp, *wqes)
            got = nic.poll_cq(cq, batch, timeout=120)
            times.append(time.perf_counter() - t0)
            if any(c.status != o.WC_SUCCESS for c in got):
                raise RuntimeError(f"WRITE of {size} failed: {got[0]}")
        best = min(times)
        out.append({
            "size": size, "batch": batch,
            "device_gbps": round(size * batch / best / 1e9, 3),
            "us_per_wr": round(best / batch * 1e6, 2),
            "host_memcpy_gbps": round(host_memcpy_gbps(size, 5), 3),
        })
    if nic.qt.memread(dst.iova + big - 64, 64) != b"\xa5" * 64:
        raise RuntimeError("loopback WRITE did not move the bytes")
    return out


def pct(vals: list[float], p: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def qtest_round_trip_us(nic: OdpNic, n: int = 2000) -> float:
    """Cost of one register read over qtest: the Python driver's overhead unit."""
    t0 = time.perf_counter()
    for _ in range(n):
        nic.rd(o.REG_MAGIC)
    return (time.perf_counter() - t0) / n * 1e6


def bench_fault(nic: OdpNic, rounds: int) -> dict[str, Any]:
    cq = nic.create_cq(1, log_size=8)
    qp = nic.create_qp(1, cq)
    src, dst = nic.buffer(o.PAGE), nic.buffer(o.PAGE)
    assert nic.create_mr(3, src.va, o.PAGE, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(4, dst.va, o.PAGE, mode=o.MR_ODP) == o.ST_OK
    # The translation list lives in driver memory, written once (as a driver's would).
    xlt_cmd = struct.pack("<IIQQ", 4, 1, 0, nic.write_list(dst.xlt()))
    total, to_event, resolve, trips = [], [], [], []
    for i in range(rounds):
        n0 = nic.qt.ncmds
        t0 = time.perf_counter()
        nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=i, sges=[(3, src.va, o.PAGE)], rkey=4,
                              remote_va=dst.va))
        [ev] = nic.poll_eq()
        t1 = time.perf_counter()
        if ev.type != o.EV_PAGE_FAULT or ev.key != 4:
            raise RuntimeError(f"unexpected event {ev}")
        if nic.cmd(o.CMD_UPDATE_XLT, xlt_cmd)[0] != o.ST_OK or nic.resume(1) != o.ST_OK:
            raise RuntimeError("fault resolution failed")
        [c] = nic.poll_cq(cq)
        t2 = time.perf_counter()
        if c.status != o.WC_SUCCESS:
            raise RuntimeError(f"faulted WRITE completed with {c.status}")
        trips.append(nic.qt.ncmds - n0)
        total.append((t2 - t0) * 1e6)
        to_event.append((t1 - t0) * 1e6)
        resolve.append((t2 - t1) * 1e6)
        # Make the next round fault again.
        if nic.invalidate(4, dst.va, o.PAGE) != o.ST_OK:
            raise RuntimeError("invalidate failed")
    counters = nic.counters()
    p50 = statistics.median(total)
    rt_us = qtest_round_trip_us(nic)
    trips_p50 = statistics.median(trips)
    return {
        "rounds": rounds,
        "round_trip_us": {"p50": round(p50, 1), "p99": round(pct(total, 99), 1),
                          "max": round(max(total), 1), "min": round(min(total), 1)},
        "post_to_event_us_p50": round(statistics.median(to_event), 1),
        "event_to_completion_us_p50": round(statistics.median(resolve), 1),
        "qtest_round_trips_p50": trips_p50,
        "qtest_round_trip_us": round(rt_us, 1),
        "device_share_us_p50_est": round(max(0.0, p50 - trips_p50 * rt_us), 1),
        "paper_p50_us": PAPER_P50_US, "paper_max_us": PAPER_MAX_US,
        "ratio_to_paper_p50": round(p50 / PAPER_P50_US, 2),
        "faults_raised": counters["faults-raised"],
        "faults_resolved": counters["faults-resolved"],
    }


TRACE_RE = re.compile(r"^\d+@(\d+)\.(\d+):(odp_nic_\w+) qp (0x[0-9a-f]+|\d+)")


def device_side(log: Path, qpn: int) -> dict[str, float]:
    """Device-internal latencies from timestamped trace events of one QP.

    detect: WQE fetched -> fault event raised; retry: RESUME executed ->
    completion written.  Everything else in the round trip is the driver.
    """
    detect, retry = [], []
    start = resume = None
    for line in log.read_text(errors="replace").splitlines():
        m = TRACE_RE.match(line)
        if not m or int(m.group(4), 0) != qpn:
            continue
        ts = int(m.group(1)) * 1e6 + int(m.group(2))
        ev = m.group(3)
        if ev == "odp_nic_wr_start":
            start = ts
        elif ev == "odp_nic_fault" and start is not None:
            detect.append(ts - start)
            start = None
        elif ev == "odp_nic_resume":
            resume = ts
        elif ev == "odp_nic_wr_done" and resume is not None:
            retry.append(ts - resume)
            resume = None
    if not detect or not retry:
        return {}
    return {"detect_us_p50": round(statistics.median(detect), 1),
            "resume_to_completion_us_p50": round(statistics.median(retry), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and rounds")
    args = ap.parse_args()
    sizes = [4096, 65536, 1 << 20, 16 << 20] if args.quick else \
        [4096, 65536, 1 << 20, 16 << 20, 64 << 20]
    with tempfile.TemporaryDirectory(prefix="odpbench") as tmp:
        trace = [a for e in ("wr_start", "fault", "resume", "wr_done")
                 for a in ("-trace", f"odp_nic_{e}")]
        qt = QTest(Path(tmp), memory="1G",
                   extra_args=["-device", "odp-nic,id=nic,addr=05.0", "-msg", "timestamp=on",
                               *trace])
        with qt:
            nic = OdpNic(qt, mem_size=0x3000_0000).setup()
            nic.create_eq(log_size=8)
            write = bench_write(nic, sizes, 2 if args.quick else 3)
            fault = bench_fault(nic, 50 if args.quick else 300)
        fault["device_side"] = device_side(qt.log_path, 1)
    print(json.dumps({"device": "odp-nic", "write": write, "fault": fault}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

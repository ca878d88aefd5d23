"""Copy-engine throughput of the p2p-gpu model against host memcpy, as JSON.

One QEMU (q35, qtest accelerator, no guest) holds two p2p-gpu devices.  The
benchmark drives gpu0's copy engine with 64 MiB descriptors:

- host_to_vram / vram_to_host: guest RAM <-> VRAM through pci_dma_*;
- vram_to_vram: inside VRAM;
- peer_to_bar2: gpu0 VRAM -> gpu1's BAR2 (direct mode), i.e. one device's
  DMA landing in another device's aperture: the peer-to-peer path;
- peer_to_windows: the same into 2 MiB aperture windows of gpu1;

and measures host memcpy (ctypes.memmove) of the same size in the same run.
Times run from the doorbell write to the HEAD register catching up with the
tail (polled over qtest), so they include one bottom half per 64 MiB.

Usage: .venv/bin/python bench/p2p_gpu_copy.py [--size-mib N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _baseline import host_memcpy_gbps

from tests.support.p2p_gpu import BUF_ADDR, GPU, Desc, hw
from tests.support.qtest import QTest

MiB = 1 << 20
DESC_BYTES = 64 * MiB          # P2P_GPU_CE_MAX_LEN
BAR2_GPU0 = 0x8_0000_0000
BAR2_GPU1 = 0x8_4000_0000
BAR0_GPU1 = 0xFE10_0000


def engine_gbps(gpu: GPU, make: Callable[[int], Desc], total: int, reps: int) -> float:
    n = total // DESC_BYTES
    descs = [make(i) for i in range(n)]
    gpu.run(descs)                      # warm-up: first touch of VRAM pages
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        results = gpu.run(descs)
        times.append(time.perf_counter() - t0)
        bad = [s for s, _ in results if s != hw("DESC_DONE")]
        if bad:
            raise RuntimeError(f"copy failed: {bad[0]:#x}")
    return total / min(times) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256, help="bytes per measurement (MiB)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    total = max(DESC_BYTES, args.size_mib * MiB // DESC_BYTES * DESC_BYTES)
    vram = 1 << 30
    dev = f"vram-size={vram},rebar-min=256M,aperture-granule=2M"
    with tempfile.TemporaryDirectory(prefix="p2p-gpu-bench-") as tmp:
        qt = QTest(Path(tmp), memory=f"{total // MiB + 128}M", extra_args=[
            "-device", f"p2p-gpu,id=gpu0,addr=04.0,bar-size=256M,{dev}",
            "-device", f"p2p-gpu,id=gpu1,addr=05.0,bar-size={vram},{dev}",
        ])
        with qt:
            g0 = GPU(qt, qt.pci(0, 4), "/machine/peripheral/gpu0").setup(bar2=BAR2_GPU0)
            g1 = GPU(qt, qt.pci(0, 5), "/machine/peripheral/gpu1").setup(BAR0_GPU1, BAR2_GPU1)
            g0.ring_init(size=64)
            h2v, v2h, v2v = hw("OP_HOST_TO_VRAM"), hw("OP_VRAM_TO_HOST"), hw("OP_VRAM_TO_VRAM")
            span = DESC_BYTES
            qt.memset(BUF_ADDR, total, 0x5A)    # no zero-page reads
            res: dict[str, float] = {}
            res["host_to_vram"] = engine_gbps(
                g0, lambda i: Desc(h2v, span, i * span, BUF_ADDR + i * span), total, args.reps)
            res["vram_to_host"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BUF_ADDR + i * span), total, args.reps)
            res["vram_to_vram"] = engine_gbps(
                g0, lambda i: Desc(v2v, span, 512 * MiB + i * span, i * span), total, args.reps)
            g1.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
            res["peer_to_bar2"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BAR2_GPU1 + i * span), total, args.reps)
            g1.wr(hw("REG_APER_CTRL"), 0)
            g1.wr(hw("REG_APER_CMD"), hw("APER_CMD_UNMAP_ALL"))
            for slot in range(total // (2 * MiB)):
                st, _, _ = g1.map(slot * 2 * MiB, slot)
                if st != hw("APER_OK"):
                    raise RuntimeError(f"aperture map failed: {st}")
            res["peer_to_windows"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BAR2_GPU1 + i * span), total, args.reps)
            unmapped = g1.counter("aperture-unmapped-accesses")
    memcpy = host_memcpy_gbps(DESC_BYTES, args.reps * 4, DESC_BYTES)
    memcpy_1m = host_memcpy_gbps(DESC_BYTES, args.reps * 4, MiB)
    out = {
        "benchmark": "p2p_gpu_copy",
        "bytes_per_run": total,
        "descriptor_bytes": DESC_BYTES,
        "reps": args.reps,
        "unit": "GB/s (1e9 bytes per second), best of reps",
        "host_memcpy_gbps": round(memcpy, 2),
        "host_memcpy_1mib_chunks_gbps": round(memcpy_1m, 2),
        **{f"{k}_gbps": round(v, 2) for k, v in res.items()},
        "fraction_of_memcpy": {k: round(v / memcpy, 3) for k, v in res.items()},
        "peer_unmapped_accesses": unmapped,
        "median_engine_gbps": round(statistics.median(res.values()), 2),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

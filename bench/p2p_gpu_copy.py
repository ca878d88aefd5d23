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

Every path's data is verified after it is measured: the source holds a
pattern that differs per MiB (a new one before each peer path, so a copy that
did nothing cannot pass on stale data), and sampled pages of the destination
must hold it.  The peer paths must also leave gpu1's
``aperture-unmapped-accesses`` at 0: no byte fell outside a window.

Usage: .venv/bin/python bench/p2p_gpu_copy.py [--size-mib N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import random
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


SAMPLES = 64


def fill(qt: QTest, base: int, total: int, salt: int) -> None:
    """Guest RAM [base, base + total): each MiB holds one byte value of its own."""
    for mib in range(total // MiB):
        qt.memset(base + mib * MiB, MiB, expected(mib * MiB, salt))


def expected(off: int, salt: int) -> int:
    return ((off >> 20) + salt) % 251 + 1


def verify(read: Callable[[int, int], bytes], total: int, salt: int, what: str) -> None:
    """Sampled 4 KiB pages (and the last one) of a destination hold the pattern."""
    rng = random.Random(salt)
    offs = [rng.randrange(total // 4096) * 4096 for _ in range(SAMPLES)] + [total - 4096]
    for off in offs:
        got = read(off, 4096)
        if got != bytes([expected(off, salt)]) * 4096:
            raise RuntimeError(f"{what}: wrong data at offset {off:#x}")


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

            def host(off: int, n: int) -> bytes:
                return qt.memread(BUF_ADDR + off, n)

            def peer(off: int, n: int) -> bytes:
                return qt.memread(BAR2_GPU1 + off, n)

            fill(qt, BUF_ADDR, total, salt=0)   # also: no zero-page reads
            res: dict[str, float] = {}
            res["host_to_vram"] = engine_gbps(
                g0, lambda i: Desc(h2v, span, i * span, BUF_ADDR + i * span), total, args.reps)
            qt.memset(BUF_ADDR, total, 0)
            res["vram_to_host"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BUF_ADDR + i * span), total, args.reps)
            verify(host, total, 0, "host_to_vram then vram_to_host")
            res["vram_to_vram"] = engine_gbps(
                g0, lambda i: Desc(v2v, span, 512 * MiB + i * span, i * span), total, args.reps)
            verify(lambda off, n: g0.vram_read(512 * MiB + off, n), total, 0, "vram_to_vram")
            g1.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
            res["peer_to_bar2"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BAR2_GPU1 + i * span), total, args.reps)
            verify(peer, total, 0, "peer_to_bar2")
            # A new pattern in gpu0's VRAM, so the windows cannot pass on old data.
            fill(qt, BUF_ADDR, total, salt=7)
            g0.run([Desc(h2v, span, i * span, BUF_ADDR + i * span)
                    for i in range(total // span)])
            g1.wr(hw("REG_APER_CTRL"), 0)
            g1.wr(hw("REG_APER_CMD"), hw("APER_CMD_UNMAP_ALL"))
            for slot in range(total // (2 * MiB)):
                st, _, _ = g1.map(slot * 2 * MiB, slot)
                if st != hw("APER_OK"):
                    raise RuntimeError(f"aperture map failed: {st}")
            res["peer_to_windows"] = engine_gbps(
                g0, lambda i: Desc(v2h, span, i * span, BAR2_GPU1 + i * span), total, args.reps)
            verify(peer, total, 7, "peer_to_windows")
            unmapped = g1.counter("aperture-unmapped-accesses")
            if unmapped:
                raise RuntimeError(f"{unmapped} peer accesses fell outside gpu1's windows")
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
        "verified": f"{SAMPLES + 1} sampled pages per path hold the per-MiB pattern",
        "median_engine_gbps": round(statistics.median(res.values()), 2),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

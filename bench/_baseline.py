"""The baseline every benchmark here compares with: host memcpy, measured in the same run."""

from __future__ import annotations

import ctypes
import time


def host_memcpy_gbps(size: int, reps: int, chunk: int | None = None) -> float:
    """Best-of-``reps`` memmove of ``size`` bytes, in pieces of ``chunk`` bytes (default: one)."""
    step = chunk or size
    src = ctypes.create_string_buffer(b"\x5a" * size, size)
    dst = ctypes.create_string_buffer(size)
    s, d = ctypes.addressof(src), ctypes.addressof(dst)
    ctypes.memmove(d, s, size)          # fault both buffers in
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for off in range(0, size, step):
            ctypes.memmove(d + off, s + off, min(step, size - off))
        best = min(best, time.perf_counter() - t0)
    return size / best / 1e9

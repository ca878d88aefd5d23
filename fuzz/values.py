"""Values biased toward limits and wrap-around, shared by the generators."""

from __future__ import annotations

import random


def interesting(rng: random.Random, bits: int, near: tuple[int, ...] = ()) -> int:
    """A ``bits``-wide value: boundaries, powers of two, off-by-ones, given
    landmarks and their neighbours, or (a third of the time) anything."""
    mask = (1 << bits) - 1
    r = rng.random()
    if r < 0.33:
        return rng.getrandbits(bits)
    if near and r < 0.6:
        return (rng.choice(near) + rng.choice((-1, 0, 0, 0, 1, 4096, -4096))) & mask
    if r < 0.8:
        return (1 << rng.randrange(bits)) + rng.choice((-1, 0, 0, 1))
    return rng.choice((0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 255, 256, 4095, 4096,
                       mask, mask - 1, mask >> 1, (mask >> 1) + 1)) & mask


def aligned(rng: random.Random, base: int, size: int, align: int) -> int:
    """An ``align``-aligned address in [base, base + size), sometimes just outside."""
    if rng.random() < 0.1:
        return rng.choice((base - align, base + size, base + size - align // 2, 0,
                           (1 << 64) - align, 1 << 52))
    return base + rng.randrange(size // align) * align

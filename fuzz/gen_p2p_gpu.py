"""The p2p-gpu generator: a driver's set-up, then hostile register, config,
ring, aperture and ReBAR traffic (docs/devices/p2p-gpu.md is the contract)."""

from __future__ import annotations

import random

from fuzz.lines import memwrite, qmp, reset_machine
from fuzz.target import TargetSpec
from fuzz.values import aligned, interesting
from tests.support.p2p_gpu import BAR0_ADDR, BAR2_ADDR, DESC, DESC_SIZE, GPU, HW, SG, hw
from tests.support.qtest import ECAM_BASE, QTest

VRAM = 64 << 20
BAR = 16 << 20
GRANULE = 1 << 20
SPEC = TargetSpec("p2p-gpu", ("-device", f"p2p-gpu,id=gpu,addr=04.0,vram-size={VRAM},"
                              f"bar-size={BAR},rebar-min=1M,aperture-granule={GRANULE}"))
RING = 0x0010_0000
RING_ENTRIES = 64
SGL = 0x0020_0000
BUF = 0x0100_0000
BUF_SIZE = 16 << 20
CFG = ECAM_BASE + (4 << 15)            # 00:04.0 in ECAM
REGS = sorted({v for k, v in HW.items() if k.startswith("P2P_GPU_REG_")})
QOM = "/machine/peripheral/gpu"
# Device counters summed over a campaign: evidence that the input reaches the
# device's paths, not only its register decoder.
COUNTERS = ("copies", "copy-errors", "aperture-maps", "aperture-map-failures",
            "aperture-unmapped-accesses", "resizes", "bad-register-accesses", "interrupts")


_SETUP: list[str] = []


def setup(qt: QTest) -> None:
    g = GPU(qt, qt.pci(0, 4)).setup()
    g.ring_init(size=RING_ENTRIES, base=RING)
    g.msix_setup()
    g.wr(hw("REG_INT_ENABLE"), 0xFFFFFFFF)


def set_setup(lines: list[str]) -> None:
    """The set-up's own lines: replayed after a reset, so a run that broke the
    device (a halted engine, decode off) goes back to reaching its deep paths."""
    _SETUP[:] = lines


def _desc(rng: random.Random) -> bytes:
    if rng.random() < 0.5:                             # plausible: mostly completes
        op = rng.choice((1, 2, 3))
        length = rng.choice((1, 64, 4096, 65536, rng.randrange(1, 1 << 17)))
        vram_off = rng.randrange(VRAM - length) & ~rng.choice((0, 63))
        addr = rng.randrange(VRAM - length) if op == 3 else \
            aligned(rng, BUF, BUF_SIZE - (1 << 17), 64)
        return DESC.pack(op | rng.choice((0, hw("DESC_INTR"))), length, vram_off, addr, 0, 0)
    op = rng.choice((1, 2, 3, 1, 2, rng.randrange(16)))
    flags = rng.choice((0, 0, hw("DESC_SGL"), hw("DESC_INTR"), rng.getrandbits(32)))
    length = interesting(rng, 32, (4096, GRANULE, VRAM, BUF_SIZE))
    if flags & hw("DESC_SGL"):
        length = rng.choice((0, 1, 2, 16, 255, 256, 4096, rng.getrandbits(32)))
    vram_off = interesting(rng, 64, (0, VRAM, VRAM - 4096, GRANULE))
    addr = rng.choice((aligned(rng, BUF, BUF_SIZE, 64), SGL, BAR2_ADDR,
                       BAR2_ADDR + GRANULE, BAR0_ADDR, interesting(rng, 64, (VRAM,))))
    return DESC.pack(op | flags, length, vram_off, addr, rng.choice((0, 0, 0xFFFFFFFF)), 0)


def ops(rng: random.Random, n: int) -> list[str]:
    """``n`` lines of hostile traffic."""
    out: list[str] = []
    tail = 0
    while len(out) < n:
        r = rng.random()
        if r < 0.004 and _SETUP:                       # reset, and set up again
            out.append(qmp("system_reset"))
            out += _SETUP
            tail = 0
            continue
        if r < 0.02:                                   # re-arm the engine after a halt
            out += [f"writel {BAR0_ADDR + hw('REG_CE_CTRL'):#x} {hw('CE_CTRL_RESET'):#x}",
                    f"writeq {BAR0_ADDR + hw('REG_CE_RING_BASE'):#x} {RING:#x}",
                    f"writel {BAR0_ADDR + hw('REG_CE_RING_SIZE'):#x} {RING_ENTRIES:#x}",
                    f"writel {BAR0_ADDR + hw('REG_CE_CTRL'):#x} {hw('CE_CTRL_ENABLE'):#x}"]
            tail = 0
            continue
        if r < 0.25:                                   # registers
            reg = rng.choice(REGS) if rng.random() < 0.9 else rng.randrange(0x4000) & ~3
            reg += rng.choice((0, 0, 0, 4))
            if rng.random() < 0.3:
                out.append(f"readl {BAR0_ADDR + reg:#x}")
            elif rng.random() < 0.2:
                out.append(f"writeq {BAR0_ADDR + reg:#x} {interesting(rng, 64):#x}")
            else:
                out.append(f"writel {BAR0_ADDR + reg:#x} "
                           f"{interesting(rng, 32, (RING, RING_ENTRIES, VRAM)):#x}")
        elif r < 0.45:                                 # the ring: descriptors, doorbell
            k = rng.randrange(1, 6)
            for _ in range(k):
                slot = tail if rng.random() < 0.9 else rng.randrange(RING_ENTRIES)
                out.append(memwrite(RING + slot * DESC_SIZE, _desc(rng)))
                tail = (slot + 1) % RING_ENTRIES
            if rng.random() < 0.3:
                sg = b"".join(SG.pack(rng.choice((aligned(rng, BUF, BUF_SIZE, 8), BAR2_ADDR,
                                                  CFG + 0x88, interesting(rng, 64))),
                                      interesting(rng, 32, (4096,)), rng.getrandbits(32)
                                      if rng.random() < 0.1 else 0)
                              for _ in range(rng.randrange(1, 5)))
                out.append(memwrite(SGL, sg))
            door = tail if rng.random() < 0.9 else interesting(rng, 32, (RING_ENTRIES,))
            out.append(f"writel {BAR0_ADDR + hw('REG_CE_TAIL'):#x} {door:#x}")
        elif r < 0.6:                                  # the aperture
            plausible = rng.random() < 0.6
            off = rng.randrange(VRAM // GRANULE) * GRANULE if plausible else \
                interesting(rng, 64, (0, GRANULE, VRAM - GRANULE, VRAM))
            slot = rng.choice((0xFFFFFFFF, rng.randrange(BAR // GRANULE))) if plausible else \
                interesting(rng, 32, (0, 15, 16, 0xFFFFFFFF))
            cmd = rng.choice((1, 1, 2, 4)) if plausible else rng.randrange(6)
            out.append(f"writeq {BAR0_ADDR + hw('REG_APER_VRAM_OFF'):#x} {off:#x}")
            out.append(f"writel {BAR0_ADDR + hw('REG_APER_SLOT'):#x} {slot:#x}")
            out.append(f"writel {BAR0_ADDR + hw('REG_APER_CMD'):#x} {cmd:#x}")
            if rng.random() < 0.1:
                out.append(f"writel {BAR0_ADDR + hw('REG_APER_CTRL'):#x} {rng.randrange(4):#x}")
        elif r < 0.72:                                 # BAR2: windows, background, direct
            addr = BAR2_ADDR + interesting(rng, 32, (0, GRANULE, BAR - 8, BAR)) % (BAR + 4096)
            if rng.random() < 0.5:
                out.append(f"readq {addr & ~7:#x}")
            else:
                out.append(f"writeq {addr & ~7:#x} {rng.getrandbits(64):#x}")
        elif r < 0.79:                                 # config space: BARs, ReBAR, FLR, MSI-X
            off = rng.choice((0x04, 0x10, 0x18, 0x1C, 0x3C, hw("REBAR_CAP_OFF") + 8,
                              hw("REBAR_CAP_OFF") + 4, 0x88, 0x90, rng.randrange(0x1000) & ~3))
            val = interesting(rng, 32, (0x8000, 0x6, 0x7, 0x100, BAR2_ADDR & 0xFFFFFFFF))
            out.append(f"writel {CFG + off:#x} {val:#x}")
            if rng.random() < 0.8:                     # put the BARs back, usually
                out += _restore()
        elif r < 0.9:
            out.append(f"clock_step {rng.choice((1, 1000, 100_000, 10_000_000)):d}")
        elif r < 0.93:                                 # fault injection
            prop, val = rng.choice((("fail-next-copy", True), ("aperture-full", True),
                                    ("aperture-full", False), ("aperture-full", False),
                                    ("completion-delay-ns", rng.choice((0, 1000, 10**7))),
                                    ("completion-delay-ns", 0)))
            out.append(qmp("qom-set", path=QOM, property=prop, value=val))
        elif r < 0.935:
            out += reset_machine() + _restore()
        else:                                          # guest memory under the engine
            out.append(f"memset {aligned(rng, BUF, BUF_SIZE, 4096):#x} 0x1000 "
                       f"{rng.getrandbits(8):#x}")
    return out


def _restore() -> list[str]:
    """Map the BARs where the set-up put them and enable decode and mastering."""
    return [f"writel {CFG + 0x10:#x} {BAR0_ADDR:#x}", f"writel {CFG + 0x14:#x} 0x0",
            f"writel {CFG + 0x18:#x} {BAR2_ADDR & 0xFFFFFFFF:#x}",
            f"writel {CFG + 0x1C:#x} {BAR2_ADDR >> 32:#x}", f"writel {CFG + 0x04:#x} 0x6"]

import random
import struct
from pathlib import Path

from tests.devices.test_p2p_gpu import start
from tests.support.p2p_gpu import BUF_ADDR, GPU, SG, SG_ADDR, DESC, HW, hw

MiB = 1 << 20


def test_probe(tmp_path: Path) -> None:
    qt = start(tmp_path)
    g = GPU(qt, qt.pci(0, 4)).setup()
    g.ring_init(size=64)
    g.msix_setup()
    rng = random.Random(1)
    dev = g.dev
    exp = dev.capabilities()[0x10]
    ecam = [dev.cfg_addr(4), dev.cfg_addr(exp + 8), dev.cfg_addr(0x108), dev.cfg_addr(0x18),
            dev.cfg_addr(0x1c), dev.cfg_addr(dev.capabilities()[0x11] + 2)]
    regs = [v for n, v in HW.items() if n.startswith("P2P_GPU_REG_")]
    try:
        for step in range(4000):
            k = rng.random()
            if not qt.alive():
                break
            if k < 0.3:
                g.wr(rng.choice(regs), rng.choice([0, 1, 2, 3, 4, 0xffffffff, rng.getrandbits(32), rng.randrange(64) * MiB]))
            elif k < 0.4:
                off = 0x108
                dev.cfg_write(off, (rng.randrange(8)) << 8 | 0x22)
            elif k < 0.45:
                g.setup()
                g.ring_init(size=64)
            elif k < 0.5:
                tbl = g.bar0 + hw("MSIX_TABLE_OFF") + 16 * rng.randrange(2)
                qt.writel(tbl, rng.choice(ecam + [g.bar0 + 0x11c, g.bar0 + 0x218, 0x300000]))
                qt.writel(tbl + 8, rng.getrandbits(32))
            else:
                targets = ecam + [g.bar0 + rng.choice(regs), g.bar2 + rng.randrange(4 * MiB),
                                  BUF_ADDR + rng.randrange(MiB), g.bar0 + 0x2000]
                op = rng.choice([1, 2, 3])
                sgl = rng.random() < 0.3
                if sgl:
                    n = rng.randrange(1, 5)
                    qt.memwrite(SG_ADDR, b"".join(SG.pack(rng.choice(targets), rng.choice([2, 4, 8, 4096, MiB + 5]), 0) for _ in range(n)))
                    raw = DESC.pack(op | 0x100 | 0x200, n, rng.randrange(64 * MiB - 4 * MiB), SG_ADDR, 0, 0)
                else:
                    raw = DESC.pack(op | 0x200, rng.choice([2, 4, 8, 4096, 2 * MiB + 3]), rng.randrange(60 * MiB),
                                    rng.choice(targets) if op != 3 else rng.randrange(60 * MiB), 0, 0)
                t = g.rd(hw("REG_CE_TAIL"))
                qt.memwrite(g.ring_base + (t % 64) * 32, raw)
                g.wr(hw("REG_CE_TAIL"), (t + 1) % 64)
        assert qt.alive(), qt.log_tail()
    finally:
        qt.close()

"""A driver for the p2p-gpu device model, in Python, over qtest.

It does what a guest driver would: places the BARs, programs the copy-engine
ring, maps aperture windows and resizes BAR2, all through qtest MMIO and
guest-RAM access.  The constants are read from the one hardware header,
qemu-devices/include/p2plab/p2p_gpu_hw.h, so the tests cannot drift from the
device (docs/devices/p2p-gpu.md is the prose form).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.support.hwheader import INCLUDE, load_header
from tests.support.qtest import PCIDev, QTest

HEADER = INCLUDE / "p2p_gpu_hw.h"
HW = load_header(HEADER, "P2P_GPU_")


def hw(name: str) -> int:
    return HW["P2P_GPU_" + name]


DESC_SIZE = 32
DESC = struct.Struct("<IIQQII")
SG = struct.Struct("<QII")

# Guest-physical layout the tests use (q35, 512 MiB RAM).
BAR0_ADDR = 0xFE00_0000
BAR2_ADDR = 0x8_0000_0000        # inside q35's default 64-bit PCI hole
RING_ADDR = 0x0010_0000
SG_ADDR = 0x0020_0000
MSI_ADDR = 0x0030_0000
BUF_ADDR = 0x0100_0000


@dataclass
class Desc:
    op: int
    length: int
    vram_off: int
    addr: int
    flags: int = 0

    def pack(self) -> bytes:
        return DESC.pack(self.op | self.flags, self.length, self.vram_off, self.addr, 0, 0)


class GPU:
    """One p2p-gpu function on a QTest machine."""

    def __init__(self, qt: QTest, dev: PCIDev, qom_path: str = "/machine/peripheral/gpu"):
        self.qt = qt
        self.dev = dev
        self.path = qom_path
        self.ring_size = 0
        self.tail = 0

    # -- bring-up -------------------------------------------------------
    def setup(self, bar0: int = BAR0_ADDR, bar2: int = BAR2_ADDR) -> GPU:
        self.bar0 = bar0
        self.bar2 = bar2
        self.dev.map_bar(0, bar0)
        self.dev.map_bar(2, bar2)
        self.dev.enable(memory=True, master=True)
        if self.rd(hw("REG_ID")) != hw("MAGIC"):
            raise AssertionError("p2p-gpu magic not found at BAR0")
        return self

    # -- registers ----------------------------------------------------------
    def rd(self, reg: int) -> int:
        return self.qt.readl(self.bar0 + reg)

    def wr(self, reg: int, val: int) -> None:
        self.qt.writel(self.bar0 + reg, val & 0xFFFFFFFF)

    def rd64(self, reg: int) -> int:
        return self.qt.readq(self.bar0 + reg)

    def wr64(self, reg: int, val: int) -> None:
        self.qt.writeq(self.bar0 + reg, val & 0xFFFFFFFF_FFFFFFFF)

    def counter(self, name: str) -> int:
        return int(self.qt.qom_get(self.path, name))

    # -- aperture ---------------------------------------------------------
    def map(self, vram_off: int, slot: int | None = None) -> tuple[int, int, int]:
        """MAP command: (status, slot, BAR2 offset)."""
        self.wr64(hw("REG_APER_VRAM_OFF"), vram_off)
        self.wr(hw("REG_APER_SLOT"), hw("APER_SLOT_ANY") if slot is None else slot)
        self.wr(hw("REG_APER_CMD"), hw("APER_CMD_MAP"))
        return (self.rd(hw("REG_APER_STATUS")), self.rd(hw("REG_APER_RESULT_SLOT")),
                self.rd64(hw("REG_APER_RESULT_OFF")))

    def unmap(self, slot: int) -> int:
        self.wr(hw("REG_APER_SLOT"), slot)
        self.wr(hw("REG_APER_CMD"), hw("APER_CMD_UNMAP"))
        return self.rd(hw("REG_APER_STATUS"))

    # -- ReBAR ------------------------------------------------------------
    def rebar_ctrl_off(self) -> int:
        return hw("REBAR_CAP_OFF") + 8

    def resize(self, size: int) -> None:
        """What pci_resize_resource() does: decode off, new size, BAR back."""
        off = self.rebar_ctrl_off()
        self.dev.disable_memory()
        ctrl = self.dev.cfg_read(off)
        idx = size.bit_length() - 1 - 20
        self.dev.cfg_write(off, (ctrl & ~0x3F00) | (idx << 8))
        self.dev.map_bar(2, self.bar2)
        self.dev.enable()

    # -- copy engine --------------------------------------------------------
    def ring_init(self, size: int = 16, base: int = RING_ADDR) -> None:
        self.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_RESET"))
        self.wr64(hw("REG_CE_RING_BASE"), base)
        self.wr(hw("REG_CE_RING_SIZE"), size)
        self.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_ENABLE"))
        self.ring_base = base
        self.ring_size = size
        self.tail = 0

    def post(self, descs: Sequence[Desc | bytes]) -> list[int]:
        """Queue descriptors, ring the doorbell; returns their ring indices."""
        if len(descs) >= self.ring_size:
            raise ValueError("a ring of N entries holds at most N - 1 descriptors")
        idx = []
        for d in descs:
            raw = d if isinstance(d, bytes) else d.pack()
            self.qt.memwrite(self.ring_base + self.tail * DESC_SIZE, raw)
            idx.append(self.tail)
            self.tail = (self.tail + 1) % self.ring_size
        self.wr(hw("REG_CE_TAIL"), self.tail)
        return idx

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.rd(hw("REG_CE_HEAD")) != self.tail:
            if self.rd(hw("REG_CE_STATUS")) & hw("CE_STATUS_HALTED"):
                raise AssertionError("copy engine halted")
            if time.monotonic() > deadline:
                raise TimeoutError("copy engine did not drain")

    def result(self, idx: int) -> tuple[int, int]:
        """(status word, bytes transferred) written back into descriptor idx."""
        raw = self.qt.memread(self.ring_base + idx * DESC_SIZE + 24, 8)
        status, xfer = struct.unpack("<II", raw)
        return status, xfer

    def run(self, descs: Sequence[Desc | bytes]) -> list[tuple[int, int]]:
        idx = self.post(descs)
        self.wait_idle()
        return [self.result(i) for i in idx]

    def copy(self, op: int, vram_off: int, addr: int, length: int) -> int:
        """One direct copy; returns its status code (DONE bit checked)."""
        ((status, xfer),) = self.run([Desc(op, length, vram_off, addr)])
        if not status & hw("DESC_DONE"):
            raise AssertionError(f"descriptor not completed: {status:#x}")
        code = status & hw("DESC_ERR_MASK")
        if code == hw("CE_OK") and xfer != length:
            raise AssertionError(f"short copy: {xfer} of {length}")
        return code

    def vram_write(self, vram_off: int, data: bytes, bounce: int = BUF_ADDR) -> None:
        self.qt.memwrite(bounce, data)
        code = self.copy(hw("OP_HOST_TO_VRAM"), vram_off, bounce, len(data))
        if code != hw("CE_OK"):
            raise AssertionError(f"HOST_TO_VRAM failed: {code}")

    def vram_read(self, vram_off: int, length: int, bounce: int = BUF_ADDR) -> bytes:
        self.qt.memset(bounce, length, 0)
        code = self.copy(hw("OP_VRAM_TO_HOST"), vram_off, bounce, length)
        if code != hw("CE_OK"):
            raise AssertionError(f"VRAM_TO_HOST failed: {code}")
        return self.qt.memread(bounce, length)

    # -- MSI-X ----------------------------------------------------------------
    def msix_setup(self, addr: int = MSI_ADDR) -> None:
        """Point each vector at guest RAM (addr + 4 * n, data 0x100 + n)."""
        table = self.bar0 + hw("MSIX_TABLE_OFF")
        for n in range(hw("MSIX_VECTORS")):
            self.qt.writel(table + 16 * n, addr + 4 * n)
            self.qt.writel(table + 16 * n + 4, 0)
            self.qt.writel(table + 16 * n + 8, 0x100 + n)
            self.qt.writel(table + 16 * n + 12, 0)
        cap = self.dev.capabilities()[0x11]
        ctl = self.dev.cfg_read(cap + 2, 2)
        self.dev.cfg_write(cap + 2, (ctl | 0x8000) & ~0x4000, 2)
        self.qt.memset(addr, 4 * hw("MSIX_VECTORS"), 0)
        self.msi_addr = addr

    def msi_word(self, vector: int) -> int:
        return int.from_bytes(self.qt.memread(self.msi_addr + 4 * vector, 4), "little")

    def msi_clear(self) -> None:
        self.qt.memset(self.msi_addr, 4 * hw("MSIX_VECTORS"), 0)

"""p2p-gpu device model under qtest: config space, ReBAR, aperture, copy engine.

Each test starts its own QEMU (q35, no guest) with one p2p-gpu on pcie.0 and
drives it as a driver would, through tests/support/p2p_gpu.py.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.p2p_gpu import (
    BAR2_ADDR,
    BUF_ADDR,
    DESC,
    GPU,
    HW,
    SG,
    SG_ADDR,
    Desc,
    hw,
)
from tests.support.qtest import QEMU, PCIDev, QTest

MiB = 1 << 20
VRAM = 64 * MiB
BAR = 4 * MiB
GRANULE = 1 * MiB
DEVICE = (f"p2p-gpu,id=gpu,addr=04.0,vram-size={VRAM},bar-size={BAR},"
          f"rebar-min=1M,aperture-granule={GRANULE}")

OP_V2H = hw("OP_VRAM_TO_HOST")
OP_H2V = hw("OP_HOST_TO_VRAM")
OP_V2V = hw("OP_VRAM_TO_VRAM")
DONE = hw("DESC_DONE")


def start(tmp_path: Path, device: str = DEVICE, extra: list[str] | None = None) -> QTest:
    return QTest(tmp_path, extra_args=[*(extra or []), "-device", device]).start()


@pytest.fixture
def gpu(tmp_path: Path) -> Iterator[GPU]:
    qt = start(tmp_path)
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        g.ring_init()
        yield g
        assert qt.alive(), qt.log_tail()
    finally:
        qt.close()


def system_reset(qt: QTest) -> None:
    """Reset the machine; firmware's job of re-enabling ECAM falls to us."""
    qt.qmp("system_reset")
    qt.enable_ecam()


def pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# -- identity and configuration space ----------------------------------------

def test_help_lists_properties() -> None:
    out = subprocess.run([str(QEMU), "-device", "p2p-gpu,help"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    for prop in ("vram-size", "bar-size", "rebar-min", "aperture-granule", "memdev",
                 "copies", "copy-bytes", "copy-errors", "aperture-maps",
                 "aperture-map-failures", "resizes", "fail-next-copy", "aperture-full",
                 "completion-delay-ns"):
        assert f"  {prop}=" in out, prop


def test_config_space_walk(gpu: GPU) -> None:
    dev = gpu.dev
    assert dev.cfg_read(0x00) == hw("DEVICE_ID") << 16 | hw("VENDOR_ID")
    assert dev.cfg_read(0x08) == hw("CLASS") << 16 | hw("REVISION")
    caps = dev.capabilities()
    assert 0x10 in caps and 0x11 in caps           # PCI Express, MSI-X
    ext = dev.ext_capabilities()
    assert ext == {0x15: hw("REBAR_CAP_OFF")}
    # MSI-X table and PBA live in BAR0.
    table = dev.cfg_read(caps[0x11] + 4)
    pba = dev.cfg_read(caps[0x11] + 8)
    assert table == hw("MSIX_TABLE_OFF") | 0 and pba == hw("MSIX_PBA_OFF") | 0
    assert (dev.cfg_read(caps[0x11] + 2, 2) & 0x7FF) + 1 == hw("MSIX_VECTORS")
    # ReBAR: 1 MiB .. 64 MiB supported, one resizable BAR, index 2, 4 MiB now.
    pos = hw("REBAR_CAP_OFF")
    assert dev.cfg_read(pos + 4) == sum(1 << (n + 4) for n in range(0, 7))
    ctrl = dev.cfg_read(pos + 8)
    assert ctrl & 7 == 2 and (ctrl >> 5) & 7 == 1 and (ctrl >> 8) & 0x3F == 2
    # BAR2: 64-bit prefetchable memory of bar-size; BAR0 32-bit 16 KiB.
    assert dev.cfg_read(0x18) & 0xF == 0xC
    assert dev.bar_size(2) == BAR
    assert dev.bar_size(0) == hw("REGS_BAR_SIZE")
    assert gpu.rd(hw("REG_VERSION")) == hw("VERSION")
    assert gpu.rd64(hw("REG_VRAM_SIZE")) == VRAM
    assert gpu.rd64(hw("REG_BAR2_SIZE")) == BAR
    assert gpu.rd(hw("REG_APER_GRANULE_SHIFT")) == 20
    assert gpu.rd(hw("REG_APER_SLOTS")) == BAR // GRANULE


# -- Resizable BAR --------------------------------------------------------------

def test_resize_changes_probe_and_control(gpu: GPU) -> None:
    dev, qt = gpu.dev, gpu.qt
    pos = hw("REBAR_CAP_OFF")
    # Place BAR2 at an address aligned for 4 MiB but not for 32 MiB.
    gpu.bar2 += 12 * MiB
    dev.map_bar(2, gpu.bar2)
    assert gpu.map(0)[0] == hw("APER_OK")
    gpu.vram_write(5 * MiB, b"deep in vram")
    gpu.resize(32 * MiB)
    assert dev.bar_size(2) == 32 * MiB
    assert (dev.cfg_read(pos + 8) >> 8) & 0x3F == 5
    assert gpu.rd64(hw("REG_BAR2_SIZE")) == 32 * MiB
    assert gpu.rd(hw("REG_APER_SLOTS")) == 32
    assert gpu.rd(hw("REG_APER_USED")) == 0       # windows do not survive a resize
    # Address bits below the new size are cleared, exactly as a sizing probe implies.
    bar = dev.cfg_read(0x18) | dev.cfg_read(0x1C) << 32
    assert bar & ~0xF == (gpu.bar2 & ~(32 * MiB - 1))
    gpu.bar2 = bar & ~0xF
    assert qt.memread(gpu.bar2 + 20 * MiB, 4) == b"\xff" * 4
    assert gpu.map(5 * MiB, slot=20) == (hw("APER_OK"), 20, 20 * MiB)
    assert qt.memread(gpu.bar2 + 20 * MiB, 12) == b"deep in vram"
    assert gpu.counter("resizes") == 1

    # The largest size equals VRAM: identity (direct) mode becomes available.
    gpu.resize(VRAM)
    assert dev.bar_size(2) == VRAM
    gpu.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
    assert gpu.rd(hw("REG_APER_STATUS")) == hw("APER_OK")
    assert qt.memread(gpu.bar2 + 5 * MiB, 12) == b"deep in vram"
    qt.memwrite(gpu.bar2 + VRAM - 4, b"last")
    assert gpu.vram_read(VRAM - 4, 4) == b"last"
    assert gpu.map(0)[0] == hw("APER_BAD_MODE")

    # An unsupported size index is refused and the control register keeps its size.
    ctrl = dev.cfg_read(pos + 8)
    dev.cfg_write(pos + 8, (ctrl & ~0x3F00) | (20 << 8))
    assert dev.cfg_read(pos + 8) == ctrl
    assert gpu.rd(hw("REG_ERR_STATUS")) == hw("REGERR_BAD_REBAR")
    assert dev.bar_size(2) == VRAM

    # Reset restores the power-on size and clears the direct mode.
    system_reset(qt)
    assert (dev.cfg_read(pos + 8) >> 8) & 0x3F == 2
    assert dev.bar_size(2) == BAR
    gpu.setup()
    assert gpu.rd64(hw("REG_BAR2_SIZE")) == BAR
    assert gpu.rd(hw("REG_APER_CTRL")) == 0
    assert gpu.counter("resizes") == 2


def test_direct_mode_needs_full_bar(gpu: GPU) -> None:
    gpu.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
    assert gpu.rd(hw("REG_APER_STATUS")) == hw("APER_BAD_MODE")
    assert gpu.rd(hw("REG_APER_CTRL")) == 0


# -- aperture and copy engine ----------------------------------------------------

def test_bar2_data_reaches_copy_engine_and_back(gpu: GPU) -> None:
    qt = gpu.qt
    st, slot, off = gpu.map(7 * MiB)
    assert (st, slot, off) == (hw("APER_OK"), 0, 0)
    data = pattern(64 * 1024, 1)
    qt.memwrite(gpu.bar2 + off + 4096, data)          # a peer writes into BAR2
    assert gpu.vram_read(7 * MiB + 4096, len(data)) == data

    back = pattern(MiB, 2)
    gpu.vram_write(7 * MiB, back)
    assert qt.memread(gpu.bar2 + off, MiB) == back     # a peer reads BAR2

    # Query reports the VRAM offset behind a slot; unmap makes the slot float.
    gpu.wr(hw("REG_APER_SLOT"), slot)
    gpu.wr(hw("REG_APER_CMD"), hw("APER_CMD_QUERY"))
    assert gpu.rd(hw("REG_APER_STATUS")) == hw("APER_OK")
    assert gpu.rd64(hw("REG_APER_RESULT_OFF")) == 7 * MiB
    assert gpu.unmap(slot) == hw("APER_OK")
    assert qt.memread(gpu.bar2, 8) == b"\xff" * 8
    assert gpu.counter("copies") == 2
    assert gpu.counter("copy-bytes") == len(data) + len(back)
    assert gpu.counter("aperture-maps") == 1 and gpu.counter("aperture-unmaps") == 1
    assert gpu.counter("aperture-unmapped-accesses") >= 1


def test_scatter_gather_and_vram_to_vram(gpu: GPU) -> None:
    qt = gpu.qt
    segs = [(BUF_ADDR + 0x30000, 4096), (BUF_ADDR + 0x10000, 100), (BUF_ADDR + 0x50000, 8000)]
    chunks = [pattern(n, 10 + i) for i, (_, n) in enumerate(segs)]
    for (addr, _), chunk in zip(segs, chunks, strict=True):
        qt.memwrite(addr, chunk)
    qt.memwrite(SG_ADDR, b"".join(SG.pack(a, n, 0) for a, n in segs))
    sgl = hw("DESC_SGL") | hw("DESC_INTR")
    ((status, xfer),) = gpu.run([Desc(OP_H2V, len(segs), 3 * MiB, SG_ADDR, sgl)])
    whole = b"".join(chunks)
    assert status == DONE | hw("CE_OK") and xfer == len(whole)
    # VRAM to VRAM, then read the copy through the aperture.
    ((status, _),) = gpu.run([Desc(OP_V2V, len(whole), 9 * MiB, 3 * MiB)])
    assert status == DONE
    assert gpu.map(9 * MiB)[0] == hw("APER_OK")
    assert qt.memread(gpu.bar2, len(whole)) == whole
    # Gather back out with a reversed segment order.
    for addr, n in segs:
        qt.memset(addr, n, 0)
    rev = list(reversed(segs))
    qt.memwrite(SG_ADDR, b"".join(SG.pack(a, n, 0) for a, n in rev))
    ((status, _),) = gpu.run([Desc(OP_V2H, len(rev), 9 * MiB, SG_ADDR, sgl)])
    assert status == DONE
    off = 0
    for addr, n in rev:
        assert qt.memread(addr, n) == whole[off:off + n]
        off += n
    assert gpu.rd(hw("REG_INT_STATUS")) & hw("INT_COPY_DONE")


def test_aperture_exhaustion(gpu: GPU) -> None:
    qt = gpu.qt
    slots = gpu.rd(hw("REG_APER_SLOTS"))
    got = [gpu.map(i * GRANULE) for i in range(slots)]
    assert [g[0] for g in got] == [hw("APER_OK")] * slots
    assert sorted(g[1] for g in got) == list(range(slots))
    assert gpu.rd(hw("REG_APER_USED")) == slots
    assert gpu.map(60 * MiB) == (hw("APER_FULL"), got[-1][1], got[-1][2])
    assert gpu.rd(hw("REG_INT_STATUS")) & hw("INT_APER_FAIL")
    assert gpu.counter("aperture-map-failures") == 1
    # Freeing a slot makes room again, in that slot.
    assert gpu.unmap(1) == hw("APER_OK")
    assert gpu.map(60 * MiB) == (hw("APER_OK"), 1, GRANULE)
    # Explicit slots: busy, out of range; bad offsets.
    assert gpu.map(0, slot=2)[0] == hw("APER_SLOT_BUSY")
    assert gpu.map(0, slot=slots)[0] == hw("APER_BAD_SLOT")
    assert gpu.map(GRANULE + 4096)[0] == hw("APER_BAD_OFFSET")
    assert gpu.map(VRAM)[0] == hw("APER_BAD_OFFSET")
    assert gpu.unmap(slots + 5) == hw("APER_BAD_SLOT")
    # Fault injection: the aperture reports full although slots are free.
    gpu.wr(hw("REG_APER_CMD"), hw("APER_CMD_UNMAP_ALL"))
    assert gpu.rd(hw("REG_APER_USED")) == 0
    assert gpu.unmap(0) == hw("APER_NOT_MAPPED")
    gpu.qt.qom_set(gpu.path, "aperture-full", True)
    assert gpu.map(0)[0] == hw("APER_FULL")
    gpu.qt.qom_set(gpu.path, "aperture-full", False)
    assert gpu.map(0)[0] == hw("APER_OK")
    assert gpu.counter("aperture-map-failures") == 6
    assert qt.memread(gpu.bar2 + GRANULE, 4) == b"\xff" * 4


def test_malformed_descriptors(gpu: GPU) -> None:
    max_len = hw("CE_MAX_LEN")
    qt = gpu.qt
    qt.memwrite(SG_ADDR, SG.pack(BUF_ADDR, 0, 0) + SG.pack(BUF_ADDR, 16, 7))
    cases: list[tuple[Desc | bytes, int]] = [
        (Desc(0, 16, 0, BUF_ADDR), hw("CE_BAD_DESC")),
        (Desc(9, 16, 0, BUF_ADDR), hw("CE_BAD_DESC")),
        (Desc(OP_V2H, 16, 0, BUF_ADDR, 1 << 20), hw("CE_BAD_DESC")),
        (Desc(OP_V2H, 0, 0, BUF_ADDR), hw("CE_BAD_LEN")),
        (Desc(OP_V2H, max_len + 1, 0, BUF_ADDR), hw("CE_BAD_LEN")),
        (Desc(OP_V2H, 32, VRAM - 16, BUF_ADDR), hw("CE_VRAM_RANGE")),
        (Desc(OP_V2H, 32, (1 << 64) - 16, BUF_ADDR), hw("CE_VRAM_RANGE")),
        (Desc(OP_V2V, 32, 0, VRAM), hw("CE_VRAM_RANGE")),
        (Desc(OP_V2V, 1, 0, SG_ADDR, hw("DESC_SGL")), hw("CE_BAD_DESC")),
        (Desc(OP_H2V, 16, 0, 0xF000_0000_0000), hw("CE_DMA_FAULT")),
        (Desc(OP_V2H, 16, 0, (1 << 64) - 8), hw("CE_DMA_FAULT")),
        (Desc(OP_H2V, 0, 0, SG_ADDR, hw("DESC_SGL")), hw("CE_BAD_LEN")),
        (Desc(OP_H2V, 257, 0, SG_ADDR, hw("DESC_SGL")), hw("CE_BAD_LEN")),
        (Desc(OP_H2V, 1, 0, SG_ADDR, hw("DESC_SGL")), hw("CE_SG_FAULT")),       # len 0
        (Desc(OP_H2V, 1, 0, SG_ADDR + 16, hw("DESC_SGL")), hw("CE_SG_FAULT")),  # rsvd
        (Desc(OP_H2V, 4, 0, 0xF000_0000_0000, hw("DESC_SGL")), hw("CE_SG_FAULT")),
        # The engine may not reach its own registers (re-entrancy guard).
        (Desc(OP_V2H, 4, 0, gpu.bar0 + hw("REG_CE_CTRL")), hw("CE_DMA_FAULT")),
        (Desc(OP_H2V, 4, 0, gpu.bar0 + hw("REG_ID")), hw("CE_DMA_FAULT")),
    ]
    gpu.ring_init(size=32)
    gpu.msix_setup()
    gpu.wr(hw("REG_INT_ENABLE"), hw("INT_ALL"))
    results = gpu.run([c for c, _ in cases])
    for (desc, want), (status, xfer) in zip(cases, results, strict=True):
        assert status == DONE | want, (desc, hex(status))
        assert xfer == 0
    assert gpu.rd(hw("REG_CE_ERRORS")) == len(cases)
    assert gpu.counter("copy-errors") == len(cases)
    assert (gpu.rd(hw("REG_CE_STATUS")) >> 8) & 0xFF == cases[-1][1]
    assert gpu.rd(hw("REG_INT_STATUS")) & hw("INT_COPY_ERROR")
    assert gpu.msi_word(hw("VEC_ERROR")) == 0x100 + hw("VEC_ERROR")
    # The engine still works after all of that.
    gpu.vram_write(0, b"still alive")
    assert gpu.vram_read(0, 11) == b"still alive"


def test_ring_fault_halts_until_reset(gpu: GPU) -> None:
    gpu.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_RESET"))
    gpu.wr64(hw("REG_CE_RING_BASE"), 0xF000_0000_0000)
    gpu.wr(hw("REG_CE_RING_SIZE"), 4)
    gpu.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_ENABLE"))
    gpu.wr(hw("REG_CE_TAIL"), 1)
    for _ in range(100):
        if gpu.rd(hw("REG_CE_STATUS")) & hw("CE_STATUS_HALTED"):
            break
    status = gpu.rd(hw("REG_CE_STATUS"))
    assert status & hw("CE_STATUS_HALTED")
    assert (status >> 8) & 0xFF == hw("CE_RING_FAULT")
    assert gpu.rd(hw("REG_CE_ERRORS")) == 1  # a ring fault counts like any failure
    assert gpu.rd(hw("REG_CE_HEAD")) == 0
    gpu.ring_init()
    assert gpu.rd(hw("REG_CE_STATUS")) == 0
    gpu.vram_write(0, b"recovered")
    assert gpu.vram_read(0, 9) == b"recovered"


def test_register_errors(gpu: GPU) -> None:
    bad = [
        (hw("REG_ID"), 0x1234, hw("REGERR_BAD_REG")),             # read-only
        (hw("REG_VRAM_SIZE"), 0, hw("REGERR_BAD_REG")),
        (0x0FF0, 1, hw("REGERR_BAD_REG")),                        # undefined
        (hw("REG_CE_RING_SIZE"), 32, hw("REGERR_BUSY")),          # while enabled
        (hw("REG_CE_TAIL"), 16, hw("REGERR_BAD_VALUE")),          # >= ring size
        (hw("REG_CE_RING_BASE"), 0x1000, hw("REGERR_BUSY")),      # while enabled
        (hw("REG_CE_CTRL"), 0x80, hw("REGERR_BAD_VALUE")),
        (hw("REG_INT_ENABLE"), 0x100, hw("REGERR_BAD_VALUE")),
        (hw("REG_APER_CTRL"), 2, hw("REGERR_BAD_VALUE")),
    ]
    for n, (reg, val, code) in enumerate(bad, 1):
        gpu.wr(reg, val)
        assert gpu.rd(hw("REG_ERR_STATUS")) == code, hex(reg)
        assert gpu.rd(hw("REG_ERR_COUNT")) == n
    assert gpu.rd(hw("REG_ID")) == hw("MAGIC")
    assert gpu.rd(hw("REG_CE_RING_SIZE")) == 16
    gpu.wr(hw("REG_CE_CTRL"), 0)
    for size in (0, 3, hw("CE_RING_MAX") * 2):
        gpu.wr(hw("REG_CE_RING_SIZE"), size)                     # not a power of two
        assert gpu.rd(hw("REG_ERR_STATUS")) == hw("REGERR_BAD_VALUE")
    gpu.wr64(hw("REG_CE_RING_BASE"), 0x1010)                     # misaligned
    assert gpu.rd(hw("REG_ERR_STATUS")) == hw("REGERR_BAD_VALUE")
    assert gpu.rd64(hw("REG_CE_RING_BASE")) != 0x1010
    before = gpu.counter("bad-register-accesses")
    assert gpu.rd(0x0FF8) == 0                                    # undefined read
    assert gpu.counter("bad-register-accesses") == before + 1
    gpu.wr(hw("REG_ERR_STATUS"), 0)
    assert gpu.rd(hw("REG_ERR_STATUS")) == 0
    gpu.wr(hw("REG_APER_CMD"), 99)
    assert gpu.rd(hw("REG_APER_STATUS")) == hw("APER_BAD_CMD")
    gpu.wr(hw("REG_SCRATCH"), 0xDEADBEEF)
    assert gpu.rd(hw("REG_SCRATCH")) == 0xDEADBEEF
    # Byte, word and unaligned accesses are refused by the bus: no effect.
    qt = gpu.qt
    qt.write(1, gpu.bar0 + hw("REG_SCRATCH"), 0x11)
    qt.write(2, gpu.bar0 + hw("REG_SCRATCH") + 2, 0x2222)
    qt.write(4, gpu.bar0 + hw("REG_SCRATCH") + 1, 0x33333333)
    assert qt.read(1, gpu.bar0) in (0, 0xFF) and qt.read(2, gpu.bar0 + 2) in (0, 0xFFFF)
    assert gpu.rd(hw("REG_SCRATCH")) == 0xDEADBEEF
    # 64-bit access to a pair of 32-bit registers: low half first.
    gpu.wr64(hw("REG_INT_STATUS"), 0)
    assert gpu.rd64(hw("REG_ID")) == hw("VERSION") << 32 | hw("MAGIC")
    assert gpu.rd64(hw("REG_VRAM_SIZE")) == VRAM


def test_msix_completion_and_fault_injection(gpu: GPU) -> None:
    qt = gpu.qt
    gpu.msix_setup()
    gpu.wr(hw("REG_INT_ENABLE"), hw("INT_COPY_DONE") | hw("INT_COPY_ERROR"))
    qt.memwrite(BUF_ADDR, b"x" * 64)
    ((status, _),) = gpu.run([Desc(OP_H2V, 64, 0, BUF_ADDR, hw("DESC_INTR"))])
    assert status == DONE
    assert gpu.msi_word(hw("VEC_COPY")) == 0x100 + hw("VEC_COPY")
    assert gpu.msi_word(hw("VEC_ERROR")) == 0
    gpu.wr(hw("REG_INT_STATUS"), hw("INT_ALL"))
    assert gpu.rd(hw("REG_INT_STATUS")) == 0

    gpu.msi_clear()
    qt.qom_set(gpu.path, "fail-next-copy", True)
    ((status, _),) = gpu.run([Desc(OP_H2V, 64, 0, BUF_ADDR, hw("DESC_INTR"))])
    assert status == DONE | hw("CE_INJECTED")
    assert qt.qom_get(gpu.path, "fail-next-copy") is False
    assert gpu.msi_word(hw("VEC_ERROR")) == 0x100 + hw("VEC_ERROR")
    assert gpu.msi_word(hw("VEC_COPY")) == 0

    # Delayed completion: nothing happens until virtual time passes.
    gpu.msi_clear()
    qt.qom_set(gpu.path, "completion-delay-ns", 5_000_000)
    (idx,) = gpu.post([Desc(OP_V2H, 64, 0, BUF_ADDR + 4096, hw("DESC_INTR"))])
    for _ in range(20):
        assert gpu.rd(hw("REG_CE_HEAD")) == idx
    assert gpu.rd(hw("REG_CE_STATUS")) & hw("CE_STATUS_BUSY")
    assert gpu.result(idx)[0] == 0
    qt.clock_step(5_000_000)
    gpu.wait_idle()
    assert gpu.result(idx) == (DONE, 64)
    assert qt.memread(BUF_ADDR + 4096, 64) == b"x" * 64
    assert gpu.msi_word(hw("VEC_COPY")) == 0x100 + hw("VEC_COPY")
    assert gpu.counter("copies") == 2 and gpu.counter("copy-errors") == 1


def test_memdev_backend_and_lazy_vram(tmp_path: Path) -> None:
    qt = start(tmp_path / "a", "p2p-gpu,id=gpu,addr=04.0,memdev=vm,bar-size=256M",
               ["-object", "memory-backend-ram,id=vm,size=512M"])
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        assert g.rd64(hw("REG_VRAM_SIZE")) == 512 * MiB
        g.ring_init()
        g.vram_write(500 * MiB, b"backend")
        assert g.vram_read(500 * MiB, 7) == b"backend"
    finally:
        qt.close()
    # 16 GiB of VRAM must not cost 16 GiB of host memory until touched.
    qt = start(tmp_path / "b", "p2p-gpu,id=gpu,addr=04.0,vram-size=16G")
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        assert g.rd64(hw("REG_VRAM_SIZE")) == 16 << 30
        assert qt.proc is not None
        rss_kib = int(next(ln for ln in Path(f"/proc/{qt.proc.pid}/status").read_text()
                           .splitlines() if ln.startswith("VmRSS")).split()[1])
        assert rss_kib < 1 << 20, rss_kib
    finally:
        qt.close()


@pytest.mark.parametrize(("bad", "why"), [
    ("vram-size=3M", "vram-size must be a power of two from 1 MiB to 64 GiB"),
    ("vram-size=128G", "vram-size must be a power of two from 1 MiB to 64 GiB"),
    ("bar-size=2G", "bar-size must be a power of two from rebar-min to vram-size"),
    ("rebar-min=512K", "rebar-min must be a power of two from 1 MiB to vram-size"),
    ("aperture-granule=3M", "aperture-granule must be a power of two from 4 KiB to rebar-min"),
    ("aperture-granule=2K", "aperture-granule must be a power of two from 4 KiB to rebar-min"),
    ("aperture-granule=512M",
     "aperture-granule must be a power of two from 4 KiB to rebar-min"),
    ("aperture-granule=4K", "aperture-granule too small: at most 65536 slots"),
])
def test_bad_configuration_is_refused(bad: str, why: str) -> None:
    res = subprocess.run([str(QEMU), "-machine", "q35", "-accel", "qtest", "-nodefaults",
                          "-display", "none", "-device", f"p2p-gpu,{bad}"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 1, res.stderr
    # QEMU's prefix names the option; the device's own sentence says what is wrong.
    assert f"-device p2p-gpu,{bad}: {why}" in res.stderr, res.stderr


def test_randomized_registers_and_descriptors(gpu: GPU) -> None:
    """Random register writes, descriptors and resizes; then reset and a real copy.

    P2P_GPU_FUZZ_STEPS and P2P_GPU_FUZZ_SEED scale it up for a sanitizer build
    (P2PLAB_QEMU=path/to/asan/qemu); the default is a fixed, quick run.
    """
    qt, dev = gpu.qt, gpu.dev
    rng = random.Random(int(os.environ.get("P2P_GPU_FUZZ_SEED", "0x5032"), 0))
    steps = int(os.environ.get("P2P_GPU_FUZZ_STEPS", "1500"))
    regs = [v for name, v in HW.items() if name.startswith("P2P_GPU_REG_")]
    interesting = [0, 1, 2, 3, 4, 16, 0x1F, 0x20, 0xFFFF_FFFF, 0x8000_0000, GRANULE, BAR,
                   VRAM - GRANULE, VRAM]
    for step in range(steps):
        kind = rng.random()
        if kind < 0.6:
            reg = rng.choice(regs) if rng.random() < 0.8 else rng.randrange(0, 0x1000, 4)
            val = rng.choice(interesting) if rng.random() < 0.5 else rng.getrandbits(32)
            if rng.random() < 0.2 and reg % 8 == 0:
                gpu.wr64(reg, val | rng.getrandbits(32) << 32)
            else:
                gpu.wr(reg, val)
        elif kind < 0.85:
            op = rng.choice([0, OP_V2H, OP_H2V, OP_V2V, rng.getrandbits(32)])
            flags = rng.choice([0, hw("DESC_SGL"), hw("DESC_INTR"), rng.getrandbits(32) & ~0xF])
            length = rng.choice([0, 1, 4096, rng.getrandbits(32), rng.randrange(1, 300)])
            vram_off = rng.choice([0, VRAM - 1, rng.randrange(VRAM), rng.getrandbits(64)])
            addr = rng.choice([BUF_ADDR, SG_ADDR, rng.randrange(512 * MiB),
                               rng.getrandbits(64), rng.randrange(VRAM)])
            raw = DESC.pack(op | flags, length, vram_off, addr, 0, 0)
            if rng.random() < 0.1:
                raw = rng.randbytes(32)
            slot = rng.randrange(16)
            qt.memwrite(gpu.ring_base + slot * 32, raw)
            if rng.random() < 0.3:
                qt.memwrite(SG_ADDR, b"".join(
                    SG.pack(rng.choice([BUF_ADDR, rng.getrandbits(64)]),
                            rng.choice([0, 1, 4096, rng.getrandbits(32)]),
                            rng.choice([0, 0, 1])) for _ in range(4)))
            gpu.wr(hw("REG_CE_TAIL"), rng.randrange(17))
        elif kind < 0.92:
            dev.cfg_write(hw("REBAR_CAP_OFF") + 8, rng.getrandbits(32))
        elif kind < 0.97:
            gpu.rd(rng.randrange(0, 0x1000, 4))
        else:
            qt.memread(gpu.bar2 + rng.randrange(BAR), 8)
        if step % 250 == 0:
            assert qt.alive(), qt.log_tail()
    assert qt.alive(), qt.log_tail()
    assert gpu.counter("bad-register-accesses") > 0

    system_reset(qt)
    assert dev.bar_size(2) == BAR
    gpu.setup()
    assert gpu.rd(hw("REG_APER_USED")) == 0 and gpu.rd(hw("REG_CE_CTRL")) == 0
    assert gpu.rd(hw("REG_INT_STATUS")) == 0 and gpu.rd(hw("REG_ERR_STATUS")) == 0
    gpu.ring_init()
    data = pattern(8192, 3)
    assert gpu.map(GRANULE)[0] == hw("APER_OK")
    qt.memwrite(gpu.bar2, data)
    assert gpu.vram_read(GRANULE, len(data)) == data
    assert struct.unpack("<I", qt.memread(gpu.bar2, 4))[0] == int.from_bytes(data[:4], "little")


def _behind_root_port(tmp_path: Path) -> tuple[QTest, GPU, PCIDev]:
    """One p2p-gpu under a hotplug-capable root port whose windows we program."""
    qt = QTest(tmp_path, extra_args=[
        # Native PCIe hotplug (q35 defaults to ACPI hotplug, which needs AML).
        "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
        "-device", "pcie-root-port,id=rp0,bus=pcie.0,addr=03.0,chassis=1,slot=1",
        "-device", DEVICE.replace("addr=04.0", "bus=rp0")]).start()
    try:
        rp = qt.pci(0, 3)
        rp.cfg_write(0x18, 0x00_01_01_00)          # primary 0, secondary 1, subordinate 1
        rp.cfg_write(0x20, 0xFE00_FE00)            # memory window 0xfe000000-0xfe0fffff
        rp.cfg_write(0x24, 0x3FF1_0001)            # 64-bit prefetchable window ...
        rp.cfg_write(0x28, 0x8)                    # ... 0x8_0000_0000 -
        rp.cfg_write(0x2C, 0x8)                    # ... 0x8_3fff_ffff
        rp.enable()
        g = GPU(qt, qt.pci(1, 0)).setup()
        g.ring_init()
        g.msix_setup()
        g.wr(hw("REG_INT_ENABLE"), hw("INT_ALL"))
    except BaseException:
        qt.close()
        raise
    return qt, g, rp


def test_function_level_reset(gpu: GPU) -> None:
    dev = gpu.dev
    exp = dev.capabilities()[0x10]
    assert dev.cfg_read(exp + 4) & (1 << 28)                      # DEVCAP: FLR capable
    assert gpu.map(0)[0] == hw("APER_OK")
    gpu.resize(32 * MiB)
    gpu.wr(hw("REG_INT_ENABLE"), hw("INT_ALL"))
    gpu.wr(hw("REG_SCRATCH"), 0x1234)
    dev.cfg_write(exp + 8, dev.cfg_read(exp + 8, 2) | 0x8000, 2)  # DEVCTL: initiate FLR
    assert dev.cfg_read(exp + 8, 2) & 0x8000 == 0
    assert dev.cfg_read(0x04, 2) & 0x6 == 0                       # decode and mastering off
    assert dev.cfg_read(0x18) == 0xC and dev.cfg_read(0x1C) == 0  # BAR2 unassigned
    assert (dev.cfg_read(hw("REBAR_CAP_OFF") + 8) >> 8) & 0x3F == 2
    assert dev.bar_size(2) == BAR
    gpu.setup()
    for reg in ("REG_SCRATCH", "REG_INT_ENABLE", "REG_APER_USED", "REG_CE_CTRL",
                "REG_CE_RING_SIZE", "REG_CE_HEAD"):
        assert gpu.rd(hw(reg)) == 0, reg
    gpu.ring_init()
    gpu.vram_write(0, b"after flr")
    assert gpu.vram_read(0, 9) == b"after flr"


def test_behind_root_port(tmp_path: Path) -> None:
    """Under a pcie-root-port: the bridge's windows route BAR0 and a resized BAR2."""
    qt, g, _ = _behind_root_port(tmp_path)
    try:
        dev = g.dev
        assert dev.cfg_read(0) == hw("DEVICE_ID") << 16 | hw("VENDOR_ID")
        assert dev.ext_capabilities() == {0x15: hw("REBAR_CAP_OFF")}
        exp = dev.capabilities()[0x10]
        assert (dev.cfg_read(exp + 2, 2) >> 4) & 0xF == 0  # PCI_EXP_TYPE_ENDPOINT
        g.resize(64 * MiB)
        assert dev.bar_size(2) == 64 * MiB
        g.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
        data = pattern(4096, 7)
        qt.memwrite(g.bar2 + 63 * MiB, data)
        assert g.vram_read(63 * MiB, len(data)) == data
    finally:
        qt.close()


# intel-iommu (VT-d) in legacy mode, programmed by hand: bus 0 root entry,
# context entry for 00:04.0, a 3-level (39-bit) second-level table of 2 MiB
# pages. 0-16 MiB read/write, 16-18 MiB read-only, the rest unmapped.
DMAR = 0xFED9_0000
VTD_TABLES = 0x40_0000


def _vtd_identity(qt: QTest, devfn: int) -> None:
    root, ctx, l3, l2 = (VTD_TABLES + i * 4096 for i in range(4))
    qt.memset(VTD_TABLES, 4 * 4096, 0)
    qt.memwrite(root, struct.pack("<QQ", ctx | 1, 0))
    qt.memwrite(ctx + 16 * devfn, struct.pack("<QQ", l3 | 1, 1 | 1 << 8))  # AW 39, domain 1
    qt.memwrite(l3, struct.pack("<Q", l2 | 3))
    big = 1 << 7
    qt.memwrite(l2, b"".join(struct.pack("<Q", (i << 21) | big | 3) for i in range(8)))
    qt.memwrite(l2 + 8 * 8, struct.pack("<Q", (8 << 21) | big | 1))         # read-only
    qt.writeq(DMAR + 0x20, root)                   # RTADDR, legacy mode
    qt.writel(DMAR + 0x18, 1 << 30)                # GCMD.SRTP
    assert qt.readl(DMAR + 0x1C) & (1 << 30)
    qt.writel(DMAR + 0x18, 1 << 31)                # GCMD.TE
    assert qt.readl(DMAR + 0x1C) & (1 << 31)


def test_iommu_faults_end_copies_cleanly(tmp_path: Path) -> None:
    qt = QTest(tmp_path, extra_args=["-device", "intel-iommu,aw-bits=39,intremap=off",
                                     "-device", DEVICE]).start()
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        _vtd_identity(qt, 4 << 3)
        g.ring_init()
        g.msix_setup()
        g.wr(hw("REG_INT_ENABLE"), hw("INT_ALL"))
        ro, hole = BUF_ADDR, 32 * MiB
        qt.memwrite(ro, pattern(4096, 4))
        canary = pattern(8192, 5)
        qt.memwrite(hole, canary)
        qt.memwrite(ro + 4096, canary)
        g.vram_write(0, pattern(8192, 6), bounce=2 * MiB)
        results = g.run([
            Desc(OP_H2V, 4096, 0, ro),                 # read through a read-only mapping
            Desc(OP_V2H, 4096, 0, ro + 4096),          # write to it: fault
            Desc(OP_V2H, 8192, 0, hole),               # unmapped: fault
            Desc(OP_H2V, 4096, 65536, hole),           # (its VRAM range is now undefined)
            Desc(OP_V2H, 2 * MiB, 0, 15 * MiB),        # runs into the read-only part
        ])
        fault = DONE | hw("CE_DMA_FAULT")
        assert results == [(DONE, 4096), (fault, 0), (fault, 0), (fault, 0), (fault, MiB)]
        assert qt.memread(hole, 8192) == canary            # nothing outside the mapping
        assert qt.memread(ro + 4096, 8192) == canary
        assert g.counter("copy-errors") == 4
        assert g.msi_word(hw("VEC_ERROR")) == 0x100 + hw("VEC_ERROR")
        assert qt.readl(DMAR + 0x34) != 0                  # FSTS: the IOMMU saw faults
        assert g.vram_read(0, 4096, bounce=2 * MiB) == pattern(4096, 4)
        # A ring the IOMMU does not map halts the engine; translation off recovers it.
        g.ring_init(base=hole)
        g.post([Desc(OP_H2V, 16, 0, ro)])
        for _ in range(100):
            if g.rd(hw("REG_CE_STATUS")) & hw("CE_STATUS_HALTED"):
                break
        assert (g.rd(hw("REG_CE_STATUS")) >> 8) & 0xFF == hw("CE_RING_FAULT")
        qt.writel(DMAR + 0x18, 0)
        g.ring_init(base=hole)
        assert g.vram_read(0, 16) == pattern(4096, 4)[:16]
        assert qt.alive()
    finally:
        qt.close()


def test_migration_is_blocked(gpu: GPU) -> None:
    with pytest.raises(Exception, match="p2p-gpu"):
        gpu.qt.qmp("migrate", uri="exec:cat > /dev/null")
    assert gpu.qt.alive()


def test_hot_unplug_with_work_in_flight(tmp_path: Path) -> None:
    """Unplug while windows are mapped and a delayed completion is pending."""
    qt, g, rp = _behind_root_port(tmp_path)
    try:
        assert g.map(0)[0] == hw("APER_OK") and g.map(GRANULE)[0] == hw("APER_OK")
        qt.qom_set(g.path, "completion-delay-ns", 1_000_000_000)
        g.post([Desc(OP_H2V, 4096, 0, BUF_ADDR)])
        qt.qmp("device_del", id="gpu")
        # Play the guest: power the slot off, which completes the unplug.
        sltctl = rp.capabilities()[0x10] + 0x18
        rp.cfg_write(sltctl, 0x0400 | 0x0300 | 0x00C0, 2)   # PCC off, indicators off
        names = [p["name"] for p in qt.qmp("qom-list", path="/machine/peripheral")]
        assert "gpu" not in names
        qt.clock_step(2_000_000_000)                   # the cancelled timer must not fire
        assert qt.memread(BAR2_ADDR, 4) == b"\x00" * 4   # nothing decodes there now
        assert qt.alive(), qt.log_tail()
    finally:
        qt.close()


def test_intx_level_follows_status(gpu: GPU) -> None:
    """Without MSI-X, INTx is a level: PCI status bit 3 mirrors STATUS & ENABLE."""
    dev = gpu.dev
    assert dev.cfg_read(0x06, 2) & 0x08 == 0
    gpu.wr(hw("REG_ID"), 0)                                    # a register error
    assert gpu.rd(hw("REG_INT_STATUS")) & hw("INT_REG_ERROR")
    assert dev.cfg_read(0x06, 2) & 0x08 == 0                   # not enabled yet
    gpu.wr(hw("REG_INT_ENABLE"), hw("INT_REG_ERROR"))
    assert dev.cfg_read(0x06, 2) & 0x08
    gpu.wr(hw("REG_INT_STATUS"), hw("INT_REG_ERROR"))
    assert dev.cfg_read(0x06, 2) & 0x08 == 0
    gpu.wr(hw("REG_INT_ENABLE"), hw("INT_COPY_DONE"))
    gpu.qt.memwrite(BUF_ADDR, b"z" * 8)
    ((status, _),) = gpu.run([Desc(OP_H2V, 8, 0, BUF_ADDR, hw("DESC_INTR"))])
    assert status == DONE and dev.cfg_read(0x06, 2) & 0x08
    assert gpu.counter("interrupts") == 1


@pytest.mark.parametrize("how", ["dma", "msi-from-mmio", "msi-from-config", "flr-by-dma"])
def test_device_writes_that_remove_or_reset_itself(tmp_path: Path, how: str) -> None:
    """The device's own DMA or MSI write lands in config space (ECAM) and
    powers its slot off (unplug) or resets it (FLR) in the middle of its own
    work; nothing may touch freed or reset state (run this under ASAN)."""
    qt, g, rp = _behind_root_port(tmp_path)
    try:
        sltctl = rp.cfg_addr(rp.capabilities()[0x10] + 0x18)
        poweroff = 0x07C0                              # PCC off, indicators off
        qt.memwrite(BUF_ADDR, b"q" * 64)
        if how == "dma":
            g.vram_write(0, struct.pack("<H", poweroff))
            g.post([Desc(OP_V2H, 2, 0, sltctl, hw("DESC_INTR")),
                    Desc(OP_H2V, 64, 0, BUF_ADDR, hw("DESC_INTR"))])
        elif how.startswith("msi"):
            table = g.bar0 + hw("MSIX_TABLE_OFF") + 16 * hw("VEC_ERROR")
            qt.writel(table, sltctl)
            qt.writel(table + 8, poweroff)
            if how == "msi-from-mmio":
                g.wr64(hw("REG_ID"), 0)                # two register errors in one access
            else:
                g.dev.cfg_write(hw("REBAR_CAP_OFF") + 8, 40 << 8)   # unsupported size
        else:
            devctl = g.dev.cfg_addr(g.dev.capabilities()[0x10] + 8)
            g.vram_write(0, struct.pack("<H", 0x8000))
            g.post([Desc(OP_V2H, 2, 0, devctl, hw("DESC_INTR")),
                    Desc(OP_H2V, 64, 0, BUF_ADDR, hw("DESC_INTR"))])
        for _ in range(50):
            names = [p["name"] for p in qt.qmp("qom-list", path="/machine/peripheral")]
            if "gpu" not in names or how == "flr-by-dma":
                break
        qt.clock_step(1_000_000)
        assert qt.alive(), qt.log_tail()
        if how == "msi-from-config":
            # QEMU's re-entrancy guard blocks an MSI into ECAM while ECAM is
            # being written: the device stays, and still works.
            assert "gpu" in names
            g.vram_write(0, b"still here")
            assert g.vram_read(0, 10) == b"still here"
        elif how == "flr-by-dma":
            assert g.dev.cfg_read(0x04, 2) & 0x6 == 0   # FLR took effect
            g.setup()
            assert g.rd(hw("REG_CE_CTRL")) == 0 and g.rd(hw("REG_CE_HEAD")) == 0
            g.ring_init()
            assert g.vram_read(0, 2) == struct.pack("<H", 0x8000)
        else:
            assert "gpu" not in names
    finally:
        qt.close()

"""p2p-gpu against a hostile guest: regression tests from the second review.

- The device's own writes reset it mid-work.  QEMU's FLR path
  (pci_device_reset) clears the COMMAND register but leaves the bus-master
  region enabled, so after an FLR that the copy engine triggers itself its
  remaining DMA would still succeed: the engine has to notice the reset on its
  own and move nothing more, nor raise anything into the post-reset state.
- The engine copies VRAM onto its own BAR2 window (overlapping memcpy).
- BAR2 is resized under live windows with memory decoding on.

Run them under a sanitizer build too (P2PLAB_QEMU=path/to/asan/wrapper).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from tests.devices.test_p2p_gpu import DONE, OP_H2V, OP_V2H, start
from tests.support.p2p_gpu import BUF_ADDR, GPU, SG, SG_ADDR, Desc, hw

MiB = 1 << 20
RAM_END = 512 * MiB                 # QTest's default -m 512M
FLR = 0x8000                        # DEVCTL.BCR_FLR


def _gpu(tmp_path: Path) -> GPU:
    qt = start(tmp_path)
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        g.ring_init()
    except BaseException:
        qt.close()
        raise
    return g


def _devctl(g: GPU) -> int:
    return g.dev.cfg_addr(g.dev.capabilities()[0x10] + 8)


def _wait_flr(g: GPU) -> None:
    for _ in range(100):
        if g.dev.cfg_read(0x04, 2) & 0x6 == 0:
            return
    raise AssertionError("the FLR did not happen")


def test_sgl_stops_at_its_own_flr(tmp_path: Path) -> None:
    """Segment 1 resets the device through ECAM; segment 2 must not move data."""
    g = _gpu(tmp_path)
    qt = g.qt
    try:
        target = BUF_ADDR + MiB
        canary = b"\x5a" * 64
        qt.memwrite(target, canary)
        g.vram_write(0, struct.pack("<H", FLR) + b"after the reset" * 4)
        qt.memwrite(SG_ADDR, SG.pack(_devctl(g), 2, 0) + SG.pack(target, 60, 0))
        (idx,) = g.post([Desc(OP_V2H, 2, 0, SG_ADDR, hw("DESC_SGL"))])
        _wait_flr(g)
        qt.clock_step(1_000_000)
        assert qt.memread(target, 64) == canary
        assert qt.alive(), qt.log_tail()
        # The reset state is untouched: no write-back, no counters, no status.
        assert g.result(idx) == (0, 0)
        g.setup()
        for reg in ("REG_CE_CTRL", "REG_CE_HEAD", "REG_CE_COMPLETED", "REG_INT_STATUS"):
            assert g.rd(hw(reg)) == 0, reg
        g.ring_init()
        assert g.vram_read(0, 2) == struct.pack("<H", FLR)
    finally:
        qt.close()


def test_ring_fault_interrupt_that_resets_leaves_reset_state(tmp_path: Path) -> None:
    """A ring fault's MSI-X message triggers FLR; the batch's COPY_DONE is dropped."""
    g = _gpu(tmp_path)
    qt = g.qt
    try:
        g.msix_setup()
        table = g.bar0 + hw("MSIX_TABLE_OFF") + 16 * hw("VEC_ERROR")
        qt.writel(table, _devctl(g))
        qt.writel(table + 8, FLR)
        g.wr(hw("REG_INT_ENABLE"), hw("INT_COPY_ERROR"))
        # Entry 0 is the last 32 bytes of RAM, entry 1 is unassigned: a ring fault.
        base = RAM_END - 32
        qt.memwrite(BUF_ADDR, b"y" * 8)
        qt.memwrite(base, Desc(OP_H2V, 8, 0, BUF_ADDR, hw("DESC_INTR")).pack())
        g.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_RESET"))
        g.wr64(hw("REG_CE_RING_BASE"), base)
        g.wr(hw("REG_CE_RING_SIZE"), 4)
        g.wr(hw("REG_CE_CTRL"), hw("CE_CTRL_ENABLE"))
        g.wr(hw("REG_CE_TAIL"), 2)
        _wait_flr(g)
        qt.clock_step(1_000_000)
        assert qt.alive(), qt.log_tail()
        assert struct.unpack("<II", qt.memread(base + 24, 8)) == (DONE, 8)
        g.setup()
        for reg in ("REG_INT_STATUS", "REG_CE_STATUS", "REG_CE_CTRL", "REG_CE_HEAD"):
            assert g.rd(hw(reg)) == 0, reg
        g.ring_init()
        assert g.vram_read(0, 8) == b"y" * 8
    finally:
        qt.close()


def test_copy_onto_its_own_window_is_a_memmove(tmp_path: Path) -> None:
    """The engine's host address is its own BAR2, overlapping the VRAM it copies.

    QEMU's RAM path is a memcpy, undefined for overlapping buffers (ASAN:
    memcpy-param-overlap); the device bounces such chunks, so the result is
    that of memmove, in window and in direct mode.
    """
    g = _gpu(tmp_path)
    qt = g.qt
    try:
        data = bytes(range(256)) * 32
        assert g.map(0, slot=0)[0] == hw("APER_OK")
        qt.memwrite(g.bar2, data)
        ((st, xfer),) = g.run([Desc(OP_V2H, 4096, 0, g.bar2 + 16)])
        assert (st, xfer) == (DONE, 4096)
        assert qt.memread(g.bar2, 4112) == data[:16] + data[:4096]
        qt.memwrite(g.bar2, data)
        ((st, xfer),) = g.run([Desc(OP_H2V, 4096, 16, g.bar2)])
        assert (st, xfer) == (DONE, 4096)
        assert qt.memread(g.bar2, 4112) == data[:16] + data[:4096]
        # Direct mode: BAR2 offset == VRAM offset, the whole VRAM exposed.
        g.resize(64 * MiB)
        g.wr(hw("REG_APER_CTRL"), hw("APER_CTRL_DIRECT"))
        assert g.rd(hw("REG_APER_STATUS")) == hw("APER_OK")
        qt.memwrite(g.bar2 + 3 * MiB, data)
        ((st, xfer),) = g.run([Desc(OP_V2H, 4096, 3 * MiB + 16, g.bar2 + 3 * MiB)])
        assert (st, xfer) == (DONE, 4096)
        assert qt.memread(g.bar2 + 3 * MiB, 4096) == data[16:4112]
        assert qt.alive(), qt.log_tail()
    finally:
        qt.close()


def test_resize_with_decode_on_and_windows_mapped(tmp_path: Path) -> None:
    """Shrink BAR2 under live windows and decoding: nothing past the new end."""
    g = _gpu(tmp_path)
    qt, dev = g.qt, g.dev
    try:
        g.resize(64 * MiB)
        g.vram_write(40 * MiB, b"secret")
        assert g.map(40 * MiB, slot=50)[0] == hw("APER_OK")
        assert qt.memread(g.bar2 + 50 * MiB, 6) == b"secret"
        ctrl_off = g.rebar_ctrl_off()
        ctrl = dev.cfg_read(ctrl_off)
        dev.cfg_write(ctrl_off, (ctrl & ~0x3F00) | (0 << 8))       # 1 MiB, decode on
        assert dev.bar_size(2) == MiB
        assert g.rd(hw("REG_APER_USED")) == 0 and g.rd(hw("REG_APER_SLOTS")) == 1
        assert qt.memread(g.bar2 + 50 * MiB, 6) != b"secret"
        assert qt.memread(g.bar2, 4) == b"\xff" * 4
        # Grow again with decoding on: the old window does not come back.
        dev.cfg_write(ctrl_off, (ctrl & ~0x3F00) | (6 << 8))
        assert qt.memread(g.bar2 + 50 * MiB, 6) == b"\xff" * 6
        assert g.counter("aperture-unmaps") == 1
        assert qt.alive(), qt.log_tail()
    finally:
        qt.close()


def test_many_distinct_slots_map_in_linear_time(tmp_path: Path) -> None:
    """More than 32,767 distinct aperture slots, each mapped once.

    Every slot's window region used to share one name, which QOM numbers
    ("p2p-gpu.window[N]": a linear scan for a free N, up to 32,767): the
    32,768th distinct slot aborted QEMU, after minutes of quadratic lookups.
    Now each slot's region has its own name.
    """
    granule = 64 << 10
    qt = start(tmp_path, device="p2p-gpu,id=gpu,addr=04.0,vram-size=4G,bar-size=4G,"
                                "rebar-min=256M,aperture-granule=64K")
    try:
        g = GPU(qt, qt.pci(0, 4)).setup()
        slots = g.rd(hw("REG_APER_SLOTS"))
        assert slots == 65536
        n = (1 << 15) + 16
        regs = {r: g.bar0 + hw(r) for r in ("REG_APER_VRAM_OFF", "REG_APER_SLOT",
                                            "REG_APER_CMD", "REG_APER_STATUS")}
        start_t = time.monotonic()
        for first in range(0, n, 4096):
            lines = []
            for slot in range(first, min(first + 4096, n)):
                lines += [f"writeq {regs['REG_APER_VRAM_OFF']:#x} {slot * granule:#x}",
                          f"writel {regs['REG_APER_SLOT']:#x} {slot:#x}",
                          f"writel {regs['REG_APER_CMD']:#x} {hw('APER_CMD_MAP'):#x}",
                          f"readl {regs['REG_APER_STATUS']:#x}",
                          f"writel {regs['REG_APER_CMD']:#x} {hw('APER_CMD_UNMAP'):#x}",
                          f"readl {regs['REG_APER_STATUS']:#x}"]
            answers = qt.batch(lines)
            statuses = {int(a[0], 16) for a in answers if a}
            assert statuses == {hw("APER_OK")}, (first, statuses)
        elapsed = time.monotonic() - start_t
        assert qt.alive(), qt.log_tail()
        assert g.counter("aperture-maps") == n
        assert g.counter("aperture-unmaps") == n
        children = {p["name"] for p in qt.qmp("qom-list", path="/machine/peripheral/gpu")}
        assert f"p2p-gpu.window{n - 1}[0]" in children
        # Quadratic lookups took minutes here; linear work is seconds even under load.
        print(f"{n} distinct slots mapped and unmapped in {elapsed:.1f} s")
    finally:
        qt.close()

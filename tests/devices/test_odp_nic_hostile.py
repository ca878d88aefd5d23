"""odp-nic against a hostile guest and a hostile link peer: regression tests.

Each test pins one bug found in review: DMA that unplugs the device from
inside its own callbacks, INVALIDATE at the top of the address space, a READ
completed without its data, and messages that change shape half-way.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.devices.test_odp_nic_link import frame, netdev
from tests.support import odp_nic as o
from tests.support.odp_nic import OdpNic, Wqe
from tests.support.poll import wait_until
from tests.support.qtest import ECAM_BASE, PCIDev, QTest

# Native PCIe hotplug: powering the slot off (slot control) unplugs the device.
HOTPLUG = ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
           "-device", "pcie-root-port,id=rp0,bus=pcie.0,addr=06.0,chassis=1,slot=1"]
SLTCTL_OFF = 0x0400 | 0x0300          # power controller off, power indicator off


def root_port(qt: QTest) -> PCIDev:
    rp = qt.pci(0, 6)
    rp.cfg_write(0x18, 0x0001_0100)    # buses: primary 0, secondary 1, subordinate 1
    rp.cfg_write(0x20, 0xFE20_FE00)    # memory window 0xFE000000..0xFE2FFFFF
    rp.enable()
    return rp


def slot_control(rp: PCIDev) -> tuple[int, int]:
    """(VA offset of the root port's slot control in its ECAM page, value
    that powers the slot off)."""
    cap = rp.capabilities()[0x10]
    return cap + 0x18, rp.cfg_read(cap + 0x18, 2) | SLTCTL_OFF


def peripherals(qt: QTest) -> list[str]:
    return [p["name"] for p in qt.qmp("qom-list", path="/machine/peripheral")]


def test_own_dma_unplugging_the_device_is_not_a_use_after_free(tmp_path: Path) -> None:
    """A loopback WRITE into ECAM powers our slot off: QEMU unplugs the NIC
    inside the WR engine, which must not touch freed tables afterwards."""
    args = [*HOTPLUG, "-device", "odp-nic,id=nic,bus=rp0,addr=00.0"]
    with QTest(tmp_path, extra_args=args) as qt:
        rp = root_port(qt)
        nic = OdpNic(qt, bus=1, dev=0, qom="/machine/peripheral/nic").setup()
        cq = nic.create_cq(0)
        nic.create_eq()
        qp = nic.create_qp(0, cq)
        off, val = slot_control(rp)
        src = nic.buffer(o.PAGE)
        qt.memwrite(src.iova, struct.pack("<H", val))
        assert nic.create_mr(1, src.va, o.PAGE, xlt=src.xlt()) == o.ST_OK
        ecam = 0x5000_0000
        assert nic.create_mr(2, ecam, o.PAGE,
                             xlt=[(ECAM_BASE | 6 << 15) | o.XLT_RW]) == o.ST_OK
        # Several WRs: the engine goes on with the next ones after the unplug.
        nic.post_send(qp, *[Wqe(o.WR_WRITE, wr_id=i, sges=[(1, src.va, 2)], rkey=2,
                                remote_va=ecam + off) for i in range(8)])
        qt.memread(0, 16)
        assert "nic" not in peripherals(qt)
        qt.clock_step(5 * 10**9)
        qt.memread(0, 16)
        assert qt.alive()


def test_peer_frame_unplugging_the_device_is_not_a_use_after_free(tmp_path: Path) -> None:
    """The same from the wire: a peer's WRITE lands in ECAM, and the NIC is
    unplugged inside its own receive callback."""
    with tempfile.TemporaryDirectory(prefix="odpu") as short:
        sb, sx = Path(short) / "b", Path(short) / "x"
        args = [*HOTPLUG, "-netdev", netdev(sb, sx),
                "-device", "odp-nic,id=nic,bus=rp0,addr=00.0,netdev=n0"]
        with QTest(tmp_path, extra_args=args) as qt, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(sx))
            sock.settimeout(0.0)
            rp = root_port(qt)
            nic = OdpNic(qt, bus=1, dev=0, qom="/machine/peripheral/nic").setup()
            cq = nic.create_cq(0)
            nic.create_eq()
            nic.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
            off, val = slot_control(rp)
            ecam = 0x5000_0000
            assert nic.create_mr(2, ecam, o.PAGE, access=o.ACCESS_ALL,
                                 xlt=[(ECAM_BASE | 6 << 15) | o.XLT_RW]) == o.ST_OK
            payload = struct.pack("<H", val)
            for _ in range(3):
                sock.sendto(frame(1, rkey=2, remote_va=ecam + off, total_len=2,
                                  payload=payload), str(sb))
                for _ in range(50):
                    qt.memread(0, 16)
            assert "nic" not in peripherals(qt)
            qt.clock_step(5 * 10**9)
            with contextlib.suppress(OSError):
                sock.sendto(frame(1, rkey=2, remote_va=ecam, total_len=2, payload=payload),
                            str(sb))
            qt.memread(0, 16)
            assert qt.alive()


@contextlib.contextmanager
def one_nic(tmp_path: Path) -> Iterator[tuple[QTest, OdpNic]]:
    with QTest(tmp_path, extra_args=["-device", "odp-nic,id=nic,addr=05.0"]) as qt:
        yield qt, OdpNic(qt).setup()


def test_invalidate_reaches_a_region_ending_at_2_64(tmp_path: Path) -> None:
    """A region may end exactly at 2^64; INVALIDATE of it (or of a range
    that runs past 2^64) must still zap its entries: it is a fence."""
    with one_nic(tmp_path) as (qt, nic):
        cq = nic.create_cq(0)
        nic.create_eq()
        qp = nic.create_qp(0, cq)
        src = nic.buffer(64)
        assert nic.create_mr(1, src.va, 64, xlt=src.xlt()) == o.ST_OK
        top = nic.buffer(2 * o.PAGE)
        start = 2**64 - 2 * o.PAGE
        for key, (va, length) in ((2, (start, 2 * o.PAGE)),          # exact range
                                  (3, (start + o.PAGE, 2**64 - 1)),   # wraps: to the end
                                  (4, (start + 100, 2**63))):
            assert nic.create_mr(key, start, 2 * o.PAGE, xlt=top.xlt()) == o.ST_OK
            assert nic.invalidate(key, va, length) == o.ST_OK
            # The last page is gone: a pinned hole, an access error, no DMA.
            nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=key, sges=[(1, src.va, 8)], rkey=key,
                                  remote_va=2**64 - 8))
            c = nic.poll_one(cq)
            assert (c.wr_id, c.status) == (key, o.WC_REM_ACCESS_ERR)
        # PREFETCH sees the zapped tail of an ODP region there too.
        assert nic.create_mr(5, start, 2 * o.PAGE, mode=o.MR_ODP) == o.ST_OK
        assert nic.prefetch(5, 2**64 - 16, 16) == (o.ST_OK, 1)
        [ev] = nic.poll_eq()
        assert (ev.key, ev.va, ev.length) == (5, 2**64 - 16, 16)
        assert qt.alive()


@contextlib.contextmanager
def raw_peer(tmp_path: Path) -> Iterator[tuple[QTest, OdpNic, socket.socket, str]]:
    """One NIC whose link ends in a socket the test plays the peer on."""
    with tempfile.TemporaryDirectory(prefix="odpr") as short:
        sb, sx = Path(short) / "b", Path(short) / "x"
        args = ["-netdev", netdev(sb, sx), "-device", "odp-nic,id=nic,addr=05.0,netdev=n0"]
        with QTest(tmp_path, extra_args=args) as qt, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(sx))
            sock.settimeout(0.0)
            yield qt, OdpNic(qt).setup(), sock, str(sb)


def recv_frame(nic: OdpNic, sock: socket.socket) -> bytes:
    for _ in range(2000):
        nic.rd(o.REG_STATUS)
        with contextlib.suppress(BlockingIOError):
            return sock.recv(65536)
    raise AssertionError("no frame from the NIC")


def test_ok_ack_does_not_complete_a_read(tmp_path: Path) -> None:
    """A READ completes only with its READ_RESP data, never with an ACK OK."""
    with raw_peer(tmp_path) as (qt, nic, sock, dest):
        cq = nic.create_cq(0)
        nic.create_eq()
        qp = nic.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
        buf = nic.buffer(64)
        qt.memwrite(buf.iova, b"\xee" * 64)
        assert nic.create_mr(1, buf.va, 64, xlt=buf.xlt()) == o.ST_OK
        nic.post_send(qp, Wqe(o.WR_READ, wr_id=7, sges=[(1, buf.va, 16)], rkey=2,
                              remote_va=0x1000))
        req = recv_frame(nic, sock)
        assert req[15] == 2                                  # READ_REQ
        msn = struct.unpack_from("<I", req, 26)[0]
        rx = nic.counters()["link-rx"]
        sock.sendto(frame(5, msn=msn, total_len=0, status=0), dest)     # ACK OK
        wait_until(lambda: nic.counters()["link-rx"] == rx + 1, "the ACK to arrive")
        assert nic.cq_empty(cq)
        assert nic.qp_state(qp) == 3                         # still waiting for data
        sock.sendto(frame(3, msn=msn, total_len=16, payload=b"R" * 16), dest)
        c = nic.poll_one(cq)
        assert (c.wr_id, c.status, c.byte_len) == (7, o.WC_SUCCESS, 16)
        assert qt.memread(buf.iova, 17) == b"R" * 16 + b"\xee"


def test_segments_must_match_the_message_they_continue(tmp_path: Path) -> None:
    """A SEND started at offset 0 cannot be finished by a WRITE segment, nor
    by a segment that claims another total length."""
    with raw_peer(tmp_path) as (qt, nic, sock, dest):
        cq = nic.create_cq(0)
        nic.create_eq()
        qp = nic.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
        rbuf = nic.buffer(64)
        wbuf = nic.buffer(64)
        assert nic.create_mr(1, rbuf.va, 64, xlt=rbuf.xlt()) == o.ST_OK
        assert nic.create_mr(2, wbuf.va, 64, xlt=wbuf.xlt()) == o.ST_OK
        nic.post_recv(qp, Wqe(o.WR_RECV, wr_id=5, sges=[(1, rbuf.va, 64)]))
        dropped = nic.counters()["link-dropped"]
        for second in (frame(1, msn=1, rkey=2, remote_va=wbuf.va, offset=4, total_len=8,
                             payload=b"WXYZ"),                     # a WRITE segment
                       frame(4, msn=1, offset=4, total_len=6, payload=b"WX")):  # total
            sock.sendto(frame(4, msn=1, total_len=8, payload=b"abcd", flags=0), dest)
            sock.sendto(second, dest)
        wait_until(lambda: nic.counters()["link-dropped"] == dropped + 2,
                   "both bad segments to be dropped")
        assert nic.cq_empty(cq)                              # no RECV completed
        assert qt.memread(wbuf.iova, 8) == bytes(8)
        # A well-formed SEND still goes through.
        sock.sendto(frame(4, msn=2, rkey=0x55, total_len=8, payload=b"abcd", flags=0), dest)
        sock.sendto(frame(4, msn=2, rkey=0x55, offset=4, total_len=8, payload=b"efgh"), dest)
        r = nic.poll_one(cq)
        assert (r.wr_id, r.opcode, r.status, r.byte_len, r.imm) == (5, o.WR_RECV, 0, 8, 0x55)
        assert qt.memread(rbuf.iova, 8) == b"abcdefgh"


def test_synchronous_nak_does_not_wedge_the_sender(tmp_path: Path) -> None:
    """Two NICs on one hub in one QEMU: the responder NAKs the first segment
    of a long WRITE while the sender is still in its send loop."""
    args = ["-netdev", "hubport,id=h0,hubid=0", "-netdev", "hubport,id=h1,hubid=0",
            "-device", "odp-nic,id=nic,addr=05.0,netdev=h0",
            "-device", "odp-nic,id=peer,addr=06.0,netdev=h1"]
    with QTest(tmp_path, extra_args=args) as qt:
        a = OdpNic(qt).setup()
        b = OdpNic(qt, dev=6, bar0=0xFE20_0000, bar2=0xFE30_0000, mem_base=0x1200_0000,
                   mem_size=0x0800_0000,
                   qom="/machine/peripheral/peer").setup()
        cq = a.create_cq(0)
        a.create_eq()
        qp = a.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
        bcq = b.create_cq(0)
        b.create_eq()
        b.create_qp(0, bcq, dest=o.DEST_LINK, remote_qpn=0)
        n = 3 * o.PAGE
        src, dst = a.buffer(n), b.buffer(n)
        assert a.create_mr(1, src.va, n, xlt=src.xlt()) == o.ST_OK
        assert b.create_mr(2, dst.va, n, xlt=dst.xlt()) == o.ST_OK
        a.qt.memwrite(src.iova, bytes(range(256)) * (n // 256))
        a.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=9,
                            remote_va=dst.va))
        [c] = a.poll_cq(cq)
        assert (c.wr_id, c.status) == (1, o.WC_REM_ACCESS_ERR)
        a.post_send(qp, Wqe(o.WR_WRITE, wr_id=2, sges=[(1, src.va, n)], rkey=2,
                            remote_va=dst.va))
        [c] = a.poll_cq(cq, step_ns=1_000_000)
        assert (c.wr_id, c.status) == (2, o.WC_SUCCESS)
        assert qt.memread(dst.iova, n) == bytes(range(256)) * (n // 256)
        assert a.qp_state(qp) == 0


def test_big_table_commands_yield_and_all_complete(tmp_path: Path) -> None:
    """Batches of maximal UPDATE_XLTs run over several main-loop turns (a
    table-work budget per run) and every one of them still completes."""
    with one_nic(tmp_path) as (qt, nic):
        pages = nic.rd(0x034)                                # MAX_XLT_PAGES
        assert nic.create_mr(1, o.VA_BASE, pages * o.PAGE, mode=o.MR_ODP) == o.ST_OK
        buf = nic.buffer(o.PAGE)
        lst = nic.write_list([(buf.iova & ~(o.PAGE - 1)) | o.XLT_RW] * pages)
        size = 1 << nic.cmdq_log
        batch = size - 1
        first = nic.cmdq_pi
        for i in range(batch):
            slot = nic.cmdq_base + 64 * ((first + i) % size)
            args = struct.pack("<IIQQ", 1, pages, 0, lst)
            qt.memwrite(slot, struct.pack("<BBBBIQ", o.CMD_UPDATE_XLT, 0xFF, 1, 0, i, 0)
                        + args.ljust(48, b"\0"))
        nic.cmdq_pi = (first + batch) & 0xFFFFFFFF
        nic.wr(o.REG_CMDQ_PI, nic.cmdq_pi)
        for _ in range(10000):
            if nic.rd(o.REG_CMDQ_CI) == nic.cmdq_pi:
                break
        assert nic.rd(o.REG_CMDQ_CI) == nic.cmdq_pi
        for i in range(batch):
            raw = qt.memread(nic.cmdq_base + 64 * ((first + i) % size), 16)
            _, status, owner, _, token, _ = struct.unpack("<BBBBIQ", raw)
            assert (status, owner, token) == (o.ST_OK, 0, i)
        # The table is really filled: a PREFETCH of the last page finds it.
        assert nic.prefetch(1, o.VA_BASE + (pages - 1) * o.PAGE, o.PAGE) == (o.ST_OK, 0)

"""Two odp-nic devices in two QEMU processes, linked by a dgram netdev."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import odp_nic as o
from tests.support.odp_nic import Buffer, OdpNic, Wqe
from tests.support.qtest import QTest

MS = 1_000_000


@dataclass
class Side:
    qt: QTest
    nic: OdpNic
    cq: o.Ring
    qp: o.QP


def netdev(local: Path, remote: Path) -> str:
    return (f"dgram,id=n0,local.type=unix,local.path={local},"
            f"remote.type=unix,remote.path={remote}")


def stream(path: Path, server: bool) -> str:
    return (f"stream,id=n0,server={'on' if server else 'off'},addr.type=unix,"
            f"addr.path={path}")


@contextlib.contextmanager
def linked(tmp_path: Path, transport: str = "dgram") -> Iterator[tuple[Side, Side]]:
    """Two QEMUs; A also dumps the link to tmp_path/a/link.pcap."""
    # Unix socket paths must stay short: keep them out of pytest's tmp_path.
    with tempfile.TemporaryDirectory(prefix="odpl") as short:
        sa, sb = Path(short) / "a", Path(short) / "b"
        sides: list[Side] = []
        qts: list[QTest] = []
        try:
            for name, local, remote, mac in (("a", sa, sb, "52:54:00:00:0d:0a"),
                                             ("b", sb, sa, "52:54:00:00:0d:0b")):
                nd = netdev(local, remote) if transport == "dgram" else \
                    stream(sa, server=name == "a")
                dump = ["-object", f"filter-dump,id=f0,netdev=n0,file={tmp_path}/a/link.pcap"] \
                    if name == "a" else []
                qt = QTest(tmp_path / name, extra_args=[
                    "-netdev", nd, *dump,
                    "-device", f"odp-nic,id=nic,addr=05.0,netdev=n0,mac={mac}"])
                qts.append(qt.start())
                nic = OdpNic(qt).setup()
                cq = nic.create_cq(0)
                nic.create_eq()
                qp = nic.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
                sides.append(Side(qt, nic, cq, qp))
            yield sides[0], sides[1]
        finally:
            for qt in qts:
                qt.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    with linked(tmp_path) as sides:
        yield sides


def data(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def regions(a: Side, b: Side, n: int, b_mode: int = o.MR_PINNED) -> tuple[Buffer, Buffer]:
    src, dst = a.nic.buffer(n, offset=40), b.nic.buffer(n, offset=12)
    assert a.nic.create_mr(1, src.va, n, xlt=src.xlt()) == o.ST_OK
    xlt = dst.xlt() if b_mode == o.MR_PINNED else None
    assert b.nic.create_mr(2, dst.va, n, mode=b_mode, xlt=xlt) == o.ST_OK
    return src, dst


def test_rdma_write_read_send_across(pair: tuple[Side, Side]) -> None:
    a, b = pair
    assert a.nic.rd(o.REG_STATUS) & 2              # link up
    n = 3 * o.PAGE + 77                            # several MTU segments
    src, dst = regions(a, b, n)
    a.qt.memwrite(src.iova, data(n, 1))
    a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=2,
                              remote_va=dst.va))
    [c] = a.nic.poll_cq(a.cq)
    assert (c.wr_id, c.status, c.byte_len) == (1, o.WC_SUCCESS, n)
    assert b.qt.memread(dst.iova, n) == data(n, 1)
    # READ it back into another buffer on A.
    back = a.nic.buffer(n)
    assert a.nic.create_mr(3, back.va, n, xlt=back.xlt()) == o.ST_OK
    a.nic.post_send(a.qp, Wqe(o.WR_READ, wr_id=2, sges=[(3, back.va, n)], rkey=2,
                              remote_va=dst.va))
    [c] = a.nic.poll_cq(a.cq)
    assert (c.wr_id, c.status, c.byte_len) == (2, o.WC_SUCCESS, n)
    assert a.qt.memread(back.iova, n) == data(n, 1)
    # SEND into B's receive queue, with immediate data.
    rbuf = b.nic.buffer(8192)
    assert b.nic.create_mr(4, rbuf.va, rbuf.size, xlt=rbuf.xlt()) == o.ST_OK
    b.nic.post_recv(b.qp, Wqe(o.WR_RECV, wr_id=77, sges=[(4, rbuf.va, rbuf.size)]))
    a.nic.post_send(a.qp, Wqe(o.WR_SEND, wr_id=3, sges=[(1, src.va, 5000)], imm=0x1234))
    [c] = a.nic.poll_cq(a.cq)
    assert c.status == o.WC_SUCCESS
    [r] = b.nic.poll_cq(b.cq)
    assert (r.wr_id, r.opcode, r.status, r.byte_len, r.imm) == (77, o.WR_RECV, 0, 5000, 0x1234)
    assert b.qt.memread(rbuf.iova, 5000) == data(n, 1)[:5000]
    ca, cb = a.nic.counters(), b.nic.counters()
    assert ca["link-tx"] >= 6 and cb["link-rx"] >= 6 and cb["link-tx"] >= 3
    # Remote errors come back as error completions.
    a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=4, sges=[(1, src.va, 64)], rkey=9,
                              remote_va=dst.va))
    a.nic.post_send(a.qp, Wqe(o.WR_READ, wr_id=5, sges=[(3, back.va, 64)], rkey=2,
                              remote_va=dst.va + n))
    got = a.nic.poll_cq(a.cq, 2)
    assert [(c.wr_id, c.status) for c in got] == [(4, o.WC_REM_ACCESS_ERR),
                                                  (5, o.WC_REM_ACCESS_ERR)]


def test_remote_odp_fault_rnr_then_success(pair: tuple[Side, Side]) -> None:
    a, b = pair
    n = 2 * o.PAGE
    src, dst = regions(a, b, n, b_mode=o.MR_ODP)
    a.qt.memwrite(src.iova, data(n, 3))
    a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=9, sges=[(1, src.va, n)], rkey=2,
                              remote_va=dst.va))
    [ev] = b.nic.poll_eq()                     # the responder faults on its region
    assert (ev.type, ev.qpn, ev.key, ev.va, ev.access) == (
        o.EV_PAGE_FAULT, o.QPN_NONE, 2, dst.va, o.FAULT_WRITE)
    assert b.nic.update_xlt(2, 0, dst.xlt()) == o.ST_OK
    # The initiator retries after rnr-delay-us of virtual time.
    [c] = a.nic.poll_cq(a.cq, step_ns=MS)
    assert (c.wr_id, c.status) == (9, o.WC_SUCCESS)
    assert b.qt.memread(dst.iova, n) == data(n, 3)
    assert a.nic.counters()["link-retries"] >= 1


def test_link_faults_drop_corrupt_delay_down(pair: tuple[Side, Side]) -> None:
    a, b = pair
    n = 2 * o.PAGE
    src, dst = regions(a, b, n)
    a.qt.memwrite(src.iova, data(n, 5))
    w = Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=2, remote_va=dst.va)
    # Drop the first frame: the responder sees a hole, the initiator times out
    # and retransmits the message.
    a.nic.qom_set("link-drop-next", 1)
    a.nic.post_send(a.qp, w)
    [c] = a.nic.poll_cq(a.cq, step_ns=10 * MS)
    assert c.status == o.WC_SUCCESS
    assert a.nic.counters()["link-retries"] >= 1
    assert b.qt.memread(dst.iova, n) == data(n, 5)
    # Corrupt the next frame: the responder drops it on CRC.
    dropped = b.nic.counters()["link-dropped"]
    a.nic.qom_set("link-corrupt-next", 1)
    a.nic.post_send(a.qp, w)
    [c] = a.nic.poll_cq(a.cq, step_ns=10 * MS)
    assert c.status == o.WC_SUCCESS
    assert b.nic.counters()["link-dropped"] > dropped
    # Delay: frames wait for virtual time to pass.
    a.nic.qom_set("link-delay-ns", 5 * MS)
    a.nic.post_send(a.qp, w)
    [c] = a.nic.poll_cq(a.cq, step_ns=MS)
    assert c.status == o.WC_SUCCESS
    a.nic.qom_set("link-delay-ns", 0)
    # Link down: retries run out.
    a.nic.qom_set("link-down", True)
    assert not a.nic.rd(o.REG_STATUS) & 2
    a.nic.post_send(a.qp, w)
    [c] = a.nic.poll_cq(a.cq, step_ns=25 * MS)
    assert c.status == o.WC_RETRY_EXC
    a.nic.qom_set("link-down", False)
    a.nic.post_send(a.qp, w)
    [c] = a.nic.poll_cq(a.cq, step_ns=MS)
    assert c.status == o.WC_SUCCESS


def test_pcap_capture_shows_the_wire_format(tmp_path: Path) -> None:
    with linked(tmp_path) as (a, b):
        src, dst = regions(a, b, 100)
        a.qt.memwrite(src.iova, data(100, 7))
        a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, 100)], rkey=2,
                                  remote_va=dst.va))
        assert a.nic.poll_cq(a.cq)[0].status == o.WC_SUCCESS
    pcap = (tmp_path / "a" / "link.pcap").read_bytes()
    assert struct.unpack("<I", pcap[:4])[0] == 0xA1B2C3D4
    frames, off = [], 24
    while off + 16 <= len(pcap):
        incl = struct.unpack("<I", pcap[off + 8:off + 12])[0]
        frames.append(pcap[off + 16:off + 16 + incl])
        off += 16 + incl
    ours = [f for f in frames if f[12:14] == b"\x88\xb5"]
    ops = [f[15] for f in ours]
    assert 1 in ops and 5 in ops                     # the WRITE and its ACK
    write = next(f for f in ours if f[15] == 1)
    assert write[6:12] == bytes.fromhex("525400000d0a")          # source MAC
    assert struct.unpack("<I", write[14 + 20:14 + 24])[0] == 100   # payload_len
    assert write[62:162] == data(100, 7)


def test_stream_netdev(tmp_path: Path) -> None:
    with linked(tmp_path, "stream") as (a, b):
        src, dst = regions(a, b, 3000)
        a.qt.memwrite(src.iova, data(3000, 8))
        a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, 3000)], rkey=2,
                                  remote_va=dst.va))
        # The client may still be connecting: lost frames are retransmitted.
        [c] = a.nic.poll_cq(a.cq, step_ns=5 * MS)
        assert c.status == o.WC_SUCCESS
        assert b.qt.memread(dst.iova, 3000) == data(3000, 8)


def frame(opcode: int, dst_qpn: int = 0, src_qpn: int = 0, msn: int = 1, rkey: int = 2,
          remote_va: int = 0, offset: int = 0, total_len: int = 0, payload: bytes = b"",
          flags: int = 1, status: int = 0, version: int = 1, good_crc: bool = True,
          payload_len: int | None = None) -> bytes:
    plen = len(payload) if payload_len is None else payload_len
    hdr = struct.pack("<BBBBIIIIIQQII", version, opcode, flags, status, dst_qpn, src_qpn,
                      msn, rkey, plen, remote_va, offset, total_len, 0)
    crc = zlib.crc32(hdr + payload) ^ (0 if good_crc else 1)
    hdr = hdr[:44] + struct.pack("<I", crc)
    return b"\xff" * 6 + bytes.fromhex("525400000dff") + b"\x88\xb5" + hdr + payload


def test_hostile_peer_frames(tmp_path: Path) -> None:
    """Frames with valid CRCs and hostile fields, straight onto B's socket."""
    rng = random.Random(4242)
    with tempfile.TemporaryDirectory(prefix="odph") as short:
        sb, sx = Path(short) / "b", Path(short) / "x"
        args = ["-netdev", netdev(sb, sx), "-device", "odp-nic,id=nic,addr=05.0,netdev=n0"]
        with QTest(tmp_path, extra_args=args) as qt:
            nic = OdpNic(qt).setup()
            cq = nic.create_cq(0)
            nic.create_eq(log_size=8)
            qp = nic.create_qp(0, cq, dest=o.DEST_LINK, remote_qpn=0)
            nic.create_qp(1, cq)                                   # a loopback QP
            buf = nic.buffer(3 * o.PAGE, offset=5)
            assert nic.create_mr(2, buf.va, buf.size, xlt=buf.xlt()) == o.ST_OK
            odp = nic.buffer(o.PAGE)
            assert nic.create_mr(3, odp.va, odp.size, mode=o.MR_ODP) == o.ST_OK
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(sx))
            sock.settimeout(0.0)

            def send(f: bytes) -> None:
                for _ in range(10000):
                    try:
                        sock.sendto(f, str(sb))
                        return
                    except BlockingIOError:
                        # Drain QEMU's answers (it may be blocked sending them)
                        # and let it drain its own socket.
                        with contextlib.suppress(BlockingIOError):
                            while True:
                                sock.recv(65536)
                        nic.rd(o.REG_STATUS)
                raise AssertionError("QEMU stopped reading the link")

            try:
                # A well-formed WRITE lands and is ACKed.
                send(frame(1, remote_va=buf.va, total_len=4, payload=b"ping"))
                ack = b""
                for _ in range(1000):
                    nic.rd(o.REG_STATUS)
                    with contextlib.suppress(BlockingIOError):
                        ack = sock.recv(65536)
                        break
                assert ack[12:14] == b"\x88\xb5" and ack[15] == 5 and ack[17] == 0
                assert qt.memread(buf.iova, 4) == b"ping"
                for _ in range(1500):
                    op = rng.choice([1, 2, 3, 4, 5, 0, 9])
                    va = rng.choice([buf.va, buf.va + buf.size - 8, odp.va, 0, 2**64 - 64,
                                     buf.va + rng.randrange(-4096, 3 * 4096)])
                    total = rng.choice([0, 1, 64, 4096, 5000, 1 << 30, (1 << 30) + 1,
                                        2**32 - 1, rng.randrange(1 << 16)])
                    payload = bytes(rng.getrandbits(8)
                                    for _ in range(rng.choice([0, 1, 64, 100, 4096])))
                    f = frame(op, dst_qpn=rng.choice([0, 0, 1, 7, 2**32 - 1]),
                              src_qpn=rng.randrange(4), msn=rng.randrange(4),
                              rkey=rng.choice([2, 3, 9, 2**32 - 1]), remote_va=va,
                              offset=rng.choice([0, 0, 64, total, 2**63, total - 1 & (2**64 - 1)]),
                              total_len=total & 0xFFFFFFFF, payload=payload,
                              flags=rng.randrange(4), status=rng.randrange(6),
                              version=rng.choice([1, 1, 1, 2]), good_crc=rng.random() < 0.9,
                              payload_len=rng.choice([None, None, None, 0, 1 << 20]))
                    if rng.random() < 0.6:          # plausible: passes the header checks
                        plen = len(payload)
                        tot = rng.choice([plen, plen, plen + rng.randrange(8192)])
                        f = frame(op, dst_qpn=rng.choice([0, 0, 1]), msn=rng.randrange(4),
                                  rkey=rng.choice([2, 3, 9]), remote_va=va,
                                  offset=rng.choice([0, tot - plen]), total_len=tot,
                                  payload=payload, flags=rng.randrange(2),
                                  status=rng.randrange(6))
                    if rng.random() < 0.05:
                        # Truncated, but never empty: QEMU's dgram netdev takes a
                        # zero-length datagram for end of connection and stops reading.
                        f = f[:rng.randrange(1, len(f))]
                    send(f)
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            sock.recv(65536)
                nic.rd(o.REG_STATUS)
                assert qt.alive()
                cnt = nic.counters()
                assert cnt["link-rx"] > 100 and cnt["link-dropped"] > 10
                # Still a working NIC: a loopback WRITE, and a WRITE from the "peer".
                nic.qom_set("fail-next-dma", 0)
                send(frame(1, remote_va=buf.va, total_len=4, payload=b"pong"))
                for _ in range(200):
                    nic.rd(o.REG_STATUS)
                assert qt.memread(buf.iova, 4) == b"pong"
                assert nic.qp_state(qp) in (0, 3, 4)
            finally:
                sock.close()


def test_initiator_local_odp_faults_over_the_link(pair: tuple[Side, Side]) -> None:
    a, b = pair
    n = 2 * o.PAGE + 300
    src, dst = a.nic.buffer(n), b.nic.buffer(n)
    a.qt.memwrite(src.iova, data(n, 11))
    assert a.nic.create_mr(1, src.va, n, mode=o.MR_ODP) == o.ST_OK
    assert a.nic.update_xlt(1, 0, src.xlt()[:1]) == o.ST_OK        # first page only
    assert b.nic.create_mr(2, dst.va, n, xlt=dst.xlt()) == o.ST_OK
    a.nic.post_send(a.qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=2,
                              remote_va=dst.va))
    [ev] = a.nic.poll_eq()                    # one segment went out, then the fault
    assert (ev.qpn, ev.key, ev.va, ev.access) == (0, 1, src.va + o.PAGE, o.FAULT_READ)
    assert a.nic.update_xlt(1, 0, src.xlt()) == o.ST_OK
    assert a.nic.resume(0) == o.ST_OK         # the message starts over at offset 0
    [c] = a.nic.poll_cq(a.cq)
    assert c.status == o.WC_SUCCESS
    assert b.qt.memread(dst.iova, n) == data(n, 11)
    # READ into a local ODP buffer: the fault hits while writing the response.
    back = a.nic.buffer(n)
    assert a.nic.create_mr(3, back.va, n, mode=o.MR_ODP) == o.ST_OK
    a.nic.post_send(a.qp, Wqe(o.WR_READ, wr_id=2, sges=[(3, back.va, n)], rkey=2,
                              remote_va=dst.va))
    [ev] = a.nic.poll_eq()
    assert (ev.key, ev.va, ev.access) == (3, back.va, o.FAULT_WRITE)
    assert a.nic.update_xlt(3, 0, back.xlt()) == o.ST_OK
    assert a.nic.resume(0) == o.ST_OK
    [c] = a.nic.poll_cq(a.cq)
    assert (c.status, c.byte_len) == (o.WC_SUCCESS, n)
    assert a.qt.memread(back.iova, n) == data(n, 11)


def test_random_traffic_over_a_lossy_link(pair: tuple[Side, Side]) -> None:
    """Random WRITE/READ/SEND sizes with random loss, corruption and delay:
    every WR completes, and every successful one moved the right bytes."""
    a, b = pair
    rng = random.Random(777)
    n = 6 * o.PAGE
    src, dst = regions(a, b, n)
    back = a.nic.buffer(n)
    assert a.nic.create_mr(3, back.va, n, xlt=back.xlt()) == o.ST_OK
    rbuf = b.nic.buffer(n)
    assert b.nic.create_mr(4, rbuf.va, n, xlt=rbuf.xlt()) == o.ST_OK
    for i in range(40):
        for side in (a, b):
            side.nic.qom_set("link-drop-next", rng.choice([0, 0, 0, 1, 2]))
            side.nic.qom_set("link-corrupt-next", rng.choice([0, 0, 0, 1]))
            side.nic.qom_set("link-delay-ns", rng.choice([0, 0, 0, 300_000]))
        length = rng.choice([0, 1, 100, 4096, 4097, rng.randrange(1, n)])
        off = rng.randrange(n - length + 1)
        payload = bytes(rng.getrandbits(8) for _ in range(length))
        op = rng.choice([o.WR_WRITE, o.WR_READ, o.WR_SEND])
        if op == o.WR_READ:
            b.qt.memwrite(dst.iova + off, payload)
            w = Wqe(op, wr_id=i, sges=[(3, back.va + off, length)], rkey=2,
                    remote_va=dst.va + off)
        else:
            a.qt.memwrite(src.iova + off, payload)
            w = Wqe(op, wr_id=i, sges=[(1, src.va + off, length)], rkey=2,
                    remote_va=dst.va + off)
            if op == o.WR_SEND:
                b.nic.post_recv(b.qp, Wqe(o.WR_RECV, wr_id=1000 + i, sges=[(4, rbuf.va, n)]))
        a.nic.post_send(a.qp, w)
        # Both virtual clocks must move: each side's delay queue runs on its own.
        for _ in range(2000):
            if not a.nic.cq_empty(a.cq):
                break
            a.qt.clock_step(MS)
            b.qt.clock_step(MS)
        [c] = a.nic.poll_cq(a.cq)
        assert (c.wr_id, c.status) == (i, o.WC_SUCCESS), f"round {i}: {c}"
        if op == o.WR_WRITE:
            assert b.qt.memread(dst.iova + off, length) == payload
        elif op == o.WR_READ:
            assert a.qt.memread(back.iova + off, length) == payload
        else:
            [r] = b.nic.poll_cq(b.cq)
            assert (r.wr_id, r.status, r.byte_len) == (1000 + i, o.WC_SUCCESS, length)
            assert b.qt.memread(rbuf.iova, length) == payload
    assert a.nic.counters()["link-retries"] > 0

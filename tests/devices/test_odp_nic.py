"""odp-nic under qtest: commands, regions, loopback RDMA, ODP faults, errors."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import odp_nic as o
from tests.support.odp_nic import OdpNic, Wqe
from tests.support.poll import wait_until
from tests.support.qtest import QEMU, QTest

DEVICE = ["-device", "odp-nic,id=nic,addr=05.0"]


@pytest.fixture
def qt(tmp_path: Path) -> Iterator[QTest]:
    with QTest(tmp_path, extra_args=DEVICE) as q:
        yield q


@pytest.fixture
def nic(qt: QTest) -> OdpNic:
    return OdpNic(qt, qom="/machine/peripheral/nic").setup()


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed * 13 + (i >> 8)) & 0xFF for i in range(n))


def test_help_lists_properties() -> None:
    out = subprocess.run([str(QEMU), "-device", "odp-nic,help"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    for prop in ("max-mrs", "netdev", "link-mtu", "fault-all-accesses", "fail-next-dma",
                 "link-down", "link-drop-next", "link-delay-ns", "link-corrupt-next",
                 "faults-raised", "wrs"):
        assert prop in out


def test_identity_and_capabilities(qt: QTest) -> None:
    pci = qt.pci(0, 5)
    assert pci.cfg_read(0) == o.DEVICE_ID << 16 | o.VENDOR_ID
    assert pci.cfg_read(8) >> 8 == 0x020700          # class 0207, prog-if 0
    assert pci.cfg_read(8) & 0xFF == 1               # revision
    caps = pci.capabilities()
    assert 0x10 in caps and 0x11 in caps              # PCIe, MSI-X
    assert pci.bar_size(0) == 0x4000
    nic = OdpNic(qt, qom="/machine/peripheral/nic").setup()
    assert nic.rd(o.REG_VERSION) == 1
    assert nic.rd(o.REG_MAX_MRS) == 64
    assert nic.rd(o.REG_STATUS) & 1


def test_queue_setup_and_region_registration(nic: OdpNic) -> None:
    assert nic.cmd(o.CMD_NOP) == (o.ST_OK, 0)
    assert nic.msi_count(o.VEC_CMD)                    # command vector fired
    cq = nic.create_cq(0)
    nic.create_eq()
    nic.create_qp(0, cq)
    buf = nic.buffer(3 * o.PAGE)
    assert nic.create_mr(1, buf.va, buf.size, xlt=buf.xlt()) == o.ST_OK
    assert nic.create_mr(1, buf.va, buf.size) == o.ST_BUSY
    assert nic.create_mr(64, buf.va, buf.size) == o.ST_BAD_INDEX
    assert nic.create_mr(2, buf.va, 0) == o.ST_BAD_PARAM
    assert nic.create_mr(2, buf.va, buf.size, page_shift=13) == o.ST_BAD_PARAM
    assert nic.create_mr(2, 2**64 - 10, 100) == o.ST_BAD_PARAM          # wraps
    assert nic.create_mr(2, 0, (262144 + 1) * o.PAGE) == o.ST_BAD_PARAM  # too many pages
    assert nic.update_xlt(1, 2, [0, 0]) == o.ST_BAD_PARAM                 # past the end
    assert nic.update_xlt(9, 0, [0]) == o.ST_BAD_INDEX
    assert nic.cmd(o.CMD_CREATE_QP + 50)[0] == o.ST_BAD_OPCODE
    assert nic.destroy_qp(0) == o.ST_OK
    assert nic.destroy_qp(0) == o.ST_BAD_INDEX
    assert nic.destroy_mr(1) == o.ST_OK
    assert nic.destroy_mr(1) == o.ST_BAD_INDEX
    assert nic.counters()["commands"] >= 14


def loopback(nic: OdpNic) -> tuple[o.Ring, o.QP]:
    cq = nic.create_cq(0)
    nic.create_eq()
    return cq, nic.create_qp(0, cq)


def test_loopback_write_and_read_move_bytes(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    n = 5 * o.PAGE + 123
    src, dst = nic.buffer(n, offset=100), nic.buffer(n, offset=7)
    data = pattern(n)
    nic.qt.memwrite(src.iova, data)
    assert nic.create_mr(1, src.va, n, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, n, xlt=dst.xlt()) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=0x11, sges=[(1, src.va, n)], rkey=2,
                          remote_va=dst.va))
    c = nic.poll_one(cq)
    assert (c.wr_id, c.status, c.byte_len, c.opcode) == (0x11, o.WC_SUCCESS, n, o.WR_WRITE)
    assert nic.qt.memread(dst.iova, n) == data
    # READ back into a third buffer, two SGEs.
    back = nic.buffer(n)
    assert nic.create_mr(3, back.va, n, xlt=back.xlt()) == o.ST_OK
    half = n // 2
    nic.post_send(qp, Wqe(o.WR_READ, wr_id=0x22, sges=[(3, back.va, half),
                                                       (3, back.va + half, n - half)],
                          rkey=2, remote_va=dst.va))
    c = nic.poll_one(cq)
    assert (c.wr_id, c.status, c.byte_len) == (0x22, o.WC_SUCCESS, n)
    assert nic.qt.memread(back.iova, n) == data
    cnt = nic.counters()
    assert cnt["wrs"] == 2 and cnt["bytes"] == 2 * n and cnt["wr-errors"] == 0
    assert nic.msi_count(2)


def test_loopback_send_recv(nic: OdpNic) -> None:
    cq = nic.create_cq(0)
    rcq = nic.create_cq(1, vector=3)
    a = nic.create_qp(0, cq, remote_qpn=1)
    b = nic.create_qp(1, cq, rcq)
    buf, rbuf = nic.buffer(300), nic.buffer(512)
    nic.qt.memwrite(buf.iova, pattern(300, 4))
    assert nic.create_mr(1, buf.va, 300, xlt=buf.xlt()) == o.ST_OK
    assert nic.create_mr(2, rbuf.va, 512, xlt=rbuf.xlt()) == o.ST_OK
    # SEND before the RECV is posted: waits for the receive buffer.
    nic.post_send(a, Wqe(o.WR_SEND, wr_id=5, sges=[(1, buf.va, 300)], imm=0xABCD))
    wait_until(lambda: nic.qp_state(a) == 2, "the SEND to wait for a receive buffer")
    assert nic.cq_empty(cq)
    nic.post_recv(b, Wqe(o.WR_RECV, wr_id=6, sges=[(2, rbuf.va, 512)]))
    c = nic.poll_one(cq)
    assert (c.wr_id, c.status) == (5, o.WC_SUCCESS)
    r = nic.poll_one(rcq)
    assert (r.wr_id, r.status, r.byte_len, r.imm, r.opcode, r.qpn) == (
        6, o.WC_SUCCESS, 300, 0xABCD, o.WR_RECV, 1)
    assert nic.qt.memread(rbuf.iova, 300) == pattern(300, 4)
    # Receive buffer too small: both sides see an error.
    nic.post_recv(b, Wqe(o.WR_RECV, wr_id=7, sges=[(2, rbuf.va, 10)]))
    nic.post_send(a, Wqe(o.WR_SEND, wr_id=8, sges=[(1, buf.va, 300)]))
    c = nic.poll_one(cq)
    r = nic.poll_one(rcq)
    assert c.status == o.WC_REM_OP_ERR and r.status == o.WC_LOC_LEN_ERR


def test_odp_fault_resolved_by_update_and_resume(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    n = 3 * o.PAGE
    src, dst = nic.buffer(n), nic.buffer(n)
    nic.qt.memwrite(src.iova, pattern(n, 9))
    assert nic.create_mr(1, src.va, n, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, n, mode=o.MR_ODP) == o.ST_OK   # no translations
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=2,
                          remote_va=dst.va))
    [ev] = nic.poll_eq()
    assert (ev.type, ev.qpn, ev.key, ev.va, ev.access) == (
        o.EV_PAGE_FAULT, 0, 2, dst.va, o.FAULT_WRITE)
    assert ev.length == n
    assert nic.msi_count(o.VEC_EQ)
    assert nic.cq_empty(cq)
    assert nic.qp_state(qp) == 1                     # stalled
    assert nic.qt.memread(dst.iova, n) == bytes(n)
    # A second QP keeps working while the first is stalled.
    qp2 = nic.create_qp(1, cq)
    nic.post_send(qp2, Wqe(o.WR_NOP, wr_id=99))
    c = nic.poll_one(cq)
    assert c.wr_id == 99
    # Resolve: translations, then resume.
    assert nic.update_xlt(2, 0, dst.xlt()) == o.ST_OK
    assert nic.resume(0) == o.ST_OK
    c = nic.poll_one(cq)
    assert (c.wr_id, c.status, c.byte_len) == (1, o.WC_SUCCESS, n)
    assert nic.qt.memread(dst.iova, n) == pattern(n, 9)
    cnt = nic.counters()
    assert cnt["faults-raised"] == 1 and cnt["faults-resolved"] == 1
    assert nic.resume(0) == o.ST_BAD_STATE            # nothing stalled any more


def test_odp_partial_then_resume_error(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    n = 4 * o.PAGE
    src, dst = nic.buffer(n), nic.buffer(n)
    nic.qt.memwrite(src.iova, pattern(n, 2))
    assert nic.create_mr(1, src.va, n, mode=o.MR_ODP) == o.ST_OK
    assert nic.create_mr(2, dst.va, n, xlt=dst.xlt()) == o.ST_OK
    assert nic.update_xlt(1, 0, src.xlt()[:2]) == o.ST_OK    # half present
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=3, sges=[(1, src.va, n)], rkey=2,
                          remote_va=dst.va))
    [ev] = nic.poll_eq()
    assert (ev.key, ev.va, ev.access, ev.length) == (1, src.va + 2 * o.PAGE, o.FAULT_READ,
                                                     2 * o.PAGE)
    assert nic.qt.memread(dst.iova, 2 * o.PAGE) == pattern(n, 2)[:2 * o.PAGE]
    assert nic.resume(0, status=1) == o.ST_OK
    c = nic.poll_one(cq)
    assert c.status == o.WC_FAULT_ABORT
    assert nic.counters()["faults-failed"] == 1


def test_invalidation_while_stalled(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    n = 2 * o.PAGE
    src, dst = nic.buffer(n), nic.buffer(n)
    nic.qt.memwrite(src.iova, pattern(n, 5))
    assert nic.create_mr(1, src.va, n, mode=o.MR_ODP, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, n, mode=o.MR_ODP) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=4, sges=[(1, src.va, n)], rkey=2,
                          remote_va=dst.va))
    [ev] = nic.poll_eq()
    assert ev.key == 2
    # Map the destination, but invalidate the source before resuming: the
    # resumed WR must fault again on the source, not use stale entries.
    assert nic.update_xlt(2, 0, dst.xlt()) == o.ST_OK
    assert nic.invalidate(1, src.va, n) == o.ST_OK
    assert nic.resume(0) == o.ST_OK
    [ev] = nic.poll_eq()
    assert (ev.key, ev.va, ev.access, ev.qpn) == (1, src.va, o.FAULT_READ, 0)
    assert nic.cq_empty(cq)
    assert nic.qt.memread(dst.iova, n) == bytes(n)
    assert nic.update_xlt(1, 0, src.xlt()) == o.ST_OK
    assert nic.resume(0) == o.ST_OK
    c = nic.poll_one(cq)
    assert c.status == o.WC_SUCCESS
    assert nic.qt.memread(dst.iova, n) == pattern(n, 5)
    cnt = nic.counters()
    assert cnt["invalidations"] == 1 and cnt["faults-raised"] == 2
    # After invalidation the entries are gone: a pinned-style hole check via READ.
    assert nic.invalidate(2, dst.va + o.PAGE, 1) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_READ, wr_id=5, sges=[(1, src.va, 8)], rkey=2,
                          remote_va=dst.va + o.PAGE))
    [ev] = nic.poll_eq()
    assert (ev.key, ev.va) == (2, dst.va + o.PAGE)
    assert nic.destroy_mr(2) == o.ST_OK                # region gone while stalled
    assert nic.resume(0) == o.ST_OK
    c = nic.poll_one(cq)
    assert c.status == o.WC_REM_ACCESS_ERR


def test_prefetch_raises_event_without_stall(nic: OdpNic) -> None:
    loopback(nic)
    buf = nic.buffer(8 * o.PAGE)
    assert nic.create_mr(1, buf.va, buf.size, mode=o.MR_ODP) == o.ST_OK
    st, raised = nic.prefetch(1, buf.va + o.PAGE, 2 * o.PAGE, write=True)
    assert (st, raised) == (o.ST_OK, 1)
    [ev] = nic.poll_eq()
    assert (ev.qpn, ev.key, ev.va, ev.length, ev.access) == (
        o.QPN_NONE, 1, buf.va + o.PAGE, 2 * o.PAGE, o.FAULT_WRITE)
    assert nic.update_xlt(1, 1, buf.xlt()[1:3]) == o.ST_OK
    assert nic.prefetch(1, buf.va + o.PAGE, 2 * o.PAGE, write=True) == (o.ST_OK, 0)


def test_fault_all_accesses_faults_once_per_wr(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    src, dst = nic.buffer(64), nic.buffer(64)
    nic.qt.memwrite(src.iova, b"x" * 64)
    assert nic.create_mr(1, src.va, 64, mode=o.MR_ODP, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, 64, xlt=dst.xlt()) == o.ST_OK
    nic.qom_set("fault-all-accesses", True)
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, 64)], rkey=2,
                          remote_va=dst.va))
    [ev] = nic.poll_eq()
    assert ev.key == 1
    assert nic.resume(0) == o.ST_OK
    c = nic.poll_one(cq)
    assert c.status == o.WC_SUCCESS and nic.qt.memread(dst.iova, 64) == b"x" * 64


def test_pinned_hole_is_an_access_error(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    n = 2 * o.PAGE
    src, dst = nic.buffer(n), nic.buffer(n)
    assert nic.create_mr(1, src.va, n, xlt=src.xlt()) == o.ST_OK
    assert nic.create_mr(2, dst.va, n, xlt=dst.xlt()[:1]) == o.ST_OK   # page 1 missing
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, n)], rkey=2,
                          remote_va=dst.va))
    c = nic.poll_one(cq)
    assert c.status == o.WC_REM_ACCESS_ERR
    assert nic.counters()["faults-raised"] == 0


def test_malformed_wrs_bad_keys_and_lengths(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    buf = nic.buffer(2 * o.PAGE)
    ro = nic.buffer(o.PAGE)
    assert nic.create_mr(1, buf.va, buf.size, xlt=buf.xlt()) == o.ST_OK
    assert nic.create_mr(2, ro.va, ro.size, access=0, xlt=ro.xlt()) == o.ST_OK
    bad = [
        (Wqe(9, wr_id=1), o.WC_BAD_WR),                                          # opcode
        (Wqe(o.WR_WRITE, wr_id=2, num_sge=3), o.WC_BAD_WR),                      # sge count
        (Wqe(o.WR_WRITE, wr_id=3, flags=0x80), o.WC_BAD_WR),
        (Wqe(o.WR_WRITE, wr_id=4, sges=[(1, buf.va, 64)], rkey=77, remote_va=buf.va),
         o.WC_REM_ACCESS_ERR),                                                   # bad rkey
        (Wqe(o.WR_WRITE, wr_id=5, sges=[(40, buf.va, 64)], rkey=1, remote_va=buf.va),
         o.WC_LOC_PROT_ERR),                                                     # bad lkey
        (Wqe(o.WR_WRITE, wr_id=6, sges=[(1, buf.va, 0xFFFFFFFF), (1, buf.va, 0xFFFFFFFF)],
             rkey=1, remote_va=buf.va), o.WC_LOC_LEN_ERR),                       # > 1 GiB
        (Wqe(o.WR_WRITE, wr_id=7, sges=[(1, buf.va, 3 * o.PAGE)], rkey=1,
             remote_va=buf.va), o.WC_LOC_PROT_ERR),                              # past MR
        (Wqe(o.WR_WRITE, wr_id=8, sges=[(1, buf.va, 64)], rkey=1,
             remote_va=buf.va + 2 * o.PAGE - 10), o.WC_REM_ACCESS_ERR),          # remote end
        (Wqe(o.WR_WRITE, wr_id=9, sges=[(1, buf.va, 64)], rkey=2, remote_va=ro.va),
         o.WC_REM_ACCESS_ERR),                                                   # no rights
        (Wqe(o.WR_READ, wr_id=10, sges=[(2, ro.va, 64)], rkey=1, remote_va=buf.va),
         o.WC_LOC_PROT_ERR),                                                     # no local write
        (Wqe(o.WR_WRITE, wr_id=11, sges=[(1, 2**64 - 16, 64)], rkey=1, remote_va=buf.va),
         o.WC_LOC_PROT_ERR),                                                     # VA wraps
        (Wqe(o.WR_WRITE, wr_id=12, sges=[(1, buf.va, 64)], rkey=1, remote_va=2**64 - 8),
         o.WC_REM_ACCESS_ERR),
    ]
    for w, _ in bad:
        nic.post_send(qp, w)
    got = nic.poll_cq(cq, len(bad))
    assert [(c.wr_id, c.status) for c in got] == [(w.wr_id, st) for w, st in bad]
    # SEND towards a QP that does not exist.
    lost = nic.create_qp(1, cq, remote_qpn=9)
    nic.post_send(lost, Wqe(o.WR_SEND, wr_id=13, sges=[(1, buf.va, 64)]))
    assert nic.poll_cq(cq)[0].status == o.WC_REM_OP_ERR
    # DMA failure: an IOVA outside RAM, and fail-next-dma.
    hole = nic.buffer(o.PAGE)
    assert nic.create_mr(3, hole.va, o.PAGE, xlt=[0xFFFF_F000_0000 | o.XLT_RW]) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=20, sges=[(1, buf.va, 64)], rkey=3,
                          remote_va=hole.va))
    nic.qom_set("fail-next-dma", 1)
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=21, sges=[(1, buf.va, 64)], rkey=1,
                          remote_va=buf.va + o.PAGE))
    got = nic.poll_cq(cq, 2)
    assert [(c.wr_id, c.status) for c in got] == [(20, o.WC_DMA_ERR), (21, o.WC_DMA_ERR)]
    assert nic.counters()["dma-errors"] >= 2
    # Still healthy.
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=30, sges=[(1, buf.va, 64)], rkey=1,
                          remote_va=buf.va + o.PAGE))
    assert nic.poll_cq(cq)[0].status == o.WC_SUCCESS
    assert nic.qt.alive()


def test_doorbell_and_register_abuse(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    nic.wr(o.DB_QP_BASE + 16 * qp.qpn, 10_000)      # overruns the 32-entry SQ: ignored
    nic.wr(o.DB_QP_BASE + 16 * 15, 3)               # QP not created
    nic.wr(o.DB_CQ_BASE + 8 * 0, 500)               # consumer past producer
    nic.wr(o.DB_EQ, 77)
    nic.wr(0xFFC, 1)
    for off in range(0, 0x4000, 0x3FC):
        nic.rd(off)
    nic.post_send(qp, Wqe(o.WR_NOP, wr_id=1))
    assert nic.poll_cq(cq)[0].wr_id == 1
    # Device reset from CTRL: everything is gone, the command queue too.
    nic.wr(o.REG_CTRL, 1)
    assert nic.rd(o.REG_CMDQ_LOG_SIZE) == 0
    nic.setup()
    assert nic.destroy_qp(0) == o.ST_BAD_INDEX
    assert nic.qt.alive()


def test_qp_registers_beyond_max_qps(nic: OdpNic) -> None:
    """QP_STATE[q] reads 0xffffffff ("no such QP") for every q the device lacks,
    up to the end of the QP doorbell page; the other QP registers there read 0."""
    _, qp = loopback(nic)
    max_qps = nic.rd(o.REG_MAX_QPS)
    assert max_qps == 16
    assert nic.rd(o.DB_QP_BASE + 16 * qp.qpn + 12) == 0          # created, ready
    assert nic.rd(o.DB_QP_BASE + 16 * (qp.qpn + 1) + 12) == 0xFFFFFFFF   # not created
    for q in range(max_qps, 256):
        base = o.DB_QP_BASE + 16 * q
        assert [nic.rd(base + r) for r in (0, 4, 8, 12)] == [0, 0, 0, 0xFFFFFFFF], q
    nic.wr(o.DB_QP_BASE + 16 * 200, 5)                  # beyond MAX_QPS: ignored
    assert nic.rd(o.DB_QP_BASE + 16 * 200) == 0
    assert nic.qt.alive()


def test_large_transfer_is_chunked(nic: OdpNic) -> None:
    cq, qp = loopback(nic)
    # 8 MiB in one WR: the engine moves it over several bounded runs.
    big = nic.buffer(16 << 20)
    assert nic.create_mr(2, big.va, big.size, xlt=big.xlt()) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_READ, wr_id=2, sges=[(2, big.va + (8 << 20), 8 << 20)],
                          rkey=2, remote_va=big.va))
    c = nic.poll_one(cq)
    assert c.status == o.WC_SUCCESS and c.byte_len == 8 << 20


def stall_everything(nic: OdpNic) -> None:
    """A stalled ODP WR, a link WR waiting for an answer, a delayed frame."""
    cq = nic.create_cq(0)
    nic.create_eq()
    qp = nic.create_qp(0, cq)
    link = nic.create_qp(1, cq, dest=o.DEST_LINK)
    buf = nic.buffer(2 * o.PAGE)
    assert nic.create_mr(1, buf.va, buf.size, mode=o.MR_ODP) == o.ST_OK
    nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, buf.va, 64)], rkey=1,
                          remote_va=buf.va + o.PAGE))
    assert nic.poll_eq()[0].qpn == 0
    assert nic.update_xlt(1, 0, buf.xlt()) == o.ST_OK
    nic.qom_set("link-delay-ns", 10**9)
    nic.post_send(link, Wqe(o.WR_WRITE, wr_id=2, sges=[(1, buf.va, 64)], rkey=1,
                            remote_va=0))
    wait_until(lambda: nic.qp_state(link) == 3, "the link QP to wait for its answer")


def test_system_reset_cancels_everything(qt: QTest, nic: OdpNic) -> None:
    stall_everything(nic)
    qt.qmp("system_reset")
    qt.clock_step(5 * 10**9)                     # timers would fire now if left armed
    qt.enable_ecam()
    # The reset turned decode off and unassigned the BAR: map it again to look.
    assert nic.pci.cfg_read(0x04, 2) & 0x6 == 0
    nic.pci.map_bar(0, nic.bar0)
    nic.pci.enable()
    assert nic.rd(o.REG_MAGIC) == o.MAGIC        # our registers, not unassigned space
    assert nic.rd(o.REG_CMDQ_LOG_SIZE) == 0      # and the reset cleared the queue
    nic.setup()
    assert nic.resume(0) == o.ST_BAD_INDEX       # the stalled QP is gone
    cq, qp = loopback(nic)
    nic.post_send(qp, Wqe(o.WR_NOP, wr_id=5))
    assert nic.poll_cq(cq)[0].wr_id == 5


def test_hot_unplug_with_work_in_flight(tmp_path: Path) -> None:
    # Native PCIe hotplug (not ACPI), so the slot control register does the eject.
    args = ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
            "-device", "pcie-root-port,id=rp0,bus=pcie.0,addr=06.0,chassis=1,slot=1",
            "-device", "odp-nic,id=nic,bus=rp0,addr=00.0"]
    with QTest(tmp_path, extra_args=args) as qt:
        rp = qt.pci(0, 6)
        rp.cfg_write(0x18, 0x0001_0100)          # buses: primary 0, secondary 1, subordinate 1
        rp.cfg_write(0x20, 0xFE20_FE00)          # memory window 0xFE000000..0xFE2FFFFF
        rp.enable()
        nic = OdpNic(qt, bus=1, dev=0, qom="/machine/peripheral/nic").setup()
        stall_everything(nic)
        qt.qmp("device_del", id="nic")
        # Play the guest: power the slot off, which completes the unplug.
        cap = rp.capabilities()[0x10]
        sltctl = rp.cfg_read(cap + 0x18, 2)
        rp.cfg_write(cap + 0x18, sltctl | 0x0400 | 0x0300, 2)
        names = [p["name"] for p in qt.qmp("qom-list", path="/machine/peripheral")]
        assert "nic" not in names
        qt.clock_step(5 * 10**9)                 # freed timers must not fire
        qt.memread(0, 16)
        assert qt.alive()


def test_peer_to_peer_iova_in_another_bar(tmp_path: Path) -> None:
    """A translation that points at another device's BAR reaches that BAR."""
    args = ["-device", "odp-nic,id=nic,addr=05.0", "-device", "odp-nic,id=peer,addr=06.0"]
    with QTest(tmp_path, extra_args=args) as qt:
        peer = qt.pci(0, 6)
        peer.map_bar(0, 0xFE40_0000)
        peer.enable(master=False)
        nic = OdpNic(qt).setup()
        cq, qp = loopback(nic)
        mmio_va = o.VA_BASE + (1 << 32)
        assert nic.create_mr(1, mmio_va, o.PAGE, access=o.ACCESS_REMOTE_READ,
                             xlt=[0xFE40_0000 | o.XLT_VALID | o.XLT_READ]) == o.ST_OK
        buf = nic.buffer(64)
        assert nic.create_mr(2, buf.va, 64, xlt=buf.xlt()) == o.ST_OK
        nic.post_send(qp, Wqe(o.WR_READ, wr_id=1, sges=[(2, buf.va, 8)], rkey=1,
                              remote_va=mmio_va))
        assert nic.poll_cq(cq)[0].status == o.WC_SUCCESS
        assert qt.memread(buf.iova, 8) == struct.pack("<II", o.MAGIC, 1)
        # Our own BAR is not reachable (QEMU's re-entrancy guard): a DMA error.
        assert nic.create_mr(3, mmio_va + (1 << 20), o.PAGE,
                             xlt=[nic.bar0 | o.XLT_RW]) == o.ST_OK
        nic.post_send(qp, Wqe(o.WR_READ, wr_id=2, sges=[(2, buf.va, 8)], rkey=3,
                              remote_va=mmio_va + (1 << 20)))
        assert nic.poll_cq(cq)[0].status == o.WC_DMA_ERR
        assert qt.alive()


VTD = 0xFED9_0000          # q35 intel-iommu registers
VTD_TABLES = 0x0080_0000   # below OdpNic's allocator


def vtd_enable(qt: QTest, devfn: int, remap: dict[int, int]) -> None:
    """Legacy-mode VT-d: identity-map 0..512 MiB with 2 MiB pages for bus 0
    devfn, plus the 4 KiB IOVA -> GPA pairs in remap (IOVAs in 2..3 GiB)."""
    root, ctx, l4, l3, l2, l2r, l1r = (VTD_TABLES + i * o.PAGE for i in range(7))
    qt.memset(VTD_TABLES, 7 * o.PAGE, 0)
    rw = 3
    qt.memwrite(root, struct.pack("<QQ", ctx | 1, 0))                     # bus 0
    qt.memwrite(ctx + 16 * devfn, struct.pack("<QQ", l4 | 1, 2 | 1 << 8))  # 4-level, DID 1
    qt.memwrite(l4, struct.pack("<Q", l3 | rw))
    qt.memwrite(l3, struct.pack("<QQQ", l2 | rw, 0, l2r | rw))            # 0-1 GiB, 2-3 GiB
    qt.memwrite(l2, b"".join(struct.pack("<Q", (i << 21) | rw | 1 << 7) for i in range(256)))
    qt.memwrite(l2r, struct.pack("<Q", l1r | rw))
    for iova, gpa in remap.items():
        qt.memwrite(l1r + 8 * ((iova >> 12) & 511), struct.pack("<Q", gpa | rw))
    qt.writeq(VTD + 0x20, root)
    qt.writel(VTD + 0x18, 1 << 30)                                        # SRTP
    wait_until(lambda: qt.readl(VTD + 0x1C) & (1 << 30), "the vIOMMU to take the root table")
    qt.writel(VTD + 0x18, 1 << 31)                                        # TE
    wait_until(lambda: qt.readl(VTD + 0x1C) & (1 << 31), "the vIOMMU to enable translation")


def test_through_viommu_remap_and_fault(tmp_path: Path) -> None:
    args = ["-device", "intel-iommu,intremap=off", "-device", "odp-nic,id=nic,addr=05.0"]
    with QTest(tmp_path, extra_args=args) as qt:
        target = 0x0F00_0000                         # GPA the remapped IOVA points at
        vtd_enable(qt, 5 << 3, {0x8000_0000: target})
        nic = OdpNic(qt, qom="/machine/peripheral/nic").setup()
        cq, qp = loopback(nic)
        src = nic.buffer(256)
        qt.memwrite(src.iova, pattern(256, 3))
        assert nic.create_mr(1, src.va, 256, xlt=src.xlt()) == o.ST_OK
        va = o.VA_BASE + (1 << 36)
        assert nic.create_mr(2, va, o.PAGE, xlt=[0x8000_0000 | o.XLT_RW]) == o.ST_OK
        assert nic.create_mr(3, va + (1 << 20), o.PAGE,
                             xlt=[0xC000_0000 | o.XLT_RW]) == o.ST_OK    # not in the IOMMU
        nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, 256)], rkey=2,
                              remote_va=va))
        nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=2, sges=[(1, src.va, 256)], rkey=3,
                              remote_va=va + (1 << 20)))
        got = nic.poll_cq(cq, 2)
        assert [(c.wr_id, c.status) for c in got] == [(1, o.WC_SUCCESS), (2, o.WC_DMA_ERR)]
        assert qt.memread(target, 256) == pattern(256, 3)   # the IOMMU did translate
        assert nic.counters()["dma-errors"] >= 1
        assert qt.readl(VTD + 0x34) & 0x2                    # VT-d recorded a fault (FSTS.PPF)

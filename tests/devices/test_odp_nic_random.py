"""Randomized abuse of odp-nic: QEMU must survive and the device stay usable."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from tests.support import odp_nic as o
from tests.support.odp_nic import OdpNic, Wqe
from tests.support.qtest import QTest

SEED = 20261124
STEPS = 1500
SCRATCH = 0x0800_0000          # random DMA targets stay in [SCRATCH, SCRATCH + 64 MiB)
SCRATCH_SIZE = 64 << 20


def interesting(rng: random.Random, bits: int) -> int:
    return rng.choice([0, 1, 2, 7, 63, 64, 4095, 4096, (1 << bits) - 1, 1 << (bits - 1),
                       rng.getrandbits(bits), rng.randrange(16)])


def dma_addr(rng: random.Random) -> int:
    if rng.random() < 0.15:
        return rng.choice([0xFFFF_FFFF_F000, 1 << 40, 0xFEE0_0000, 0xFE00_0000])
    return SCRATCH + rng.randrange(SCRATCH_SIZE - 0x10_0000) // 64 * 64


def random_args(rng: random.Random, opcode: int) -> bytes:
    if opcode in (o.CMD_CREATE_CQ, o.CMD_CREATE_EQ):
        return struct.pack("<IBBHQ", interesting(rng, 5), rng.randrange(15), 0,
                           rng.randrange(10), dma_addr(rng))
    if opcode == o.CMD_CREATE_QP:
        return struct.pack("<IIIBBBBQQI", interesting(rng, 5), rng.randrange(4),
                           rng.randrange(4), rng.randrange(14), rng.randrange(14),
                           rng.randrange(3), 0, dma_addr(rng), dma_addr(rng),
                           rng.randrange(8))
    if opcode in (o.CMD_UPDATE_XLT,):
        return struct.pack("<IIQQ", rng.randrange(12), rng.choice([1, 2, 5, 300, 0]),
                           interesting(rng, 12), dma_addr(rng))
    if opcode == o.CMD_CREATE_MR:
        return struct.pack("<IIQQQIBBHQ", rng.randrange(70), rng.randrange(9),
                           o.VA_BASE + rng.randrange(1 << 30), interesting(rng, 24),
                           dma_addr(rng) if rng.random() < 0.5 else 0,
                           rng.randrange(8), rng.randrange(3), rng.choice([12, 12, 13]), 0, 0)
    return bytes(rng.getrandbits(8) for _ in range(48))


def test_random_commands_and_wrs(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with QTest(tmp_path, extra_args=["-device", "odp-nic,id=nic,addr=05.0"]) as qt:
        nic = OdpNic(qt).setup(cmdq_log=6)
        qt.memset(SCRATCH, SCRATCH_SIZE, 0)
        cqs = [nic.create_cq(i, log_size=4) for i in range(2)]
        nic.create_eq(log_size=4)
        qps = [nic.create_qp(i, cqs[i % 2], sq_log=4, rq_log=3,
                             dest=o.DEST_LOOPBACK if i < 3 else o.DEST_LINK,
                             remote_qpn=rng.randrange(4)) for i in range(4)]
        bufs = [nic.buffer(rng.choice([64, 4096, 3 * 4096 + 5]), offset=rng.randrange(64))
                for _ in range(6)]
        for key, b in enumerate(bufs):
            mode = rng.choice([o.MR_PINNED, o.MR_ODP])
            xlt = b.xlt() if mode == o.MR_PINNED or rng.random() < 0.5 else None
            assert nic.create_mr(key, b.va, b.size, access=rng.choice([7, 7, 1, 0]),
                                 mode=mode, xlt=xlt) == o.ST_OK

        def rand_sge() -> tuple[int, int, int]:
            k = rng.randrange(len(bufs))
            b = bufs[k]
            if rng.random() < 0.75:         # mostly well-formed
                off = rng.randrange(b.size)
                return k, b.va + off, rng.randrange(1, b.size - off + 1)
            return (rng.randrange(8), b.va + rng.randrange(-8, b.size),
                    rng.choice([0, 1, 8, 64, 4096, rng.randrange(1 << 14), 0xFFFFFFFF]))

        for _step in range(STEPS):
            r = rng.random()
            if r < 0.35:
                qp = rng.choice(qps)
                n = rng.randrange(1, 4)
                wqes = []
                for _ in range(n):
                    rk = rng.randrange(len(bufs) + 2)
                    b = bufs[rk % len(bufs)]
                    wqes.append(Wqe(rng.choice([0, 1, 1, 2, 2, 3, 3, 7]),
                                    wr_id=rng.getrandbits(64),
                                    sges=[rand_sge() for _ in range(rng.randrange(3))],
                                    rkey=rk,
                                    remote_va=b.va + rng.randrange(-16, b.size // 2),
                                    num_sge=rng.choice([None, None, None, 3, 255]),
                                    flags=rng.choice([0, 0, 0, 0x40])))
                free = (1 << qp.sq_log) - ((qp.sq_pi - nic.rd(o.DB_QP_BASE + 16 * qp.qpn + 8))
                                           & 0xFFFFFFFF)
                if free >= n:
                    nic.post_send(qp, *wqes)
            elif r < 0.45:
                qp = rng.choice(qps)
                free = (1 << qp.rq_log) - 1
                if free > 0 and rng.random() < 0.5:
                    nic.post_recv(qp, Wqe(o.WR_RECV, wr_id=rng.getrandbits(32),
                                          sges=[rand_sge()]))
            elif r < 0.55:
                op = rng.choice([o.CMD_RESUME, o.CMD_INVALIDATE, o.CMD_PREFETCH])
                if op == o.CMD_RESUME:
                    nic.resume(rng.randrange(6), rng.choice([0, 0, 1, 99]))
                else:
                    b = rng.choice(bufs)
                    nic.cmd(op, struct.pack("<IIQQ", rng.randrange(8), rng.randrange(2),
                                            b.va + rng.randrange(-4096, 4096),
                                            interesting(rng, 20)))
            elif r < 0.65:
                key = rng.randrange(len(bufs))
                b = bufs[key]
                ents = b.xlt()
                start = rng.randrange(len(ents))
                nic.update_xlt(key, start, ents[start:start + rng.randrange(1, 4)])
            elif r < 0.75:
                op = rng.randrange(16)
                # Leave the test's own queues alone; anything else goes.
                if op in (o.CMD_DESTROY_CQ, o.CMD_DESTROY_EQ, o.CMD_DESTROY_QP):
                    nic.cmd(op, struct.pack("<I", rng.randrange(8, 40)))
                else:
                    nic.cmd(op, random_args(rng, op))
            elif r < 0.82:
                for qp in qps:                  # unstick stalled queues now and then
                    if nic.qp_state(qp) == 1 and rng.random() < 0.5:
                        nic.resume(qp.qpn)
                for ev in nic.drain_eq():
                    if ev.type == o.EV_PAGE_FAULT and ev.qpn != o.QPN_NONE:
                        if ev.key < len(bufs) and rng.random() < 0.7:
                            nic.update_xlt(ev.key, 0, bufs[ev.key].xlt())
                        nic.resume(ev.qpn, rng.choice([0, 0, 1]))
            elif r < 0.9:
                for cq in cqs:
                    nic.drain_cq(cq)
            elif r < 0.95:
                prop = rng.choice(["fail-next-dma", "fault-all-accesses", "link-drop-next"])
                val: object = rng.random() < 0.3 if prop == "fault-all-accesses" \
                    else rng.randrange(3)
                nic.qom_set(prop, val)
            else:
                off = rng.choice([o.DB_QP_BASE + rng.randrange(0x1000), o.DB_CQ_BASE + 8 * 5,
                                  o.DB_EQ + 4, rng.randrange(0x4000) & ~3, 0x100])
                if off not in (o.REG_CTRL, o.REG_CMDQ_BASE_LO, o.REG_CMDQ_BASE_HI,
                               o.REG_CMDQ_LOG_SIZE, o.REG_CMDQ_PI):
                    nic.wr(off, rng.getrandbits(32))
                nic.rd(rng.randrange(0x4000) & ~3)
            if rng.random() < 0.05:
                qt.clock_step(rng.choice([1000, 1_000_000, 50_000_000]))
            assert qt.alive()

        counters = nic.counters()
        assert counters["commands"] > 100 and counters["wrs"] > 50
        assert counters["wr-errors"] > 0

        # Reset the function and check it still does real work.
        nic.qom_set("fault-all-accesses", False)
        nic.qom_set("fail-next-dma", 0)
        nic.wr(o.REG_CTRL, 1)
        nic.setup()
        cq = nic.create_cq(0)
        nic.create_eq()
        qp = nic.create_qp(0, cq)
        src, dst = nic.buffer(10000), nic.buffer(10000)
        payload = bytes(rng.getrandbits(8) for _ in range(10000))
        qt.memwrite(src.iova, payload)
        assert nic.create_mr(1, src.va, 10000, xlt=src.xlt()) == o.ST_OK
        assert nic.create_mr(2, dst.va, 10000, xlt=dst.xlt()) == o.ST_OK
        nic.post_send(qp, Wqe(o.WR_WRITE, wr_id=1, sges=[(1, src.va, 10000)], rkey=2,
                              remote_va=dst.va))
        [c] = nic.poll_cq(cq)
        assert c.status == o.WC_SUCCESS
        assert qt.memread(dst.iova, 10000) == payload

"""The odp-nic generator: a driver's set-up (command queue, CQs, EQ, loopback
and link QPs, pinned and ODP regions), then hostile commands, work requests,
doorbells, translation lists, frames from the link peer, register writes and
timer steps (docs/devices/odp-nic.md is the contract)."""

from __future__ import annotations

import copy
import random
import struct
import zlib
from dataclasses import dataclass, field

from fuzz.lines import memwrite, qmp, reset_machine
from fuzz.target import TargetSpec
from fuzz.values import aligned, interesting
from tests.support import odp_nic as o
from tests.support.odp_nic import QP, Buffer, OdpNic, Ring, Wqe
from tests.support.qtest import ECAM_BASE, QTest

SPEC = TargetSpec("odp-nic", ("-device", "odp-nic,id=nic,addr=05.0,netdev=n0,retry-count=3,"
                              "retry-timeout-us=200,rnr-delay-us=50,rnr-retry-count=3"),
                  link=True)
QOM = "/machine/peripheral/nic"
COUNTERS = ("commands", "wrs", "wr-errors", "faults-raised", "faults-resolved",
            "invalidations", "dma-errors", "link-rx", "link-tx", "link-dropped",
            "link-retries", "eq-overflows", "cq-overflows")
CFG = ECAM_BASE + (5 << 15)
BAR0 = 0xFE00_0000
CMDQ_LOG = 5
FAULT_PROPS = (("fault-all-accesses", True), ("fault-all-accesses", False),
               ("fail-next-dma", 1), ("fail-next-dma", 0), ("link-down", True),
               ("link-down", False), ("link-drop-next", 2), ("link-delay-ns", 50_000),
               ("link-delay-ns", 0), ("link-corrupt-next", 1))


@dataclass
class Model:
    """What the generator knows of the device after set-up (addresses, indices)."""

    cmdq: int = 0
    cmdq_pi: int = 0
    cqs: list[Ring] = field(default_factory=list)
    eq: Ring | None = None
    qps: list[QP] = field(default_factory=list)
    bufs: list[Buffer] = field(default_factory=list)
    xlt: int = 0


MODEL = Model()
_SETUP: list[str] = []
_AFTER_SETUP = Model()


def setup(qt: QTest) -> None:
    """Deterministic: the same lines every run, so a trace's set-up replays."""
    rng = random.Random(1)
    nic = OdpNic(qt).setup(cmdq_log=CMDQ_LOG)
    m = Model(cmdq=nic.cmdq_base)
    m.cqs = [nic.create_cq(i, log_size=4) for i in range(2)]
    m.eq = nic.create_eq(log_size=4)
    m.qps = [nic.create_qp(i, m.cqs[i % 2], sq_log=4, rq_log=3,
                           dest=o.DEST_LOOPBACK if i < 2 else o.DEST_LINK,
                           remote_qpn=i % 4) for i in range(4)]
    m.bufs = [nic.buffer(rng.choice([64, 4096, 3 * 4096 + 5]), offset=rng.randrange(64))
              for _ in range(6)]
    for key, b in enumerate(m.bufs):
        mode = o.MR_PINNED if key % 2 == 0 else o.MR_ODP
        nic.create_mr(key, b.va, b.size, mode=mode,
                      xlt=b.xlt() if mode == o.MR_PINNED or key == 3 else None)
    m.xlt = nic.alloc(4 * o.PAGE)
    m.cmdq_pi = nic.cmdq_pi
    MODEL.__dict__.update(copy.deepcopy(m).__dict__)
    _AFTER_SETUP.__dict__.update(copy.deepcopy(m).__dict__)


def set_setup(lines: list[str]) -> None:
    """The set-up's own lines: replayed after a reset, so a run that broke the
    device (a reset queue, a fatal error) goes back to reaching its deep paths."""
    _SETUP[:] = lines


def _va(rng: random.Random) -> int:
    b = rng.choice(MODEL.bufs)
    return rng.choice((b.va, b.va + b.size - 1, b.va + rng.randrange(-4096, b.size + 4096),
                       interesting(rng, 64, (o.VA_BASE,))))


def _plausible(rng: random.Random) -> tuple[int, bytes, list[str]]:
    """A command a driver could send for the set-up's objects: opcode, arguments,
    and the lines that must precede it (the translation list it reads)."""
    b = rng.choice(MODEL.bufs)
    key = MODEL.bufs.index(b)
    op = rng.choice((o.CMD_UPDATE_XLT, o.CMD_INVALIDATE, o.CMD_PREFETCH, o.CMD_RESUME,
                     o.CMD_QUERY_COUNTER, o.CMD_NOP))
    if op == o.CMD_UPDATE_XLT:
        first = rng.randrange(b.pages())
        ents = b.xlt()[first:first + rng.randrange(1, b.pages() - first + 1)]
        data = b"".join(struct.pack("<Q", e) for e in ents)
        return op, struct.pack("<IIQQ", key, len(ents), first, MODEL.xlt), \
            [memwrite(MODEL.xlt, data)]
    if op in (o.CMD_INVALIDATE, o.CMD_PREFETCH):
        off = rng.randrange(b.size)
        return op, struct.pack("<IIQQ", key, rng.randrange(2), b.va + off,
                               rng.randrange(1, b.size - off + 1)), []
    if op == o.CMD_RESUME:
        return op, struct.pack("<II", rng.randrange(4), rng.choice((0, 0, 0, 1))), []
    return op, struct.pack("<I", rng.randrange(15)), []


def _entry(op: int, args: bytes, owner: int = 1) -> bytes:
    return struct.pack("<BBBBIQ", op, 0xFF, owner, 0, 0xC0DE, 0) + args.ljust(48, b"\0")[:48]


def _resolve(rng: random.Random) -> list[tuple[bytes, list[str]]]:
    """UPDATE_XLT of every page of one region, then RESUME of one QP."""
    key = rng.randrange(len(MODEL.bufs))
    ents = MODEL.bufs[key].xlt()
    data = b"".join(struct.pack("<Q", e) for e in ents)
    return [(_entry(o.CMD_UPDATE_XLT, struct.pack("<IIQQ", key, len(ents), 0, MODEL.xlt)),
             [memwrite(MODEL.xlt, data)]),
            (_entry(o.CMD_RESUME, struct.pack("<II", rng.randrange(len(MODEL.qps)), 0)), [])]


def _command(rng: random.Random) -> tuple[bytes, list[str]]:
    """A command queue entry, and the lines that must precede it."""
    if rng.random() < 0.5:
        op, args, before = _plausible(rng)
        return _entry(op, args), before
    op = rng.choice((o.CMD_CREATE_MR, o.CMD_DESTROY_MR, o.CMD_UPDATE_XLT, o.CMD_INVALIDATE,
                     o.CMD_PREFETCH, o.CMD_CREATE_CQ, o.CMD_DESTROY_CQ, o.CMD_CREATE_EQ,
                     o.CMD_DESTROY_EQ, o.CMD_CREATE_QP, o.CMD_DESTROY_QP, o.CMD_RESUME,
                     o.CMD_QUERY_COUNTER, o.CMD_NOP, rng.randrange(256)))
    addr = aligned(rng, MODEL.xlt, 4 * o.PAGE, 8)
    idx = interesting(rng, 32, (0, 1, 5, 15, 16, 63, 64))
    if op in (o.CMD_CREATE_CQ, o.CMD_CREATE_EQ):
        args = struct.pack("<IBBHQ", idx, rng.randrange(16), 0, rng.randrange(10), addr)
    elif op == o.CMD_CREATE_QP:
        args = struct.pack("<IIIBBBBQQI", idx, rng.randrange(4), rng.randrange(4),
                           rng.randrange(16), rng.randrange(16), rng.randrange(3), 0, addr,
                           aligned(rng, MODEL.xlt, 4 * o.PAGE, 64), rng.randrange(8))
    elif op == o.CMD_CREATE_MR:
        args = struct.pack("<IIQQQIBBHQ", idx, rng.randrange(9), _va(rng),
                           interesting(rng, 64, (o.PAGE, 1 << 30)), addr,
                           interesting(rng, 32, (1, 4, 512, 262144)), rng.randrange(3),
                           rng.choice((12, 12, 13, 0, 63)), 0, 0)
    elif op == o.CMD_UPDATE_XLT:
        args = struct.pack("<IIQQ", rng.randrange(8), interesting(rng, 32, (1, 2, 2048)),
                           interesting(rng, 64, (0, 1, 3)), addr)
    elif op in (o.CMD_INVALIDATE, o.CMD_PREFETCH):
        args = struct.pack("<IIQQ", rng.randrange(8), rng.randrange(4), _va(rng),
                           interesting(rng, 64, (o.PAGE, 1 << 20)))
    elif op == o.CMD_RESUME:
        args = struct.pack("<II", rng.randrange(6), rng.choice((0, 0, 1, 99)))
    else:
        args = struct.pack("<IIQ", idx, rng.getrandbits(32), rng.getrandbits(64))
    return _entry(op, args, 1 if rng.random() < 0.95 else rng.randrange(256)), []


def _wqe(rng: random.Random, recv: bool) -> bytes:
    def sge() -> tuple[int, int, int]:
        k = rng.randrange(len(MODEL.bufs) + 2)
        b = MODEL.bufs[k % len(MODEL.bufs)]
        if rng.random() < 0.7:
            off = rng.randrange(b.size)
            return k, b.va + off, rng.randrange(1, b.size - off + 1)
        return k, _va(rng), interesting(rng, 32, (o.PAGE,))

    op = o.WR_RECV if recv else rng.choice((0, 1, 1, 2, 2, 3, 3, rng.randrange(256)))
    return Wqe(op, wr_id=rng.getrandbits(64), sges=[sge() for _ in range(rng.randrange(3))],
               rkey=rng.randrange(8), remote_va=_va(rng), imm=rng.getrandbits(32),
               num_sge=rng.choice((None, None, None, 3, 255)),
               flags=rng.choice((0, 0, 0, 0x40, rng.getrandbits(8)))).pack()


def _frame(rng: random.Random) -> bytes:
    """A frame from the peer: mostly well-formed with hostile fields."""
    b = rng.choice(MODEL.bufs)
    payload = rng.randbytes(rng.choice((0, 1, 64, 100, 4096)))
    total = rng.choice((len(payload), len(payload), interesting(rng, 32, (4096, 1 << 30))))
    hdr = struct.pack("<BBBBIIIIIQQII", rng.choice((1, 1, 1, 2)), rng.choice((1, 2, 3, 4, 5, 0, 9)),
                      rng.randrange(4), rng.randrange(6), rng.choice((0, 1, 2, 3, 7, 2**32 - 1)),
                      rng.randrange(4), rng.randrange(4), rng.randrange(8),
                      rng.choice((len(payload), len(payload), 0, 1 << 20)),
                      rng.choice((b.va, b.va + b.size - 8, _va(rng))),
                      rng.choice((0, 0, 64, total)), total & 0xFFFFFFFF, 0)
    crc = zlib.crc32(hdr + payload) ^ (0 if rng.random() < 0.9 else 1)
    f = b"\xff" * 6 + bytes.fromhex("525400000dff") + b"\x88\xb5" + hdr[:44] + \
        struct.pack("<I", crc) + payload
    if rng.random() < 0.05:
        f = f[:rng.randrange(1, len(f))]    # never empty: that ends a dgram netdev
    return f


def ops(rng: random.Random, n: int) -> list[str]:
    """``n`` lines of hostile traffic."""
    m = MODEL
    out: list[str] = []
    while len(out) < n:
        r = rng.random()
        if r < 0.004 and _SETUP:                       # reset, and set up again
            out.append(qmp("system_reset"))
            out += _SETUP
            MODEL.__dict__.update(copy.deepcopy(_AFTER_SETUP).__dict__)
            m = MODEL
            continue
        if r < 0.22:                                   # commands
            # Now and then, what a driver does after a fault: map a whole
            # region, then resume a QP (so the stalled paths run to the end).
            batch = _resolve(rng) if rng.random() < 0.15 else \
                [_command(rng) for _ in range(rng.randrange(1, 4))]
            for entry, before in batch:
                slot = m.cmdq + 64 * (m.cmdq_pi % (1 << CMDQ_LOG))
                out += before
                out.append(memwrite(slot, entry))
                m.cmdq_pi = (m.cmdq_pi + 1) & 0xFFFFFFFF
            pi = m.cmdq_pi if rng.random() < 0.9 else interesting(rng, 32, (m.cmdq_pi,))
            out.append(f"writel {BAR0 + o.REG_CMDQ_PI:#x} {pi:#x}")
        elif r < 0.45:                                 # work requests
            qp = rng.choice(m.qps)
            recv = rng.random() < 0.25
            base, log = (qp.rq_base, qp.rq_log) if recv else (qp.sq_base, qp.sq_log)
            for _ in range(rng.randrange(1, 4)):
                pi = qp.rq_pi if recv else qp.sq_pi
                out.append(memwrite(base + 64 * (pi % (1 << log)), _wqe(rng, recv)))
                if recv:
                    qp.rq_pi = (qp.rq_pi + 1) & 0xFFFFFFFF
                else:
                    qp.sq_pi = (qp.sq_pi + 1) & 0xFFFFFFFF
            pi = qp.rq_pi if recv else qp.sq_pi
            if rng.random() < 0.1:
                pi = interesting(rng, 32, (pi, pi + (1 << log)))
            out.append(f"writel {BAR0 + o.DB_QP_BASE + 16 * qp.qpn + (4 if recv else 0):#x} "
                       f"{pi:#x}")
        elif r < 0.55:                                 # CQ and EQ doorbells, XLT lists
            if rng.random() < 0.5:
                ring = rng.choice([*m.cqs, m.eq])
                assert ring is not None
                ring.ci = (ring.ci + rng.choice((1, 1, 2, 16, 0xFFFF))) & 0xFFFFFFFF
                addr = BAR0 + (o.DB_EQ if ring is m.eq else o.DB_CQ_BASE + 8 * ring.num)
                out.append(f"writel {addr:#x} {ring.ci:#x}")
            else:
                ents = b"".join(struct.pack("<Q", interesting(rng, 64, (
                    m.bufs[0].xlt()[0], 0x1000 | 7, 0xFEE0_0007, 7))) for _ in range(8))
                out.append(memwrite(aligned(rng, m.xlt, 4 * o.PAGE, 8), ents))
        elif r < 0.7:                                  # the link peer
            out.append("frame " + _frame(rng).hex())
        elif r < 0.8:                                  # registers
            reg = rng.choice((o.REG_CTRL, o.REG_CMDQ_BASE_LO, o.REG_CMDQ_BASE_HI,
                              o.REG_CMDQ_LOG_SIZE, o.REG_CMDQ_PI, o.REG_STATUS,
                              rng.randrange(0x4000) & ~3))
            if rng.random() < 0.4:
                out.append(f"readl {BAR0 + reg:#x}")
            elif reg != o.REG_CTRL or rng.random() < 0.2:
                out.append(f"writel {BAR0 + reg:#x} {interesting(rng, 32, (m.cmdq,)):#x}")
        elif r < 0.9:
            out.append(f"clock_step {rng.choice((1000, 50_000, 300_000, 10_000_000)):d}")
        elif r < 0.95:
            prop, val = rng.choice(FAULT_PROPS)
            out.append(qmp("qom-set", path=QOM, property=prop, value=val))
        elif r < 0.99:                                 # config space: decode, BARs, MSI-X
            off = rng.choice((0x04, 0x10, 0x18, 0x3C, 0x40, 0x80, 0x82,
                              rng.randrange(0x1000) & ~3))
            out.append(f"writel {CFG + off:#x} {interesting(rng, 32, (0x6, 0x8000)):#x}")
            out += [f"writel {CFG + 0x10:#x} {BAR0:#x}", f"writel {CFG + 0x04:#x} 0x6"]
        else:
            out += reset_machine()
            out += [f"writel {CFG + 0x10:#x} {BAR0:#x}", f"writel {CFG + 0x04:#x} 0x6"]
    return out

"""A driver for the odp-nic device model, in Python, over qtest.

It does what a guest driver would: maps the BARs, enables MSI-X, sets up the
command queue, creates regions, queues and events, posts work requests and
polls completions, all in guest RAM through qtest memread/memwrite.  The
layouts mirror qemu-devices/include/p2plab/odp_nic_hw.h (see
docs/devices/odp-nic.md).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from tests.support.qtest import PCIDev, QTest

VENDOR_ID = 0x1234
DEVICE_ID = 0x0D1C

# BAR0 registers
REG_MAGIC = 0x000
REG_VERSION = 0x004
REG_MAX_MRS = 0x008
REG_MAX_QPS = 0x00C
REG_MAX_CQS = 0x010
REG_STATUS = 0x018
REG_CTRL = 0x01C
REG_CMDQ_BASE_LO = 0x020
REG_CMDQ_BASE_HI = 0x024
REG_CMDQ_LOG_SIZE = 0x028
REG_CMDQ_PI = 0x02C
REG_CMDQ_CI = 0x030
REG_COUNTERS = 0x100
DB_QP_BASE = 0x1000
DB_CQ_BASE = 0x2000
DB_EQ = 0x3000
MAGIC = 0x4E50444F

# commands
CMD_NOP = 0
CMD_CREATE_MR = 1
CMD_DESTROY_MR = 2
CMD_UPDATE_XLT = 3
CMD_INVALIDATE = 4
CMD_PREFETCH = 5
CMD_CREATE_CQ = 6
CMD_DESTROY_CQ = 7
CMD_CREATE_EQ = 8
CMD_DESTROY_EQ = 9
CMD_CREATE_QP = 10
CMD_DESTROY_QP = 11
CMD_RESUME = 12
CMD_QUERY_COUNTER = 13

ST_OK = 0
ST_BAD_OPCODE = 1
ST_BAD_PARAM = 2
ST_BAD_INDEX = 3
ST_BUSY = 4
ST_BAD_STATE = 5
ST_NO_RESOURCES = 6
ST_DMA_ERROR = 7

ACCESS_LOCAL_WRITE = 1
ACCESS_REMOTE_READ = 2
ACCESS_REMOTE_WRITE = 4
ACCESS_ALL = 7
MR_PINNED = 0
MR_ODP = 1

XLT_VALID = 1
XLT_READ = 2
XLT_WRITE = 4
XLT_RW = XLT_VALID | XLT_READ | XLT_WRITE
PAGE = 4096

DEST_LOOPBACK = 0
DEST_LINK = 1

WR_NOP = 0
WR_WRITE = 1
WR_READ = 2
WR_SEND = 3
WR_RECV = 4

WC_SUCCESS = 0
WC_LOC_LEN_ERR = 1
WC_LOC_PROT_ERR = 2
WC_REM_ACCESS_ERR = 3
WC_BAD_WR = 4
WC_DMA_ERR = 5
WC_FAULT_ABORT = 6
WC_RNR_RETRY_EXC = 7
WC_RETRY_EXC = 8
WC_REM_OP_ERR = 9
WC_FLUSH = 10

EV_PAGE_FAULT = 1
EV_CQ_OVERFLOW = 2
EV_FATAL = 3
FAULT_READ = 1
FAULT_WRITE = 2
QPN_NONE = 0xFFFFFFFF

VEC_CMD = 0
VEC_EQ = 1

COUNTERS = [
    "wrs", "wr-errors", "bytes", "commands", "faults-raised", "faults-resolved",
    "faults-failed", "invalidations", "dma-errors", "link-tx", "link-rx",
    "link-dropped", "link-retries", "eq-overflows", "cq-overflows",
]

# where the fake "process" address space of regions starts
VA_BASE = 0x7F00_0000_0000


class OdpNicError(Exception):
    """The device did not answer as expected (timeout, command status)."""


@dataclass
class Cqe:
    wr_id: int
    byte_len: int
    qpn: int
    opcode: int
    status: int
    imm: int

    @classmethod
    def unpack(cls, raw: bytes) -> Cqe:
        wr_id, blen, qpn, op, st, _, _, imm, _ = struct.unpack("<QIIBBBBIQ", raw)
        return cls(wr_id, blen, qpn, op, st, imm)


@dataclass
class Eqe:
    type: int
    access: int
    qpn: int
    key: int
    length: int
    va: int

    @classmethod
    def unpack(cls, raw: bytes) -> Eqe:
        typ, _, acc, _, qpn, key, ln, va, _ = struct.unpack("<BBBBIIIQQ", raw)
        return cls(typ, acc, qpn, key, ln, va)


@dataclass
class Ring:
    """A CQ or the EQ as the driver sees it."""

    num: int
    base: int
    log_size: int
    ci: int = 0

    @property
    def size(self) -> int:
        return 1 << self.log_size


@dataclass
class QP:
    qpn: int
    sq_base: int
    sq_log: int
    rq_base: int
    rq_log: int
    sq_pi: int = 0
    rq_pi: int = 0


@dataclass
class Buffer:
    """Guest RAM, physically contiguous, seen at a VA of the fake process."""

    iova: int
    va: int
    size: int

    def pages(self) -> int:
        """Pages spanned by [va, va + size): a region's translation count."""
        return (self.va % PAGE + self.size + PAGE - 1) // PAGE

    def xlt(self, perms: int = XLT_RW) -> list[int]:
        first = self.iova - self.va % PAGE      # va and iova share the page offset
        return [(first + i * PAGE) | perms for i in range(self.pages())]


@dataclass
class Wqe:
    opcode: int
    wr_id: int = 0
    sges: list[tuple[int, int, int]] = field(default_factory=list)  # lkey, va, len
    rkey: int = 0
    remote_va: int = 0
    imm: int = 0
    flags: int = 0
    num_sge: int | None = None

    def pack(self) -> bytes:
        sg = list(self.sges) + [(0, 0, 0)] * (2 - len(self.sges))
        n = len(self.sges) if self.num_sge is None else self.num_sge
        out = struct.pack("<BBBBIQIIQ", self.opcode, self.flags, n, 0, self.imm,
                          self.wr_id, self.rkey, 0, self.remote_va)
        for lkey, va, ln in sg[:2]:
            out += struct.pack("<IIQ", lkey, ln, va)
        return out


class OdpNic:
    """One odp-nic function under qtest, driven like a guest driver would."""

    def __init__(self, qt: QTest, dev: int = 5, bar0: int = 0xFE00_0000,
                 bar2: int = 0xFE10_0000, mem_base: int = 0x0100_0000,
                 mem_size: int = 0x1000_0000, qom: str | None = None,
                 bus: int = 0) -> None:
        self.qt = qt
        self.pci: PCIDev = qt.pci(bus, dev)
        self.bar0 = bar0
        self.bar2 = bar2
        self.qom = qom or "/machine/peripheral/nic"
        self.next_free = mem_base
        self.mem_end = mem_base + mem_size
        self.next_va = VA_BASE
        self.msi_base = 0
        self.cmdq_base = 0
        self.cmdq_log = 0
        self.cmdq_pi = 0
        self.eq: Ring | None = None

    # -- bring-up ------------------------------------------------------------
    def setup(self, cmdq_log: int = 4) -> OdpNic:
        ids = self.pci.cfg_read(0)
        if ids != (DEVICE_ID << 16 | VENDOR_ID):
            raise OdpNicError(f"unexpected IDs {ids:#x}")
        self.pci.map_bar(0, self.bar0)
        self.pci.map_bar(2, self.bar2)
        self.pci.enable()
        self.enable_msix()
        if self.rd(REG_MAGIC) != MAGIC:
            raise OdpNicError("bad magic")
        self.cmdq_log = cmdq_log
        self.cmdq_base = self.alloc(64 << cmdq_log)
        self.wr(REG_CMDQ_BASE_LO, self.cmdq_base & 0xFFFFFFFF)
        self.wr(REG_CMDQ_BASE_HI, self.cmdq_base >> 32)
        self.wr(REG_CMDQ_LOG_SIZE, cmdq_log)
        self.cmdq_pi = 0
        return self

    def enable_msix(self) -> None:
        cap = self.pci.capabilities()[0x11]
        self.msi_base = self.alloc(PAGE)
        for v in range(8):
            entry = self.bar2 + 16 * v
            self.qt.writel(entry, (self.msi_base + 4 * v) & 0xFFFFFFFF)
            self.qt.writel(entry + 4, (self.msi_base + 4 * v) >> 32)
            self.qt.writel(entry + 8, 0x100 + v)
            self.qt.writel(entry + 12, 0)
        ctrl = self.pci.cfg_read(cap + 2, 2)
        self.pci.cfg_write(cap + 2, ctrl | 0x8000, 2)

    def msi_count(self, vector: int) -> bool:
        """Did vector fire since the last clear?"""
        return self.qt.readl(self.msi_base + 4 * vector) != 0

    def msi_clear(self, vector: int) -> None:
        self.qt.writel(self.msi_base + 4 * vector, 0)

    # -- memory ------------------------------------------------------------
    def alloc(self, size: int, align: int = PAGE) -> int:
        addr = (self.next_free + align - 1) & ~(align - 1)
        if addr + size > self.mem_end:
            raise OdpNicError("test allocator exhausted")
        self.next_free = addr + size
        self.qt.memset(addr, size, 0)
        return addr

    def buffer(self, size: int, offset: int = 0) -> Buffer:
        """Guest RAM plus a VA range; offset puts va/iova off page start."""
        iova = self.alloc(size + offset + PAGE)
        va = self.next_va
        self.next_va += ((size + offset + 2 * PAGE) // PAGE) * PAGE + 0x10_0000
        return Buffer(iova + offset, va + offset, size)

    # -- registers -----------------------------------------------------------
    def rd(self, off: int) -> int:
        return self.qt.readl(self.bar0 + off)

    def wr(self, off: int, val: int) -> None:
        self.qt.writel(self.bar0 + off, val & 0xFFFFFFFF)

    def counter(self, index: int) -> int:
        return self.rd(REG_COUNTERS + 8 * index) | self.rd(REG_COUNTERS + 8 * index + 4) << 32

    # -- commands ------------------------------------------------------------
    def cmd(self, opcode: int, args: bytes = b"", timeout: float = 10.0) -> tuple[int, int]:
        """Run one command; returns (status, out)."""
        if len(args) > 48:
            raise OdpNicError("command arguments exceed 48 bytes")
        slot = self.cmdq_base + 64 * (self.cmdq_pi % (1 << self.cmdq_log))
        entry = struct.pack("<BBBBIQ", opcode, 0xFF, 1, 0, 0xC0DE, 0) + args.ljust(48, b"\0")
        self.qt.memwrite(slot, entry)
        self.cmdq_pi = (self.cmdq_pi + 1) & 0xFFFFFFFF
        self.wr(REG_CMDQ_PI, self.cmdq_pi)
        deadline = time.monotonic() + timeout
        while self.rd(REG_CMDQ_CI) != self.cmdq_pi:
            if time.monotonic() > deadline:
                raise OdpNicError(f"command {opcode} timed out")
        _, status, owner, _, _, out = struct.unpack("<BBBBIQ", self.qt.memread(slot, 16))
        if owner != 0:
            raise OdpNicError("device did not release the command")
        return status, out

    def check(self, opcode: int, args: bytes = b"") -> int:
        status, out = self.cmd(opcode, args)
        if status != ST_OK:
            raise OdpNicError(f"command {opcode} failed with status {status}")
        return out

    def create_mr(self, key: int, start: int, length: int, access: int = ACCESS_ALL,
                  mode: int = MR_PINNED, xlt: list[int] | None = None,
                  page_shift: int = 12) -> int:
        xlt_addr, count = 0, 0
        if xlt:
            xlt_addr = self.write_list(xlt)
            count = len(xlt)
        args = struct.pack("<IIQQQIBBHQ", key, access, start, length, xlt_addr, count,
                           mode, page_shift, 0, 0)
        return self.cmd(CMD_CREATE_MR, args)[0]

    def write_list(self, entries: list[int]) -> int:
        addr = self.alloc(8 * len(entries), 8)
        data = b"".join(struct.pack("<Q", e) for e in entries)
        for off in range(0, len(data), 32768):
            self.qt.memwrite(addr + off, data[off:off + 32768])
        return addr

    def destroy_mr(self, key: int) -> int:
        return self.cmd(CMD_DESTROY_MR, struct.pack("<I", key))[0]

    def update_xlt(self, key: int, page_index: int, entries: list[int]) -> int:
        addr = self.write_list(entries) if entries else 0
        return self.cmd(CMD_UPDATE_XLT, struct.pack("<IIQQ", key, len(entries),
                                                    page_index, addr))[0]

    def invalidate(self, key: int, va: int, length: int) -> int:
        return self.cmd(CMD_INVALIDATE, struct.pack("<IIQQ", key, 0, va, length))[0]

    def prefetch(self, key: int, va: int, length: int, write: bool = False) -> tuple[int, int]:
        return self.cmd(CMD_PREFETCH, struct.pack("<IIQQ", key, int(write), va, length))

    def create_cq(self, cqn: int, log_size: int = 6, vector: int = 2) -> Ring:
        base = self.alloc(32 << log_size)
        self.check(CMD_CREATE_CQ, struct.pack("<IBBHQ", cqn, log_size, 0, vector, base))
        return Ring(cqn, base, log_size)

    def create_eq(self, log_size: int = 6) -> Ring:
        base = self.alloc(32 << log_size)
        self.check(CMD_CREATE_EQ, struct.pack("<IBBHQ", 0, log_size, 0, VEC_EQ, base))
        self.eq = Ring(0, base, log_size)
        return self.eq

    def create_qp(self, qpn: int, send_cq: Ring, recv_cq: Ring | None = None,
                  sq_log: int = 5, rq_log: int = 5, dest: int = DEST_LOOPBACK,
                  remote_qpn: int | None = None) -> QP:
        sq = self.alloc(64 << sq_log)
        rq = self.alloc(64 << rq_log) if rq_log else 0
        rcq = recv_cq or send_cq
        args = struct.pack("<IIIBBBBQQI", qpn, send_cq.num, rcq.num, sq_log, rq_log, dest, 0,
                           sq, rq, qpn if remote_qpn is None else remote_qpn)
        self.check(CMD_CREATE_QP, args)
        return QP(qpn, sq, sq_log, rq, rq_log)

    def destroy_qp(self, qpn: int) -> int:
        return self.cmd(CMD_DESTROY_QP, struct.pack("<I", qpn))[0]

    def resume(self, qpn: int, status: int = 0) -> int:
        return self.cmd(CMD_RESUME, struct.pack("<II", qpn, status))[0]

    # -- work requests ---------------------------------------------------------
    def _post(self, base: int, log: int, pi: int, wqes: tuple[Wqe, ...]) -> int:
        """Write WQEs at ring index pi, one memwrite per contiguous run."""
        size = 1 << log
        i = 0
        while i < len(wqes):
            slot = pi % size
            run = min(len(wqes) - i, size - slot)
            self.qt.memwrite(base + 64 * slot, b"".join(w.pack() for w in wqes[i:i + run]))
            pi = (pi + run) & 0xFFFFFFFF
            i += run
        return pi

    def post_send(self, qp: QP, *wqes: Wqe) -> None:
        qp.sq_pi = self._post(qp.sq_base, qp.sq_log, qp.sq_pi, wqes)
        self.wr(DB_QP_BASE + 16 * qp.qpn, qp.sq_pi)

    def post_recv(self, qp: QP, *wqes: Wqe) -> None:
        qp.rq_pi = self._post(qp.rq_base, qp.rq_log, qp.rq_pi, wqes)
        self.wr(DB_QP_BASE + 16 * qp.qpn + 4, qp.rq_pi)

    def qp_state(self, qp: QP) -> int:
        return self.rd(DB_QP_BASE + 16 * qp.qpn + 12)

    def _ring_next(self, ring: Ring) -> bytes | None:
        slot = ring.base + 32 * (ring.ci % ring.size)
        raw = self.qt.memread(slot, 32)
        phase = 1 if (ring.ci // ring.size) % 2 == 0 else 0
        if raw[18 if ring is not self.eq else 1] != phase:
            return None
        ring.ci = (ring.ci + 1) & 0xFFFFFFFF
        return raw

    def poll_cq(self, cq: Ring, n: int = 1, timeout: float = 10.0,
                step_ns: int | None = None) -> list[Cqe]:
        """Wait for n completions (clock_step(step_ns) between polls if given).

        CQEs are written in order, so it waits on the owner byte of the n-th
        one and then reads them all at once.
        """
        if not 1 <= n <= cq.size:
            raise OdpNicError(f"cannot wait for {n} entries of a {cq.size}-entry CQ")
        last = (cq.ci + n - 1) & 0xFFFFFFFF
        phase = 1 if (last // cq.size) % 2 == 0 else 0
        deadline = time.monotonic() + timeout
        while self.qt.memread(cq.base + 32 * (last % cq.size) + 18, 1)[0] != phase:
            if time.monotonic() > deadline:
                got = len(self.drain_cq(cq))
                raise OdpNicError(f"CQ {cq.num}: {got}/{n} completions")
            if step_ns is not None:
                self.qt.clock_step(step_ns)
        raw = b""
        ci, left = cq.ci, n
        while left:
            slot = ci % cq.size
            run = min(left, cq.size - slot)
            raw += self.qt.memread(cq.base + 32 * slot, 32 * run)
            ci, left = (ci + run) & 0xFFFFFFFF, left - run
        cq.ci = ci
        self.wr(DB_CQ_BASE + 8 * cq.num, cq.ci)
        return [Cqe.unpack(raw[off:off + 32]) for off in range(0, len(raw), 32)]

    def drain_cq(self, cq: Ring) -> list[Cqe]:
        """Whatever completions are there now, without waiting."""
        out: list[Cqe] = []
        while (raw := self._ring_next(cq)) is not None and len(out) < cq.size:
            out.append(Cqe.unpack(raw))
        self.wr(DB_CQ_BASE + 8 * cq.num, cq.ci)
        return out

    def drain_eq(self) -> list[Eqe]:
        out: list[Eqe] = []
        if self.eq is None:
            return out
        while (raw := self._ring_next(self.eq)) is not None and len(out) < self.eq.size:
            out.append(Eqe.unpack(raw))
        self.wr(DB_EQ, self.eq.ci)
        return out

    def cq_empty(self, cq: Ring) -> bool:
        slot = cq.base + 32 * (cq.ci % cq.size)
        phase = 1 if (cq.ci // cq.size) % 2 == 0 else 0
        return self.qt.memread(slot + 18, 1)[0] != phase

    def poll_eq(self, n: int = 1, timeout: float = 10.0,
                step_ns: int | None = None) -> list[Eqe]:
        if self.eq is None:
            raise OdpNicError("no EQ")
        out: list[Eqe] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            raw = self._ring_next(self.eq)
            if raw is None:
                if time.monotonic() > deadline:
                    raise OdpNicError(f"EQ: {len(out)}/{n} events")
                if step_ns is not None:
                    self.qt.clock_step(step_ns)
                continue
            out.append(Eqe.unpack(raw))
        self.wr(DB_EQ, self.eq.ci)
        return out

    # -- QOM -------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {name: int(self.qt.qom_get(self.qom, name)) for name in COUNTERS}

    def qom_get(self, prop: str) -> object:
        return self.qt.qom_get(self.qom, prop)

    def qom_set(self, prop: str, value: object) -> None:
        self.qt.qom_set(self.qom, prop, value)

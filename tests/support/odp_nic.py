"""A driver for the odp-nic device model, in Python, over qtest.

It does what a guest driver would: maps the BARs, enables MSI-X, sets up the
command queue, creates regions, queues and events, posts work requests and
polls completions, all in guest RAM through qtest memread/memwrite.  Register
offsets, opcodes, status codes and flags are read from the one hardware header,
qemu-devices/include/p2plab/odp_nic_hw.h (docs/devices/odp-nic.md is the prose
form), so the tests cannot drift from the device.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from tests.support.hwheader import INCLUDE, load_header
from tests.support.qtest import PCIDev, QTest

HW = load_header(INCLUDE / "odp_nic_hw.h", "ODP_NIC_")


def hw(name: str) -> int:
    """ODP_NIC_<name> from the hardware header."""
    return HW["ODP_NIC_" + name]


VENDOR_ID = hw("VENDOR_ID")
DEVICE_ID = hw("DEVICE_ID")

# BAR0 registers
REG_MAGIC = hw("REG_MAGIC")
REG_VERSION = hw("REG_VERSION")
REG_MAX_MRS = hw("REG_MAX_MRS")
REG_MAX_QPS = hw("REG_MAX_QPS")
REG_MAX_CQS = hw("REG_MAX_CQS")
REG_STATUS = hw("REG_STATUS")
REG_CTRL = hw("REG_CTRL")
REG_CMDQ_BASE_LO = hw("REG_CMDQ_BASE_LO")
REG_CMDQ_BASE_HI = hw("REG_CMDQ_BASE_HI")
REG_CMDQ_LOG_SIZE = hw("REG_CMDQ_LOG_SIZE")
REG_CMDQ_PI = hw("REG_CMDQ_PI")
REG_CMDQ_CI = hw("REG_CMDQ_CI")
REG_COUNTERS = hw("REG_COUNTERS")
DB_QP_BASE = hw("DB_QP_BASE")
DB_CQ_BASE = hw("DB_CQ_BASE")
DB_EQ = hw("DB_EQ")
MAGIC = hw("MAGIC")

# commands
CMD_NOP = hw("CMD_NOP")
CMD_CREATE_MR = hw("CMD_CREATE_MR")
CMD_DESTROY_MR = hw("CMD_DESTROY_MR")
CMD_UPDATE_XLT = hw("CMD_UPDATE_XLT")
CMD_INVALIDATE = hw("CMD_INVALIDATE")
CMD_PREFETCH = hw("CMD_PREFETCH")
CMD_CREATE_CQ = hw("CMD_CREATE_CQ")
CMD_DESTROY_CQ = hw("CMD_DESTROY_CQ")
CMD_CREATE_EQ = hw("CMD_CREATE_EQ")
CMD_DESTROY_EQ = hw("CMD_DESTROY_EQ")
CMD_CREATE_QP = hw("CMD_CREATE_QP")
CMD_DESTROY_QP = hw("CMD_DESTROY_QP")
CMD_RESUME = hw("CMD_RESUME")
CMD_QUERY_COUNTER = hw("CMD_QUERY_COUNTER")

ST_OK = hw("CMD_OK")
ST_BAD_OPCODE = hw("CMD_BAD_OPCODE")
ST_BAD_PARAM = hw("CMD_BAD_PARAM")
ST_BAD_INDEX = hw("CMD_BAD_INDEX")
ST_BUSY = hw("CMD_BUSY")
ST_BAD_STATE = hw("CMD_BAD_STATE")
ST_NO_RESOURCES = hw("CMD_NO_RESOURCES")
ST_DMA_ERROR = hw("CMD_DMA_ERROR")

ACCESS_LOCAL_WRITE = hw("ACCESS_LOCAL_WRITE")
ACCESS_REMOTE_READ = hw("ACCESS_REMOTE_READ")
ACCESS_REMOTE_WRITE = hw("ACCESS_REMOTE_WRITE")
ACCESS_ALL = hw("ACCESS_ALL")
MR_PINNED = hw("MR_PINNED")
MR_ODP = hw("MR_ODP")

XLT_VALID = hw("XLT_VALID")
XLT_READ = hw("XLT_READ")
XLT_WRITE = hw("XLT_WRITE")
XLT_RW = XLT_VALID | XLT_READ | XLT_WRITE
PAGE = hw("PAGE_SIZE")

DEST_LOOPBACK = hw("QP_DEST_LOOPBACK")
DEST_LINK = hw("QP_DEST_LINK")

WR_NOP = hw("WR_NOP")
WR_WRITE = hw("WR_RDMA_WRITE")
WR_READ = hw("WR_RDMA_READ")
WR_SEND = hw("WR_SEND")
WR_RECV = hw("WR_RECV")

WC_SUCCESS = hw("WC_SUCCESS")
WC_LOC_LEN_ERR = hw("WC_LOC_LEN_ERR")
WC_LOC_PROT_ERR = hw("WC_LOC_PROT_ERR")
WC_REM_ACCESS_ERR = hw("WC_REM_ACCESS_ERR")
WC_BAD_WR = hw("WC_BAD_WR")
WC_DMA_ERR = hw("WC_DMA_ERR")
WC_FAULT_ABORT = hw("WC_FAULT_ABORT")
WC_RNR_RETRY_EXC = hw("WC_RNR_RETRY_EXC")
WC_RETRY_EXC = hw("WC_RETRY_EXC")
WC_REM_OP_ERR = hw("WC_REM_OP_ERR")
WC_FLUSH = hw("WC_FLUSH")

EV_PAGE_FAULT = hw("EV_PAGE_FAULT")
EV_CQ_OVERFLOW = hw("EV_CQ_OVERFLOW")
EV_FATAL = hw("EV_FATAL")
FAULT_READ = hw("FAULT_READ")
FAULT_WRITE = hw("FAULT_WRITE")
QPN_NONE = hw("QPN_NONE")

VEC_CMD = hw("VEC_CMD")
VEC_EQ = hw("VEC_EQ")

COUNTERS = [
    "wrs", "wr-errors", "bytes", "commands", "faults-raised", "faults-resolved",
    "faults-failed", "invalidations", "dma-errors", "link-tx", "link-rx",
    "link-dropped", "link-retries", "eq-overflows", "cq-overflows",
]

# where the fake "process" address space of regions starts
VA_BASE = 0x7F00_0000_0000
# Round trips that let the device's bottom halves run out (each work pass
# handles at most a few WQEs, then reschedules itself).
SETTLE_ROUND_TRIPS = 64


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

    def poll_one(self, cq: Ring, timeout: float = 10.0, step_ns: int | None = None) -> Cqe:
        """Exactly one completion: wait for it, let the device finish what it
        was doing, and fail if another completion follows it.

        The device works in bottom halves that QEMU runs between qtest
        commands, so register round trips drain what the posted work queued;
        this is sound for loopback work, whose completions depend on nothing
        outside the device.  (A link completion waits on the peer: wait for
        the frame's counter instead.)"""
        [c] = self.poll_cq(cq, 1, timeout, step_ns)
        for _ in range(SETTLE_ROUND_TRIPS):
            self.rd(REG_STATUS)
        extra = self.drain_cq(cq)
        if extra:
            raise OdpNicError(f"CQ {cq.num}: {len(extra)} completion(s) after the one "
                              f"expected: {extra}")
        return c

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

"""A small client for QEMU's qtest accelerator, plus PCI helpers.

It drives MMIO, port I/O, guest memory and config space of a QEMU started with
``-accel qtest``: no guest kernel needed.  QMP rides alongside for QOM reads
and writes (device counters, fault-injection properties).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

REPO = Path(__file__).resolve().parents[2]
QEMU = Path(os.environ.get("P2PLAB_QEMU", REPO / "build" / "bin" / "qemu-system-x86_64"))

# q35: ECAM window we program into the MCH's PCIEXBAR (no firmware runs here).
ECAM_BASE = 0xB000_0000
# The qtest lines that do it: MCH (00:00.0) PCIEXBAR at 0x60 = base | 256 MiB | enable.
ECAM_LINES = ["outl 0xcf8 0x80000060", f"outl 0xcfc {ECAM_BASE | 1:#x}",
              "outl 0xcf8 0x80000064", "outl 0xcfc 0x0"]


class QTestError(Exception):
    """The qtest conversation failed: QEMU died, or a command was refused."""


@dataclass
class QTest:
    """One QEMU process under the qtest accelerator."""

    workdir: Path
    extra_args: list[str] = field(default_factory=list)
    machine: str = "q35"
    memory: str = "512M"
    timeout: float = 30.0
    qemu: Path = QEMU
    env: dict[str, str] | None = None
    # qtest's own log of every line (QEMU's default: stderr, into qemu.log);
    # "none" for throughput (the fuzzer keeps its own trace).
    qtest_log: str | None = None
    # Every line sent (qtest lines, and "qmp {json}" for QMP), when a list.
    record: list[str] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.qtest_path = self.workdir / "qtest.sock"
        self.qmp_path = self.workdir / "qmp.sock"
        self.log_path = self.workdir / "qemu.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.buf = b""
        self.irqs: list[str] = []
        self.ncmds = 0                  # qtest round trips so far (benchmarks)
        self.qmp_client: QEMUMonitorProtocol | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> QTest:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.qtest_path))
        listener.listen(1)
        listener.settimeout(self.timeout)
        # qemu.qmp's legacy client runs on "this thread's event loop" and never
        # closes it: give it one of its own, closed in close(), so no loop is
        # orphaned (and warns) when a later asyncio.run() resets the thread's.
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        qmp = QEMUMonitorProtocol(str(self.qmp_path), server=True)
        args = [
            str(self.qemu), "-machine", self.machine, "-accel", "qtest", "-nodefaults",
            "-display", "none", "-m", self.memory,
            "-qtest", f"unix:{self.qtest_path}", "-qmp", f"unix:{self.qmp_path}",
            *(["-qtest-log", self.qtest_log] if self.qtest_log else []),
            *self.extra_args,
        ]
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as QEMU)
        env = None if self.env is None else {**os.environ, **self.env}
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            self.sock, _ = listener.accept()
            qmp.accept(self.timeout)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise QTestError(f"QEMU did not connect: {self.log_tail()}") from exc
        finally:
            listener.close()
        self.qmp_client = qmp
        self.sock.settimeout(self.timeout)
        self.enable_ecam()
        return self

    def close(self) -> None:
        if self.qmp_client is not None:
            # A QEMU that died (or quit) leaves a monitor that cannot close
            # cleanly: EOF, or a reset connection.  The process is killed below.
            with contextlib.suppress(EOFError, OSError):
                self.qmp_client.close()
            self.qmp_client = None
        loop, self.loop = getattr(self, "loop", None), None
        if loop is not None:
            # Another QTest of this thread keeps its own loop (its client holds it).
            asyncio.set_event_loop(None)
            loop.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()

    def __enter__(self) -> QTest:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # -- protocol ---------------------------------------------------------
    def cmd(self, line: str) -> list[str]:
        if self.sock is None:
            raise QTestError("not connected")
        self.ncmds += 1
        if self.record is not None:
            self.record.append(line)
        try:
            self.sock.sendall(line.encode() + b"\n")
            return self._answer(line)
        except OSError as exc:
            raise QTestError(f"qtest I/O failed on {line!r}: {self.log_tail()}") from exc

    def batch(self, lines: list[str], chunk: int = 256) -> list[list[str]]:
        """Send ``lines`` pipelined, ``chunk`` at a time, and collect their
        answers in order.  qtest answers each line before reading the next, so
        pipelining is safe; the chunks keep both socket buffers from filling
        (QEMU blocks writing answers nobody reads)."""
        if self.sock is None:
            raise QTestError("not connected")
        out: list[list[str]] = []
        for first in range(0, len(lines), chunk):
            part = lines[first:first + chunk]
            if self.record is not None:
                self.record.extend(part)
            self.ncmds += len(part)
            try:
                self.sock.sendall("".join(f"{line}\n" for line in part).encode())
                for line in part:
                    out.append(self._answer(line))
            except OSError as exc:
                raise QTestError(f"qtest I/O failed in a batch at {len(out)}: "
                                 f"{self.log_tail()}") from exc
        return out

    def _answer(self, line: str) -> list[str]:
        """The next answer (IRQ notices are collected on the way)."""
        assert self.sock is not None
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise QTestError(f"QEMU closed qtest on {line!r}: {self.log_tail()}")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\n", 1)
            words = raw.decode().split()
            if words and words[0] == "IRQ":
                self.irqs.append(" ".join(words[1:]))
                continue
            if not words or words[0] != "OK":
                raise QTestError(f"{line!r} -> {raw.decode()!r}")
            return words[1:]

    def read(self, width: int, addr: int) -> int:
        return int(self.cmd(f"read{'bwlq'[width.bit_length() - 1]} {addr:#x}")[0], 16)

    def write(self, width: int, addr: int, val: int) -> None:
        self.cmd(f"write{'bwlq'[width.bit_length() - 1]} {addr:#x} {val:#x}")

    def readl(self, addr: int) -> int:
        return self.read(4, addr)

    def writel(self, addr: int, val: int) -> None:
        self.write(4, addr, val)

    def readq(self, addr: int) -> int:
        return self.read(8, addr)

    def writeq(self, addr: int, val: int) -> None:
        self.write(8, addr, val)

    def outl(self, port: int, val: int) -> None:
        self.cmd(f"outl {port:#x} {val:#x}")

    def inl(self, port: int) -> int:
        return int(self.cmd(f"inl {port:#x}")[0], 16)

    def memread(self, addr: int, size: int) -> bytes:
        # qtest has no "memread": b64read is the bulk form (and allows size 0).
        if size == 0:
            return b""
        return base64.b64decode(self.cmd(f"b64read {addr:#x} {size:#x}")[0])

    def memwrite(self, addr: int, data: bytes) -> None:
        if data:
            self.cmd(f"b64write {addr:#x} {len(data):#x} {base64.b64encode(data).decode()}")

    def memset(self, addr: int, size: int, val: int) -> None:
        self.cmd(f"memset {addr:#x} {size:#x} {val:#x}")

    def clock_step(self, ns: int | None = None) -> int:
        return int(self.cmd("clock_step" if ns is None else f"clock_step {ns}")[0])

    # -- QMP ----------------------------------------------------------------
    def qmp(self, command: str, **args: Any) -> Any:
        if self.qmp_client is None:
            raise QTestError("QMP not connected")
        if self.record is not None:
            self.record.append("qmp " + json.dumps({"execute": command, "arguments": args}))
        return self.qmp_client.cmd(command, **args)

    def qom_get(self, path: str, prop: str) -> Any:
        return self.qmp("qom-get", path=path, property=prop)

    def qom_set(self, path: str, prop: str, value: Any) -> None:
        self.qmp("qom-set", path=path, property=prop, value=value)

    # -- PCI ------------------------------------------------------------------
    def enable_ecam(self) -> None:
        self.batch(ECAM_LINES)

    def pci(self, bus: int, dev: int, fn: int = 0) -> PCIDev:
        return PCIDev(self, bus, dev, fn)


@dataclass
class PCIDev:
    """Config space of one function, through ECAM."""

    qt: QTest
    bus: int
    dev: int
    fn: int = 0

    def cfg_addr(self, off: int) -> int:
        return ECAM_BASE | (self.bus << 20) | (self.dev << 15) | (self.fn << 12) | off

    def cfg_read(self, off: int, width: int = 4) -> int:
        return self.qt.read(width, self.cfg_addr(off))

    def cfg_write(self, off: int, val: int, width: int = 4) -> None:
        self.qt.write(width, self.cfg_addr(off), val)

    def capabilities(self) -> dict[int, int]:
        """Standard capabilities: id -> offset."""
        caps: dict[int, int] = {}
        off = self.cfg_read(0x34, 1) & 0xFC
        while off and len(caps) < 48:
            caps.setdefault(self.cfg_read(off, 1), off)
            off = self.cfg_read(off + 1, 1) & 0xFC
        return caps

    def ext_capabilities(self) -> dict[int, int]:
        """PCIe extended capabilities: id -> offset."""
        caps: dict[int, int] = {}
        off = 0x100
        while off and len(caps) < 64:
            hdr = self.cfg_read(off)
            if hdr in (0, 0xFFFFFFFF):
                break
            caps.setdefault(hdr & 0xFFFF, off)
            off = (hdr >> 20) & 0xFFC
        return caps

    def bar_size(self, n: int) -> int:
        """Size a BAR the way firmware does: write all ones, read the mask back."""
        off = 0x10 + 4 * n
        lo = self.cfg_read(off)
        is64 = (lo & 0x6) == 0x4
        hi = self.cfg_read(off + 4) if is64 else 0
        self.cfg_write(off, 0xFFFFFFFF)
        if is64:
            self.cfg_write(off + 4, 0xFFFFFFFF)
        mask = self.cfg_read(off) & ~0xF
        if is64:
            mask |= self.cfg_read(off + 4) << 32
            self.cfg_write(off + 4, hi)
        else:
            mask |= 0xFFFFFFFF_00000000
        self.cfg_write(off, lo)
        return (~mask + 1) & 0xFFFFFFFF_FFFFFFFF if mask & 0xFFFFFFFF_FFFFFFF0 else 0

    def map_bar(self, n: int, addr: int) -> None:
        off = 0x10 + 4 * n
        lo = self.cfg_read(off)
        self.cfg_write(off, (addr & 0xFFFFFFFF) | (lo & 0xF))
        if (lo & 0x6) == 0x4:
            self.cfg_write(off + 4, addr >> 32)

    def enable(self, memory: bool = True, master: bool = True) -> None:
        cmd = self.cfg_read(0x04, 2) | (0x2 if memory else 0) | (0x4 if master else 0)
        self.cfg_write(0x04, cmd, 2)

    def disable_memory(self) -> None:
        self.cfg_write(0x04, self.cfg_read(0x04, 2) & ~0x2, 2)

"""One QEMU under qtest with one fuzzed device, and the crash oracle.

A crash is QEMU dying (a signal, an abort, an AddressSanitizer or UBSan report:
the sanitizer build runs with halt_on_error), QEMU refusing a well-formed qtest
line, or QEMU not answering within the timeout (a hang).  Whatever happened,
the target reports it with the index of the first line whose answer was lost
and the tail of QEMU's log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.qtest import QTest, QTestError

SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:halt_on_error=1:symbolize=1",
    "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1",
}
# Log text that means a crash even if QEMU is still (briefly) alive.
CRASH_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "Assertion", "qemu: hardware error",
                 "Segmentation fault", "**\nERROR:")


@dataclass
class Crash:
    """What went wrong, at which line (index into setup + ops), and QEMU's log tail."""

    kind: str
    index: int
    detail: str

    def signature(self) -> str:
        """A short key for deduplication: the kind and the first report line."""
        for line in self.detail.splitlines():
            if any(m.strip("*\n") in line for m in CRASH_MARKERS):
                return f"{self.kind}: {line.strip()[:160]}"
        return self.kind


@dataclass(frozen=True)
class TargetSpec:
    """A device configuration to fuzz."""

    name: str
    device_args: tuple[str, ...]
    link: bool = False               # a dgram netdev whose peer is the fuzzer


class Target:
    """Runs lines against a fresh QEMU; ``run`` returns None or the Crash."""

    def __init__(self, spec: TargetSpec, qemu: Path, workdir: Path,
                 timeout: float = 20.0) -> None:
        self.spec = spec
        self.qemu = qemu
        self.workdir = workdir
        self.timeout = timeout
        self.qt: QTest | None = None
        self.sock: socket.socket | None = None
        self._short: tempfile.TemporaryDirectory[str] | None = None
        self.peer_path: Path | None = None
        self.sent = 0

    def start(self, record: list[str] | None = None) -> QTest:
        args = list(self.spec.device_args)
        if self.spec.link:
            # Unix socket paths must stay short (108 bytes): not under workdir.
            self._short = tempfile.TemporaryDirectory(prefix="p2pfz")
            dev, self.peer_path = Path(self._short.name) / "d", Path(self._short.name) / "p"
            args = ["-netdev", f"dgram,id=n0,local.type=unix,local.path={dev},"
                               f"remote.type=unix,remote.path={self.peer_path}", *args]
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(self.peer_path))
            self.sock.setblocking(False)
            self.dev_path = dev
        self.qt = QTest(self.workdir, extra_args=args, qemu=self.qemu, env=SANITIZER_ENV,
                        qtest_log="none", timeout=self.timeout, record=record)
        self.qt.start()
        return self.qt

    def close(self) -> None:
        if self.qt is not None:
            self.qt.close()
            self.qt = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self._short is not None:
            self._short.cleanup()
            self._short = None

    def _frame(self, data: bytes) -> None:
        assert self.sock is not None
        with contextlib.suppress(BlockingIOError, FileNotFoundError, ConnectionRefusedError):
            # Drain what the device sent, so neither side blocks; a full socket drops.
            while True:
                self.sock.recv(1 << 16)
        with contextlib.suppress(BlockingIOError, FileNotFoundError, ConnectionRefusedError):
            self.sock.sendto(data, str(self.dev_path))

    def run(self, lines: list[str], base: int = 0) -> Crash | None:
        """Send ``lines`` (their indices start at ``base``); None if QEMU survived."""
        assert self.qt is not None
        qt = self.qt
        i = 0
        try:
            while i < len(lines):
                line = lines[i]
                if line.startswith("qmp "):
                    cmd = json.loads(line[4:])
                    with contextlib.suppress(Exception):   # a refused command is fine
                        qt.qmp(cmd["execute"], **cmd.get("arguments", {}))
                    i += 1
                elif line.startswith("frame "):
                    if self.sock is not None:
                        self._frame(bytes.fromhex(line[6:]))
                    i += 1
                else:
                    j = i
                    while j < len(lines) and not lines[j].startswith(("qmp ", "frame ")):
                        j += 1
                    qt.batch(lines[i:j])
                    self.sent += j - i
                    i = j
            qt.readl(0)     # a round trip: everything before it was processed
        except (QTestError, OSError, TimeoutError) as exc:
            return self._crash(base + i, exc)
        tail = qt.log_tail(8000)
        if any(m in tail for m in CRASH_MARKERS):
            return Crash("report", base + len(lines), tail)
        return None

    def _crash(self, index: int, exc: BaseException) -> Crash:
        assert self.qt is not None and self.qt.proc is not None
        try:
            rc = self.qt.proc.wait(timeout=5)
        except Exception:
            rc = None
        tail = self.qt.log_tail(8000)
        timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError)
        if rc is None:
            kind = "hang" if timed_out else "refused"
        elif rc < 0:
            kind = f"signal {-rc}"
        else:
            kind = f"exit {rc}"
        return Crash(kind, index, f"{exc}\n{tail}")

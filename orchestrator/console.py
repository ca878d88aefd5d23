"""Watching a VM's serial console: the log file QEMU writes, tailed as it grows.

QEMU writes every byte of the console to ``console.log`` (chardev ``logfile=``),
whether or not anyone is attached to the console socket. :class:`ConsoleWatcher`
polls that file, keeps the text, and flags a kernel panic, oops or BUG, and
the reports a kernel prints without dying: a WARN, a lockdep splat, a KASAN,
UBSAN, DEBUG_OBJECTS or DMA-API report, a kmemleak leak.  Either fails the step
that was running; :meth:`ConsoleWatcher.reports` gives each report whole for
the results.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

CRASH_PATTERNS = re.compile(
    r"Kernel panic - not syncing|Oops: |(?<![A-Z])BUG: |general protection fault|"
    r"Unable to handle kernel|kernel BUG at|watchdog: BUG: soft lockup|"
    r"INFO: task .* blocked for more than|rcu: INFO: rcu_\w+ detected stalls"
)
# The guest lives on after these, but the kernel says something is wrong.
# Lockdep's splats all begin "WARNING: ", as WARN_ON's do; KASAN's begin "BUG: KASAN".
REPORT_PATTERNS = re.compile(
    r"WARNING: |UBSAN: |ODEBUG: |DMA-API: |kmemleak: \d+ new suspected memory leak|"
    r"BUG: KASAN: |BUG: sleeping function called|BUG: Bad page"
)
_ANY = re.compile(f"{CRASH_PATTERNS.pattern}|{REPORT_PATTERNS.pattern}")
# Where a report's text ends; a report is cut at this many lines anyway.
_REPORT_END = re.compile(r"---\[ end (trace|Kernel panic)|^=+$")
REPORT_MAX_LINES = 80
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")



def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])

class ConsoleWatcher:
    """Tails one console log; ``crashed`` is set when a crash pattern appears."""

    def __init__(self, path: Path, poll: float = 0.1) -> None:
        self.path = path
        self.poll = poll
        self.text = ""
        self.crash_line: str | None = None
        self.crashed = asyncio.Event()
        self.last_output = time.monotonic()
        self._offset = 0
        self._scan_from = 0

    def read_new(self) -> bool:
        """Read what was appended since last time; True if anything was."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return False
        if not data:
            return False
        self._offset += len(data)
        self.text += data.decode("utf-8", "replace")
        self.last_output = time.monotonic()
        if self.crash_line is None:
            start = max(0, self.text.rfind("\n", 0, self._scan_from) + 1)
            m = _ANY.search(self.text, start)
            if m:
                end = self.text.find("\n", m.start())
                line_start = self.text.rfind("\n", 0, m.start()) + 1
                self.crash_line = self.text[line_start : end if end >= 0 else None].strip()
                self.crashed.set()
            self._scan_from = len(self.text)
        return True

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            self.read_new()
            await asyncio.sleep(self.poll)

    @property
    def crash_kind(self) -> str:
        """``guest crashed`` or ``kernel report``, for the line in :attr:`crash_line`."""
        if self.crash_line is not None and REPORT_PATTERNS.search(self.crash_line):
            return "kernel report"
        return "guest crashed"

    def reports(self) -> list[str]:
        """Every crash or report in the console, each from its first line to its end."""
        self.read_new()
        lines = self.text.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            if not _ANY.search(lines[i]):
                i += 1
                continue
            # Lockdep and KASAN open with a rule of '=' just above the title.
            start = i - 1 if i > 0 and _REPORT_END.search(_TIMESTAMP.sub("", lines[i - 1])) else i
            end = i + 1
            while end < len(lines) and end - start < REPORT_MAX_LINES:
                body = _TIMESTAMP.sub("", lines[end])
                end += 1
                if _REPORT_END.search(body):
                    break
            out.append("\n".join(lines[start:end]))
            i = end
        return out

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the console."""
        self.read_new()
        return tail_lines(self.text, lines)

    def mark(self) -> int:
        """A position in the console text, for :meth:`wait_for` to search from."""
        self.read_new()
        return len(self.text)

    async def wait_for(self, pattern: str, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` appears in the console after position ``start``."""
        rx = re.compile(pattern)
        while True:
            self.read_new()
            m = rx.search(self.text, start)
            if m:
                return m
            await asyncio.sleep(self.poll)

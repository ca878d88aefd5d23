"""Watching a VM's serial console: the log file QEMU writes, tailed as it grows.

QEMU writes every byte of the console to ``console.log`` (chardev ``logfile=``),
whether or not anyone is attached to the console socket. :class:`ConsoleWatcher`
polls that file, keeps the text, and flags a kernel panic, oops or BUG, and
the reports a kernel prints without dying: a WARN, a lockdep splat, a KASAN,
UBSAN or DEBUG_OBJECTS report, a kmemleak leak.  Either fails the step
that was running; :meth:`ConsoleWatcher.reports` gives each report whole for
the results.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from pathlib import Path

CRASH_PATTERNS = re.compile(
    r"Kernel panic - not syncing|Oops: |(?<![A-Z])BUG: |general protection fault|"
    r"Unable to handle kernel|kernel BUG at|watchdog: BUG: soft lockup|"
    r"INFO: task .* blocked for more than|rcu: INFO: rcu_\w+ detected stalls"
)
# The guest lives on after these, but the kernel says something is wrong.
# Lockdep's splats all begin "WARNING: ", as WARN_ON's do; KASAN's begin "BUG: KASAN".
REPORT_PATTERNS = re.compile(
    r"WARNING: |UBSAN: |ODEBUG: |kmemleak: \d+ new suspected memory leak|"
    r"BUG: KASAN: |BUG: sleeping function called|BUG: Bad page"
)
_ANY = re.compile(f"{CRASH_PATTERNS.pattern}|{REPORT_PATTERNS.pattern}")
# Where a report's text ends; a report is cut at this many lines anyway.
_REPORT_END = re.compile(r"---\[ end (trace|Kernel panic)|^=+$")
REPORT_MAX_LINES = 80
_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")



def _own_context(before: list[str]) -> list[str]:
    """Up to three lines before a report's line, not reaching back into an earlier report."""
    out: list[str] = []
    for line in reversed(before[-3:]):
        if _ANY.search(line):
            break
        out.insert(0, line)
    return out


def tail_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])

class ConsoleWatcher:
    """Tails one console log; ``crashed`` is set when a crash pattern appears."""

    def __init__(self, path: Path, poll: float = 0.1,
                 known: Sequence[tuple[str, str]] = ()) -> None:
        self.path = path
        self.poll = poll
        # (regex, reason): reports that do not fail the run, and the ones seen.
        self.known = [(re.compile(rx), why) for rx, why in known]
        self.known_seen: list[dict[str, str]] = []
        self.text = ""
        # A crash (panic, oops, BUG, hang) ends the guest's usefulness: steps
        # stop at once.  A report leaves it running: the step finishes, then
        # fails (steps.py), so its output is kept.
        self.crash_line: str | None = None
        self.crashed = asyncio.Event()
        self.report_lines: list[str] = []
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
            self._scan()
        return True

    def _scan(self) -> None:
        start = max(0, self.text.rfind("\n", 0, self._scan_from) + 1)
        seen_line = -1
        for m in _ANY.finditer(self.text, start):
            line_start = self.text.rfind("\n", 0, m.start()) + 1
            if line_start == seen_line:
                continue
            end = self.text.find("\n", m.start())
            line = self.text[line_start : end if end >= 0 else None].strip()
            if not REPORT_PATTERNS.search(line):
                self.crash_line = line
                self.crashed.set()
                return
            if end < 0:
                # A report's line is judged whole (known or not): wait for its end.
                self._scan_from = line_start
                return
            seen_line = line_start
            why = self._known_reason(line_start, line)
            if why is not None:
                self.known_seen.append({"line": line, "reason": why})
            else:
                self.report_lines.append(line)
        self._scan_from = len(self.text)

    def _known_reason(self, line_start: int, line: str) -> str | None:
        # Only the three lines before the report matter: split no more than those.
        start = line_start
        for _ in range(3):
            start = self.text.rfind("\n", 0, max(0, start - 1)) + 1
        return self._why_known(self.text[start:line_start].splitlines(), line)

    def _why_known(self, before: list[str], line: str) -> str | None:
        """The reason a report is known, or None; panics and oopses are never known."""
        if not self.known or not REPORT_PATTERNS.search(line):
            return None
        context = "\n".join([*_own_context(before), line])
        return next((why for rx, why in self.known if rx.search(context)), None)

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            self.read_new()
            await asyncio.sleep(self.poll)

    def reports(self) -> list[tuple[str, str | None]]:
        """Every crash or report in the console, each from its first line to its end,
        with the reason it is known (None: it is not)."""
        self.read_new()
        lines = self.text.splitlines()
        out: list[tuple[str, str | None]] = []
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
            why = self._why_known(lines[max(0, i - 3) : i], lines[i])
            out.append(("\n".join(lines[start:end]), why))
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

"""Progress reporting: a live view on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from .results import ScenarioResult, StepResult

_MARK = {"passed": "ok", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}


class Progress:
    """Receives phase and step updates from the runner and shows them."""

    def __init__(self, out: TextIO | None = None, live: bool | None = None,
                 enabled: bool = True) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty() if live is None else live
        self.enabled = enabled  # off with --log-format json: the log events say it all
        self._status: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._drawn = 0

    def _redraw(self) -> None:
        if not self.enabled:
            return
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}A")
        for name, text in self._status.items():
            took = time.monotonic() - self._started.get(name, time.monotonic())
            self.out.write(f"\x1b[2K  {name}: {text} [{took:4.0f}s]\n")
        self._drawn = len(self._status)
        self.out.flush()

    def _line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.live and self._drawn:
            self.out.write(f"\x1b[{self._drawn}A\x1b[J")
            self._drawn = 0
        self.out.write(text + "\n")
        if self.live:
            self._redraw()
        self.out.flush()

    async def ticker(self, period: float = 1.0) -> None:
        """Redraw the live view every ``period`` seconds so elapsed times move; cancel to stop."""
        while True:
            await asyncio.sleep(period)
            if self.live and self._status:
                self._redraw()

    def phase(self, scenario: str, text: str) -> None:
        """A scenario entered a new phase (booting, step N, tearing down)."""
        self._started.setdefault(scenario, time.monotonic())
        self._status[scenario] = text
        if self.live:
            self._redraw()
        else:
            self._line(f"[{scenario}] {text}")

    def step(self, scenario: str, res: StepResult) -> None:
        """A step finished."""
        first = res.message.split("\n")[0]
        msg = f" - {first}" if res.status != "passed" and first else ""
        self._line(f"[{scenario}] {_MARK[res.status]:5} {res.index:2d} {res.name}"
                   f" ({res.duration:.1f}s){msg}")

    def done(self, res: ScenarioResult) -> None:
        """A scenario finished."""
        self._status.pop(res.name, None)
        boots = ", ".join(f"{vm} {m.boot_seconds:.2f}s" for vm, m in res.machines.items()
                          if m.boot_seconds is not None)
        extra = f"; boot to agent ready: {boots}" if boots else ""
        self._line(f"[{res.name}] {res.status.upper()} in {res.duration:.1f}s{extra}"
                   + (f": {res.message.splitlines()[0]}" if res.message else ""))
        if res.run_dir:
            self._line(f"[{res.name}] results: {res.run_dir}/results.json")

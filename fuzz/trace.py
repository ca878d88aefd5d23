"""A fuzz trace: the exact lines one run sent, replayable without the generator.

A line is a qtest command (``writel 0xfe000004 0x1``), ``qmp {json}`` (a QMP
command), or ``frame HEX`` (a datagram from the link peer).  The header names
the target (device and QEMU arguments), so a saved reproducer needs nothing
but this file and a QEMU built with our devices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Trace:
    """Target name, seed, the setup lines and the fuzz lines after them."""

    target: str
    seed: int
    setup: list[str] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    note: str = ""

    def save(self, path: Path) -> None:
        head = {"target": self.target, "seed": self.seed, "setup": len(self.setup),
                "note": self.note}
        path.write_text("# p2plab fuzz trace " + json.dumps(head) + "\n"
                        + "".join(f"{line}\n" for line in self.setup + self.ops))

    @classmethod
    def load(cls, path: Path) -> Trace:
        first, *lines = path.read_text().splitlines()
        if not first.startswith("# p2plab fuzz trace "):
            raise ValueError(f"{path}: not a p2plab fuzz trace")
        head = json.loads(first.removeprefix("# p2plab fuzz trace "))
        n = int(head["setup"])
        return cls(str(head["target"]), int(head["seed"]), lines[:n], lines[n:],
                   str(head.get("note", "")))

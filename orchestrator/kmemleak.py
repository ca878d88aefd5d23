"""kmemleak on the debug kernel: leaks made during a scenario fail it.

The debug flavour has kmemleak with its background scan off.  Right after boot
the orchestrator scans once and marks what it found as already reported
(``clear``), so leaks the kernel made while booting are not charged to the
scenario.  After the last step it scans again: anything now listed was
allocated, and lost, while the scenario ran.  kmemleak only reports an object
that has been unreferenced for a few seconds, so a leak in the very last
moments can escape; a scenario that unloads its driver early catches them.
"""

from __future__ import annotations

import re

import structlog

from .errors import AgentError
from .vm import VM

log = structlog.get_logger(__name__)

CONTROL = "/sys/kernel/debug/kmemleak"
SCAN_TIMEOUT = 300.0
_OBJECT = re.compile(r"^unreferenced object ", re.MULTILINE)


async def _shell(vm: VM, script: str) -> str:
    res = await vm.guarded(vm.agent.exec(["/bin/sh", "-c", script], SCAN_TIMEOUT))
    if res.status != 0:
        raise AgentError(vm.name, f"kmemleak: {script!r} failed ({res.status}): "
                                  f"{res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


async def baseline(vm: VM) -> None:
    """Scan and forget what the boot leaked."""
    await _shell(vm, f"echo scan > {CONTROL} && echo clear > {CONTROL}")


def parse_leaks(text: str) -> list[str]:
    """Split what ``cat kmemleak`` prints into one text per unreferenced object."""
    starts = [m.start() for m in _OBJECT.finditer(text)]
    ends = [*starts[1:], len(text)] if starts else []
    return [text[a:b].strip() for a, b in zip(starts, ends, strict=True)]


async def leaks(vm: VM) -> list[str]:
    """Scan now; each leak kmemleak lists, with its backtrace."""
    found = parse_leaks(await _shell(vm, f"echo scan > {CONTROL} && cat {CONTROL}"))
    log.info("kmemleak scan", vm=vm.name, leaks=len(found))
    return found

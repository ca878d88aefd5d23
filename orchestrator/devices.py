"""What the orchestrator knows about p2plab devices: QOM paths and their counters."""

from __future__ import annotations

from typing import Any

from .errors import QMPCommandError
from .vm import VM

# Read-only uint64 counters per driver (docs/devices/*.md), read with qom-get.
KNOWN_COUNTERS: dict[str, tuple[str, ...]] = {
    "p2p-gpu": (
        "copies", "copy-bytes", "copy-errors", "aperture-maps", "aperture-unmaps",
        "aperture-map-failures", "aperture-unmapped-accesses", "resizes",
        "bad-register-accesses", "interrupts",
    ),
    "odp-nic": (
        "wrs", "wr-errors", "bytes", "commands", "faults-raised", "faults-resolved",
        "faults-failed", "invalidations", "dma-errors", "link-tx", "link-rx",
        "link-dropped", "link-retries", "eq-overflows", "cq-overflows",
    ),
}  # fmt: skip


def qom_path(device_id: str) -> str:
    """The QOM path of a ``-device`` with an id."""
    return f"/machine/peripheral/{device_id}"


async def qom_get(vm: VM, device_id: str, prop: str) -> Any:
    """One QOM property of a device."""
    return await vm.execute("qom-get", {"path": qom_path(device_id), "property": prop})


async def read_counters(vm: VM) -> dict[str, dict[str, Any]]:
    """Counters of every device that has some (known per driver, or listed in the scenario)."""
    out: dict[str, dict[str, Any]] = {}
    for dev in vm.machine.devices:
        names = list(dict.fromkeys([*KNOWN_COUNTERS.get(dev.driver, ()), *dev.counters]))
        if not names:
            continue
        values: dict[str, Any] = {}
        for name in names:
            try:
                values[name] = await qom_get(vm, dev.id, name)
            except QMPCommandError as exc:
                values[name] = f"error: {exc}"
        out[dev.id] = values
    return out

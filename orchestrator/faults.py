"""Fault injection: QOM writes, hot-unplug and hot-plug, stop/cont, killing QEMU."""

from __future__ import annotations

import re
import signal
from typing import Any

from .cmdline import device_arg
from .devices import qom_path
from .schema import (
    ContFault,
    DeviceAddFault,
    DeviceDelFault,
    Fault,
    KillFault,
    PropValue,
    QomSetFault,
    StopFault,
)
from .vm import VM

_SIZE = re.compile(r"^([0-9]+)([KMGT]?)$")
_SHIFT = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def qmp_prop_value(v: PropValue) -> PropValue:
    """A -device style value typed for QMP's device_add, which does not parse strings:
    sizes ("64M") and hex become integers, "on"/"off" booleans; anything else is kept."""
    if isinstance(v, str):
        m = _SIZE.match(v)
        if m:
            return int(m.group(1)) << _SHIFT[m.group(2)]
        if re.fullmatch(r"0x[0-9a-fA-F]+", v):
            return int(v, 16)
        if v in ("on", "off"):
            return v == "on"
    return v


async def inject(vm: VM, fault: Fault) -> dict[str, Any]:
    """Apply one fault to ``vm``; returns details for the step result."""
    if isinstance(fault, QomSetFault):
        path = fault.path or qom_path(fault.device or "")
        await vm.execute("qom-set", {"path": path, "property": fault.property,
                                     "value": fault.value})
        return {"path": path, "property": fault.property, "value": fault.value}
    if isinstance(fault, DeviceDelFault):
        mark = vm.event_mark()
        await vm.execute("device_del", {"id": fault.id})
        if fault.wait:
            _, ev = await vm.wait_event("DEVICE_DELETED", {"device": fault.id}, mark)
            return {"id": fault.id, "event": ev}
        return {"id": fault.id}
    if isinstance(fault, DeviceAddFault):
        dev = fault.device
        args: dict[str, Any] = {"driver": dev.driver, "id": dev.id}
        if dev.bus is not None:
            args["bus"] = dev.bus
        args.update({k: qmp_prop_value(v) for k, v in dev.props.items()})
        await vm.execute("device_add", args)
        return {"device": device_arg(dev.driver, {"id": dev.id, **dev.props})}
    if isinstance(fault, StopFault):
        await vm.execute("stop")
        return {}
    if isinstance(fault, ContFault):
        await vm.execute("cont")
        return {}
    if isinstance(fault, KillFault):
        sig = getattr(signal, f"SIG{fault.signal}")
        vm.kill(sig)
        return {"signal": fault.signal}
    raise AssertionError(f"unknown fault {fault!r}")

"""Trace lines the generators share: QMP commands, bulk memory writes, ECAM."""

from __future__ import annotations

import base64
import json

from tests.support.qtest import ECAM_LINES


def qmp(cmd: str, **args: object) -> str:
    return "qmp " + json.dumps({"execute": cmd, "arguments": args})


def memwrite(addr: int, data: bytes) -> str:
    return f"b64write {addr:#x} {len(data):#x} {base64.b64encode(data).decode()}"


def reset_machine() -> list[str]:
    """A system reset, then the ECAM window firmware would have re-enabled."""
    return [qmp("system_reset"), *ECAM_LINES]

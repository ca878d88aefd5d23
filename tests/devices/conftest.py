"""Shared fixtures for device-model tests under qtest (no guest kernel)."""

from __future__ import annotations

import pytest

from tests.support.qtest import QEMU


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/devices" in str(item.path):
            item.add_marker(pytest.mark.devices)
            if not QEMU.exists():
                item.add_marker(pytest.mark.skip(reason=f"{QEMU} missing: run make qemu"))

"""Shared fixtures for device-model tests under qtest (no guest kernel)."""

from __future__ import annotations

import pytest

from tests.support.artifacts import require
from tests.support.qtest import QEMU


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/devices" in str(item.path):
            item.add_marker(pytest.mark.devices)


@pytest.fixture(autouse=True)
def _qemu_built() -> None:
    """Every device test needs our QEMU: without it, fail naming make qemu."""
    require(QEMU, "qemu")

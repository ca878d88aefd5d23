"""Golden files: compare, or (UPDATE_GOLDEN=1) rewrite and fail.

A rewrite never passes: the test that rewrote a file has compared nothing, so
it fails and asks for a second run, after the diff has been read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def check_golden(path: Path, got: str) -> None:
    """Assert ``got`` equals the golden file ``path``; rewrite it under UPDATE_GOLDEN."""
    if os.environ.get("UPDATE_GOLDEN"):
        old = path.read_text() if path.exists() else None
        if old != got:
            path.write_text(got)
            pytest.fail(f"rewrote {path}: review `git diff`, then run again without "
                        "UPDATE_GOLDEN", pytrace=False)
    assert path.exists(), f"{path} is missing (UPDATE_GOLDEN=1 writes it)"
    assert got == path.read_text(), f"differs from {path} (UPDATE_GOLDEN=1 rewrites)"

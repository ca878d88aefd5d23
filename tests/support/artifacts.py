"""Built artifacts the tests need, and the make target that builds each.

A missing artifact is an error that names its make target, never a skip:
``make test`` builds everything first, so a test that cannot find what it needs
has found a bug in the build.  (``make unit-test`` runs only what needs nothing.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def require(path: Path, target: str) -> Path:
    """``path``, or fail the test naming ``make target``."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make {target}` (make test builds it)",
                    pytrace=False)
    return path


def require_tool(name: str, package: str) -> str:
    """A host tool's path, or fail naming the Debian package ``make deps`` installs."""
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"no {name} on this host: run `make deps` (Debian package {package})",
                    pytrace=False)
    return exe

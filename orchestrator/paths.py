"""Where things live: the repository root, the built artifacts, the cache and runs."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The p2plab checkout: ``$P2PLAB_ROOT``, else the directory above this package."""
    env = os.environ.get("P2PLAB_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def default_qemu() -> Path:
    """The QEMU binary: ``$P2PLAB_QEMU``, else ``build/bin/qemu-system-x86_64``."""
    env = os.environ.get("P2PLAB_QEMU")
    if env:
        return Path(env)
    return repo_root() / "build" / "bin" / "qemu-system-x86_64"


def cache_dir() -> Path:
    """``${P2PLAB_CACHE:-${XDG_CACHE_HOME:-~/.cache}/p2plab}``."""
    env = os.environ.get("P2PLAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "p2plab"


def default_runs_dir() -> Path:
    """Where run directories go unless ``--artifacts`` says otherwise."""
    return repo_root() / "build" / "runs"


def scenarios_dir() -> Path:
    """The repository's scenario files."""
    return repo_root() / "scenarios"


def resolve_relative(path: str, base: Path) -> Path:
    """An absolute path for a path written in a scenario (relative to the repo root)."""
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else base / p

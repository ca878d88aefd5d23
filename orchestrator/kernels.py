"""The guest kernels: which build a machine boots, and what it says about itself.

``make kernel`` leaves one directory per kernel under ``build/guest/``::

    build/guest/7.2/        the default kernel (build/guest/default -> 7.2)
    build/guest/6.12/       the LTS kernel
    build/guest/7.2-debug/  the debug flavour (make kernel-debug)
      bzImage vmlinux initramfs.cpio kernel.json kernel-build/ ...

A machine's ``kernel:`` is either such a name or a path: a directory laid out
like those, or a kernel image (with ``initramfs.cpio`` beside it, else the
default kernel's).  ``kernel.json`` (written by ``scripts/build-kernel.sh``)
says which source really went in, including a fallback notice when Debian no
longer served the pinned series.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import paths
from .errors import SetupError

log = structlog.get_logger(__name__)

DEFAULT = "default"
# A kernel name as the Makefile makes them (7.2, 6.12, 7.2-debug, custom):
# anything else is taken as a path.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
KERNEL_FILES = ("vmlinux", "bzImage")
DEBUG_TIMEOUT_SCALE = 4.0
INITRD = "initramfs.cpio"


@dataclass(frozen=True)
class GuestKernel:
    """A kernel to boot: its image, its initramfs and the build's own account of it."""

    requested: str
    name: str
    image: Path
    initrd: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def debug(self) -> bool:
        """True for the debug flavour (lockdep, KASAN, kmemleak ...)."""
        return self.info.get("flavour") == "debug"

    @property
    def timeout_scale(self) -> float:
        """How much longer everything takes on this kernel: the debug flavour
        runs many times slower under TCG, so a scenario's timeouts stretch."""
        return DEBUG_TIMEOUT_SCALE if self.debug else 1.0

    def describe(self, booted_release: str | None) -> dict[str, Any]:
        """What results.json records: the request, what the build says, what booted."""
        out: dict[str, Any] = {"requested": self.requested, "name": self.name,
                               "image": str(self.image), "booted": booted_release}
        for key in ("flavour", "series", "series_requested", "package", "package_version",
                    "release", "notice"):
            if self.info.get(key):
                out[key] = self.info[key]
        return out


def is_name(spec: str) -> bool:
    """True when ``spec`` names a built kernel rather than giving a path."""
    return NAME_RE.fullmatch(spec) is not None and spec not in KERNEL_FILES


def guest_dir() -> Path:
    """Where ``make kernel`` and ``make guest`` put each kernel's artifacts."""
    return paths.repo_root() / "build" / "guest"


def built_names() -> list[str]:
    """Names of the kernels built under build/guest/, for error messages."""
    d = guest_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if p.is_dir() and not p.is_symlink() and (p / "kernel.json").exists())


def _read_info(d: Path) -> dict[str, Any]:
    try:
        info = json.loads((d / "kernel.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _image_in(d: Path) -> Path | None:
    # vmlinux first: QEMU enters it through its PVH note, skipping the real-mode
    # setup and the decompressor, which are slow under TCG.
    for f in KERNEL_FILES:
        if (d / f).exists():
            return d / f
    return None


def _from_dir(requested: str, d: Path) -> GuestKernel:
    image = _image_in(d)
    if image is None:
        raise SetupError(f"kernel {requested!r}: no vmlinux or bzImage in {d} (run: make kernel)")
    initrd = d / INITRD
    if not initrd.exists():
        raise SetupError(f"kernel {requested!r}: no {INITRD} in {d} (run: make guest)")
    info = _read_info(d)
    return GuestKernel(requested, info.get("name") or d.name, image, initrd, info)


def resolve(spec: str | None, base: Path | None = None) -> GuestKernel:
    """The kernel for a machine's ``kernel:`` (or ``--kernel``); default: the default kernel."""
    requested = spec or DEFAULT
    root = base or paths.repo_root()
    if is_name(requested):
        d = guest_dir() / requested
        if not d.is_dir():
            built = ", ".join(built_names()) or "none"
            hint = ("make kernel-debug guest-debug" if requested.endswith("-debug")
                    else "make kernel guest")
            raise SetupError(f"kernel {requested!r} is not built (built: {built}; run: {hint})")
        return _from_dir(requested, d.resolve())
    p = paths.resolve_relative(requested, root)
    if p.is_dir():
        return _from_dir(requested, p)
    if not p.is_file():
        raise SetupError(f"kernel {requested!r}: no such file or directory: {p}")
    initrd = p.parent / INITRD
    if not initrd.exists():
        # A bare image from elsewhere still boots our userspace; only modules
        # built for another kernel will not load.
        initrd = resolve(None).initrd
        log.warning("kernel image has no initramfs beside it: using the default kernel's",
                    kernel=str(p), initrd=str(initrd))
    return GuestKernel(requested, p.name, p, initrd, _read_info(p.parent))

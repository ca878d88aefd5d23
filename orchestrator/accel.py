"""Choosing the accelerator: KVM only when a probe proves it boots our kernel.

On some hosts /dev/kvm opens but cannot run a standard guest (a nested PVM
hypervisor kills it in the decompressor and QEMU hangs). So ``auto`` boots the
real guest kernel under ``-accel kvm`` with no initramfs and expects it to reach
its init stage and panic (``panic=-1`` makes QEMU exit) within a few seconds.
The answer is cached per host boot (boot_id) and QEMU binary.

The decision logic (:func:`interpret_probe`, :func:`resolve_accel`) is pure and
takes its inputs as arguments so tests can use fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from .cmdline import Accel

log = structlog.get_logger(__name__)

PROBE_TIMEOUT = 8.0
# Messages the kernel prints once it has decompressed, initialised and gone
# looking for init: any of them proves KVM runs a real guest.
_REACHED_INIT = (
    "Run /nonexistent as init",
    "Kernel panic - not syncing",
    "No working init found",
    "Freeing unused kernel image",
)


@dataclass(frozen=True)
class ProbeOutcome:
    """What happened when we booted the kernel under KVM."""

    exited: bool  # QEMU exited by itself before the timeout
    console: str  # what the guest printed
    reason: str = ""


def interpret_probe(outcome: ProbeOutcome) -> bool:
    """True when the outcome proves KVM boots a guest kernel."""
    return outcome.exited and any(m in outcome.console for m in _REACHED_INIT)


def kvm_usable(dev: str = "/dev/kvm") -> bool:
    """Whether /dev/kvm exists and opens read-write (cheap; not proof that guests run)."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def boot_id() -> str:
    """This host boot's id (changes at each reboot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_argv(qemu: Path, kernel: Path) -> list[str]:
    """The probe's QEMU command line: our kernel, no initramfs, console on stdout."""
    return [
        str(qemu), "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256M",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1 rdinit=/nonexistent",
    ]  # fmt: skip


async def run_probe(qemu: Path, kernel: Path, timeout: float = PROBE_TIMEOUT) -> ProbeOutcome:
    """Boot the kernel under KVM; kill QEMU (its whole process group) after ``timeout``."""
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            *probe_argv(qemu, kernel),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        exited = True
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            exited = False
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        out.seek(0)
        console = out.read().decode("utf-8", "replace")
    if not exited:
        reason = f"still running after {timeout:.0f}s, killed"
    else:
        last = [ln for ln in console.splitlines() if ln.strip()][-1:] or [""]
        reason = f"QEMU exited with status {proc.returncode}: {last[0].strip()[:200]}"
    return ProbeOutcome(exited, console[-4000:], reason)


Prober = Callable[[Path, Path], Awaitable[ProbeOutcome]]


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator to use, and why."""

    accel: Accel
    reason: str


async def resolve_accel(
    wanted: Literal["auto", "kvm", "tcg"],
    qemu: Path,
    kernel: Path,
    cache_file: Path,
    *,
    usable: Callable[[], bool] = kvm_usable,
    prober: Prober = run_probe,
    host_boot: Callable[[], str] = boot_id,
) -> AccelChoice:
    """``tcg``/``kvm`` as asked; for ``auto``: cached probe answer, else probe now."""
    if wanted != "auto":
        return AccelChoice(wanted, "asked for in the scenario")
    if not usable():
        return AccelChoice("tcg", "/dev/kvm missing or not openable")
    key = f"{host_boot()}:{qemu.resolve() if qemu.exists() else qemu}"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key and cached.get("accel") in ("kvm", "tcg"):
            return AccelChoice(cached["accel"], f"cached probe: {cached.get('reason', '')}")
    except (OSError, ValueError, AttributeError):
        pass
    t0 = time.monotonic()
    outcome = await prober(qemu, kernel)
    ok = interpret_probe(outcome)
    accel: Accel = "kvm" if ok else "tcg"
    reason = (
        "KVM booted the kernel to its init stage"
        if ok
        else f"KVM did not boot the kernel to its init stage ({outcome.reason or 'no reason'})"
    )
    log.info("kvm probe", accel=accel, reason=reason, seconds=round(time.monotonic() - t0, 2))
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # Runs started together read this file while one writes it: replace, never rewrite.
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "accel": accel, "reason": reason}) + "\n")
        tmp.replace(cache_file)
    except OSError as exc:
        log.warning("cannot cache the kvm probe", error=str(exc))
    return AccelChoice(accel, reason)

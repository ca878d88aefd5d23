"""Running one scenario: resolve paths and accel, boot the VMs concurrently, run
the steps (background commands in a job group that kills what still runs when
the steps end), read device counters, and tear everything down whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from . import kernels, kmemleak, paths
from .accel import AccelChoice, resolve_accel
from .background import job_group
from .cmdline import Boot, VMPaths, firmware_for, link_ends
from .devices import read_counters
from .errors import GuestCrashed, P2PLabError, SetupError, VMError, VMsFailed
from .lan import lan_plan
from .logsetup import RUN_LOG
from .results import MachineResult, ScenarioResult, StepResult, write_json
from .scenario import LoadedScenario
from .schema import JoinStep, Machine, step_machine
from .steps import StepContext, report_unjoined, run_step, step_kind, step_title
from .vm import VM

log = structlog.get_logger(__name__)

_SUN_PATH_MAX = 100  # AF_UNIX paths are limited to 107 bytes


@dataclass
class RunOptions:
    """How to run: where artifacts go, and callbacks for the progress view."""

    artifacts: Path = field(default_factory=paths.default_runs_dir)
    qemu: Path = field(default_factory=paths.default_qemu)
    kernel: str | None = None  # overrides every machine's ``kernel:`` (``run --kernel``)
    on_step: Callable[[str, StepResult], None] | None = None
    on_phase: Callable[[str, str], None] | None = None


def new_run_dir(base: Path, name: str) -> Path:
    """``base/<YYYYmmdd-HHMMSS>-<name>``, unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        d = base / (f"{stamp}-{name}" + (f"-{n}" if n else ""))
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            continue
    raise SetupError(f"cannot create a run directory under {base}")


def boot_for(machine: Machine, qemu: Path,
             kernel_override: str | None = None) -> tuple[Boot, kernels.GuestKernel]:
    """The kernel, initramfs and QEMU for a machine, checked to exist."""
    root = paths.repo_root()
    kernel = kernels.resolve(kernel_override or machine.kernel, root)
    initrd = kernel.initrd
    if machine.initrd:
        initrd = paths.resolve_relative(machine.initrd, root)
    for what, p, hint in (("QEMU", qemu, "make qemu"), ("initramfs", initrd, "make guest")):
        if not p.exists():
            raise SetupError(f"{what} not found at {p} (run: {hint})")
    return Boot(qemu, kernel.image, initrd, firmware_for(kernel.image)), kernel


def vm_paths(run_dir: Path, name: str, stack: contextlib.ExitStack) -> VMPaths:
    """The VM's directory; sockets go to a short temporary directory if needed."""
    d = run_dir / name
    if len(str(d / "console.sock")) <= _SUN_PATH_MAX:
        return VMPaths(d, d)
    short = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="p2plab-")))
    return VMPaths(d, short)


def _phase(opts: RunOptions, scenario: str, text: str) -> None:
    if opts.on_phase is not None:
        opts.on_phase(scenario, text)


async def run_scenario(loaded: LoadedScenario, opts: RunOptions) -> ScenarioResult:
    """Run one scenario to completion; never leaves a QEMU running."""
    sc = loaded.scenario
    result = ScenarioResult(loaded.name, str(loaded.path), axes=dict(loaded.axes))
    t0 = time.monotonic()
    run_dir = new_run_dir(opts.artifacts, re.sub(r"[^\w.-]", "_", loaded.name))
    result.run_dir = str(run_dir)
    run_log = (run_dir / "orchestrator.log").open("a", encoding="utf-8")
    log_token = RUN_LOG.set(run_log)
    names = [m.name for m in sc.machines]
    result.steps = [StepResult(i, step_title(s), step_kind(s), step_machine(s, names))
                    for i, s in enumerate(sc.steps)]
    vms: dict[str, VM] = {}
    scale = timeout_scale(loaded, opts)
    structlog.contextvars.bind_contextvars(scenario=loaded.name)
    try:
        with contextlib.ExitStack() as stack:
            try:
                async with asyncio.timeout(sc.timeout * scale):
                    await _setup_and_run(loaded, opts, run_dir, vms, result, stack)
            except TimeoutError:
                result.status = "failed"
                result.message = f"scenario timed out after {sc.timeout * scale:.0f}s"
                _mark_unfinished(result, "the scenario timed out")
            except P2PLabError as exc:
                result.status = "error"
                result.message = str(exc)
                if isinstance(exc, VMError) and exc.console_tail:
                    result.machines.setdefault(exc.vm, MachineResult()).console_tail = (
                        exc.console_tail
                    )
                _mark_unfinished(result, "an error ended the scenario")
            except asyncio.CancelledError:
                # Ctrl-C or SIGTERM: the results file must still say where it stopped.
                result.status = "error"
                result.message = "interrupted"
                _mark_unfinished(result, "an interrupt")
                raise
            finally:
                await teardown(vms, result, opts, loaded.name)
                _fail_on_late_reports(result)
    finally:
        structlog.contextvars.unbind_contextvars("scenario")
        result.duration = time.monotonic() - t0
        write_json(result, run_dir / "results.json")
        RUN_LOG.reset(log_token)
        run_log.close()
    return result


def timeout_scale(loaded: LoadedScenario, opts: RunOptions) -> float:
    """The largest of the machines' kernels' timeout scales (1 unless a debug kernel)."""
    scale = 1.0
    for m in loaded.scenario.machines:
        # A kernel that cannot be resolved is reported where the VMs are created.
        with contextlib.suppress(SetupError):
            scale = max(scale, kernels.resolve(opts.kernel or m.kernel).timeout_scale)
    return scale


async def create_vms(loaded: LoadedScenario, opts: RunOptions, run_dir: Path,
                     vms: dict[str, VM], result: ScenarioResult,
                     stack: contextlib.ExitStack) -> None:
    """Resolve paths and accel and create (not start) a VM per machine into ``vms``."""
    sc = loaded.scenario
    accel_cache = paths.cache_dir() / "kvm-probe.json"
    choices: dict[str, AccelChoice] = {}
    link_dir = vm_paths(run_dir, "_links", stack).sock_dir
    ends = link_ends([(link.a, link.b) for link in sc.links], link_dir)
    lan = lan_plan(sc, link_dir)
    if sc.links or lan:
        link_dir.mkdir(parents=True, exist_ok=True)
    for m in sc.machines:
        boot, kernel = boot_for(m, opts.qemu, opts.kernel)
        choice = choices.get(m.accel)
        if choice is None:
            _phase(opts, loaded.name, "choosing accel")
            choice = await resolve_accel(m.accel, boot.qemu, boot.kernel, accel_cache)
            choices[m.accel] = choice
        log.info("accel", vm=m.name, accel=choice.accel, reason=choice.reason)
        vms[m.name] = VM(m, boot, vm_paths(run_dir, m.name, stack), choice.accel,
                         ends.get(m.name, []), kernel,
                         [(k.match, k.reason) for k in sc.known_kernel_reports],
                         lan.get(m.name))
        result.machines[m.name] = MachineResult(accel=choice.accel, accel_reason=choice.reason,
                                                kernel=kernel.describe(None))


async def start_vms(vms: dict[str, VM], result: ScenarioResult) -> None:
    """Start every VM concurrently and wait for their agents; a failure cancels the others."""
    try:
        async with asyncio.TaskGroup() as tg:
            for vm in vms.values():
                tg.create_task(_start(vm, result))
    except* P2PLabError as group:
        failed = _leaves(group)
        for exc in failed:
            if isinstance(exc, VMError) and exc.console_tail:
                result.machines.setdefault(exc.vm, MachineResult()).console_tail = \
                    exc.console_tail
        if len(failed) == 1:
            raise failed[0] from None
        raise VMsFailed(failed) from None


def _leaves(group: BaseExceptionGroup[P2PLabError]) -> list[P2PLabError]:
    out: list[P2PLabError] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


async def _setup_and_run(loaded: LoadedScenario, opts: RunOptions, run_dir: Path,
                         vms: dict[str, VM], result: ScenarioResult,
                         stack: contextlib.ExitStack) -> None:
    sc = loaded.scenario
    await create_vms(loaded, opts, run_dir, vms, result, stack)
    _phase(opts, loaded.name, "booting " + ", ".join(vms))
    await start_vms(vms, result)
    ctx = StepContext(vms, run_dir, timeout_scale=max(
        (vm.kernel.timeout_scale for vm in vms.values() if vm.kernel is not None), default=1.0))
    joins = {s.join: s for s in sc.steps if isinstance(s, JoinStep)}
    try:
        # Leaving the group (whatever happened) kills the background commands still running.
        async with job_group(joins) as ctx.jobs:
            for i, step in enumerate(sc.steps):
                _phase(opts, loaded.name, f"step {i + 1}/{len(sc.steps)}: {result.steps[i].name}")
                result.steps[i].message = _RUNNING
                res = await run_step(i, step, ctx)
                result.steps[i] = res
                if opts.on_step is not None:
                    opts.on_step(loaded.name, res)
                if res.status != "passed":
                    result.status = res.status
                    result.message = f"step {i} ({res.name}): {res.message}"
                    for later in result.steps[i + 1 :]:
                        later.message = "not run: an earlier step failed"
                    return
    finally:
        report_unjoined(ctx)
    result.metrics = dict(ctx.metrics)
    if await _leaks_found(vms, result):
        return
    result.status = "passed"


async def _leaks_found(vms: dict[str, VM], result: ScenarioResult) -> bool:
    """On debug kernels, a kmemleak scan after the last step; a leak fails the scenario."""
    leaky: list[str] = []
    for name, vm in vms.items():
        if vm.kernel is None or not vm.kernel.debug:
            continue
        found = await kmemleak.leaks(vm)
        result.machines[name].kmemleak_leaks = len(found)
        if found:
            result.machines[name].kernel_reports += found
            leaky.append(f"{name}: {len(found)}")
    if leaky:
        result.status = "failed"
        result.message = "kmemleak found leaks made during the scenario (" + ", ".join(leaky) + \
            "); see kernel_reports"
    return bool(leaky)


_RUNNING = "running"


def _fail_on_late_reports(result: ScenarioResult) -> None:
    """A report no step saw (after the last step, at shutdown) still fails the scenario."""
    if result.status != "passed":
        return
    late = [f"{name}: {m.kernel_reports[0].splitlines()[0]}"
            for name, m in result.machines.items() if m.kernel_reports]
    if late:
        result.status = "failed"
        result.message = "kernel report after the last step: " + "; ".join(late)


def _mark_unfinished(result: ScenarioResult, why: str) -> None:
    """After the scenario was cut short: the running step failed, the rest did not run."""
    for step in result.steps:
        if step.status == "skipped" and step.message == _RUNNING:
            step.status = "failed"
            step.message = f"{why} during this step"
        elif step.status == "skipped" and not step.message:
            step.message = f"not run: {why}"


async def _start(vm: VM, result: ScenarioResult) -> None:
    await vm.start()
    m = result.machines[vm.name]
    m.started_at = round(vm.started_wall, 3)
    m.boot_seconds = round(await vm.wait_ready(), 3)
    m.ready_at = round(time.time(), 3)
    if vm.console.report_lines:
        raise GuestCrashed(vm.name, f"kernel report during boot: {vm.console.report_lines[0]}",
                           vm.console.tail())
    # What really booted, as the guest's own uname -r tells it (the agent's ready event).
    m.kernel["booted"] = vm.agent.ready_info.get("kernel") if vm.agent.ready_info else None
    m.guest_uptime_at_ready = vm.agent.ready_info.get("uptime") if vm.agent.ready_info else None
    if vm.lan is not None:
        # Before the kmemleak baseline: what setting up the LAN allocates is boot, not a leak.
        m.lan_seconds = round(await vm.configure_lan(), 3)
    if vm.kernel is not None and vm.kernel.debug:
        await kmemleak.baseline(vm)


async def _save_dmesg(vm: VM) -> None:
    """The whole kernel log, into ``<vm>/dmesg.log``: the console shows only
    warnings and worse (``loglevel=5``, cmdline.py), the log keeps the rest."""
    if not (vm.running and vm.agent.ready_info and not vm.console.crashed.is_set()):
        return
    with contextlib.suppress(P2PLabError, TimeoutError, OSError):
        out = await asyncio.wait_for(vm.agent.exec(["dmesg"], 10.0), 15.0)
        vm.paths.dmesg_log.write_text(out.stdout)


async def teardown(vms: dict[str, VM], result: ScenarioResult, opts: RunOptions,
                    scenario: str) -> None:
    """Read counters, then stop every VM concurrently. Survives cancellation."""
    if vms:
        _phase(opts, scenario, "tearing down")
    for name, vm in vms.items():
        if vm.running and vm.qmp_connected:
            with contextlib.suppress(P2PLabError, TimeoutError):
                counters = await asyncio.wait_for(read_counters(vm), 10.0)
                if counters:
                    result.counters[name] = counters
        await _save_dmesg(vm)
    outcomes = await asyncio.gather(*(vm.shutdown() for vm in vms.values()),
                                    return_exceptions=True)
    for (name, vm), how in zip(vms.items(), outcomes, strict=True):
        m = result.machines.setdefault(name, MachineResult())
        m.shutdown = how if isinstance(how, str) else f"error: {how!r}"
        m.artifacts = {
            "dir": str(vm.paths.dir), "console": str(vm.paths.console_log),
            "qemu_log": str(vm.paths.qemu_log), "qmp_log": str(vm.paths.qmp_log),
            "agent_log": str(vm.paths.agent_log), "cmdline": str(vm.paths.dir / "cmdline.json"),
            "dmesg": str(vm.paths.dmesg_log),
        }
        reports = vm.console.reports()
        m.kernel_reports = [text for text, why in reports if why is None] + m.kernel_reports
        m.known_kernel_reports = [{"reason": why, "report": text}
                                  for text, why in reports if why is not None]
        if result.status != "passed" or vm.console.crash_line:
            m.console_tail = vm.console.tail(40)

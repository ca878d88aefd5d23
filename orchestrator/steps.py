"""Running the steps of a scenario against its VMs.

:func:`run_step` runs one step under its timeout and returns a
:class:`~orchestrator.results.StepResult`; it raises only on cancellation.
Captured metrics go into the shared :class:`StepContext` for later ``assert``
steps. A VM crash or exit during a step makes the step an ``error``. An ``exec``
with ``background`` starts a command in :mod:`orchestrator.background`; its
``join`` checks it with the same code as an ``exec`` step checks its command.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from . import faults
from .agent import ExecResult
from .background import KILL_WAIT, BackgroundJobs, Job
from .console import tail_lines
from .devices import qom_get
from .errors import AgentError, P2PLabError, QMPCommandError, StepFailed, StepTimeout, VMError
from .results import StepResult
from .schema import (
    STEP_CLASSES,
    AssertStep,
    Check,
    ExecStep,
    FaultStep,
    JoinStep,
    Metric,
    OutputChecks,
    QMPStep,
    Step,
    ValueRef,
    WaitStep,
    step_machine,
)
from .vm import VM

log = structlog.get_logger(__name__)

DEFAULT_STEP_TIMEOUT = 300.0
HANG_PING_TIMEOUT = 5.0
START_GRACE = 0.2  # seconds a background command (without 'ready') is watched for a quick exit
READY_INTERVAL = 0.2  # seconds between two runs of a background command's 'ready' probe

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt,
    "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}  # fmt: skip
_OP_TEXT = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass
class StepContext:
    """What steps share: the VMs, captured metrics, cursors for waits, the run dir."""

    vms: dict[str, VM]
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    event_cursor: dict[str, int] = field(default_factory=dict)
    console_cursor: dict[str, int] = field(default_factory=dict)
    timeout_scale: float = 1.0  # >1 when a machine runs a debug kernel
    jobs: BackgroundJobs | None = None  # background commands (the runner's job group)


def step_kind(step: Step) -> str:
    """``exec``, ``qmp``, ``fault``, ``wait`` or ``assert``."""
    return STEP_CLASSES[type(step)]


def step_title(step: Step) -> str:
    """The step's name, or a short description of it."""
    if step.name:
        return step.name
    if isinstance(step, ExecStep):
        return step.exec_ if isinstance(step.exec_, str) else shlex.join(step.exec_)
    if isinstance(step, JoinStep):
        return f"join {step.join}"
    if isinstance(step, QMPStep):
        return f"qmp {step.qmp.execute}"
    if isinstance(step, FaultStep):
        return f"fault {step.fault.kind}"
    if isinstance(step, WaitStep):
        w = step.wait
        return f"wait {w.event or ''}{w.console or ''}{w.guest or ''}"
    return "assert " + ", ".join(_check_text(c) for c in step.assert_)


def _check_text(c: Check) -> str:
    v = c.value
    right = (v.metric or v.qom) if isinstance(v, ValueRef) else v
    return f"{c.metric or c.qom} {_OP_TEXT[c.op]} {right}"


def _argv(cmd: str | list[str]) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _capture(metric: Metric, stdout: str, stderr: str) -> Any:
    text = {"stdout": stdout, "stderr": stderr, "output": stdout + "\n" + stderr}[metric.source]
    matches = list(re.finditer(metric.pattern, text, re.MULTILINE))
    if not matches:
        return None
    raw = (matches[-1] if metric.last else matches[0]).group(1)
    if metric.type == "int":
        return int(raw)
    if metric.type == "float":
        return float(raw)
    return raw


def _keep_output(argv: list[str], out: ExecResult, vm: str, ctx: StepContext,
                 res: StepResult) -> None:
    """A command's output into the step's artifacts, its exit into the step's details."""
    base = ctx.run_dir / vm / "steps" / f"{res.index:02d}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for stream, text in (("stdout", out.stdout), ("stderr", out.stderr)):
        p = base.with_name(f"{base.name}.{stream}")
        p.write_text(text)
        res.artifacts[stream] = str(p)
    res.details.update(
        argv=argv, status=out.status, signal=out.signal, timed_out=out.timed_out,
        guest_duration=out.duration, truncated=out.truncated,
        stdout_tail=tail_lines(out.stdout, 30), stderr_tail=tail_lines(out.stderr, 10),
    )


def _output_tail(out: ExecResult) -> str:
    tail = tail_lines(out.stdout + ("\n" + out.stderr if out.stderr else ""), 15)
    return f"\n--- output tail ---\n{tail}" if tail else ""


def _check_exit(step: OutputChecks, argv: list[str], out: ExecResult, vm: str,
                ctx: StepContext, res: StepResult, killed: str) -> None:
    """Keep a command's output and check its exit against ``expect`` and ``metrics``
    (an exec step's command, or a background command at its join). ``killed`` says
    why, if the command was killed for running too long."""
    _keep_output(argv, out, vm, ctx, res)
    problems: list[str] = []
    if out.timed_out:
        raise StepTimeout(killed)
    if step.expect.status is not None and out.status != step.expect.status:
        problems.append(f"exit status {out.status}, expected {step.expect.status}")
    for stream, text, must, mustnt in (
        ("stdout", out.stdout, step.expect.stdout, step.expect.not_stdout),
        ("stderr", out.stderr, step.expect.stderr, step.expect.not_stderr),
    ):
        problems += [f"{stream} does not match {p!r}" for p in must
                     if not re.search(p, text, re.MULTILINE)]
        problems += [f"{stream} matches {p!r}" for p in mustnt
                     if re.search(p, text, re.MULTILINE)]
    for name, metric in step.metrics.items():
        value = _capture(metric, out.stdout, out.stderr)
        if value is None:
            problems.append(f"metric {name!r}: no match for {metric.pattern!r}")
        else:
            res.metrics[name] = value
            ctx.metrics[name] = value
    if problems:
        raise StepFailed("; ".join(problems) + _output_tail(out))


async def _run_exec(step: ExecStep, vm: VM, ctx: StepContext, res: StepResult,
                    timeout: float) -> None:
    argv = _argv(step.exec_)
    if step.background is not None:
        await _run_background(step, step.background, argv, vm, ctx, res, timeout)
        return
    out = await vm.guarded(vm.agent.exec(argv, timeout))
    _check_exit(step, argv, out, vm.name, ctx, res,
                f"{shlex.join(argv)}: killed in the guest after {timeout:.0f}s")


def _ended_badly(job: Job, ready: bool, ctx: StepContext) -> str | None:
    """Why a background command that ended already fails its own step (None: it does not,
    its join decides)."""
    out = job.result
    assert out is not None and ctx.jobs is not None
    if job.pid is None:
        return f"cannot start {shlex.join(job.argv)}: exit status {out.status}"
    if not ready:
        return f"{shlex.join(job.argv)} exited with status {out.status} before it was ready"
    join = ctx.jobs.joins.get(job.name)
    expected = join.expect.status if join is not None else 0
    if expected is not None and out.status != expected:
        return (f"{shlex.join(job.argv)} exited at once with status {out.status} "
                f"(its join expects {expected})")
    return None


async def _run_background(step: ExecStep, name: str, argv: list[str], vm: VM,
                          ctx: StepContext, res: StepResult, timeout: float) -> None:
    """Start a background command; pass once it runs (see docs/scenarios.md, Steps)."""
    if ctx.jobs is None:
        raise AgentError(vm.name, "background commands need the runner's job group")
    if vm.agent.version < 2:
        raise AgentError(vm.name, f"the guest agent speaks protocol version "
                                  f"{vm.agent.version}, background commands need 2: "
                                  f"rebuild the guest (make guest)")
    job = ctx.jobs.start(name, vm, argv, res)
    res.details.update(background=name, argv=argv)
    await job.started.wait()
    ready = True
    if job.pid is not None:
        res.details["pid"] = job.pid
        if step.ready is not None:
            ready = await _wait_ready(step.ready, job, vm, res, timeout)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.done.wait(), START_GRACE * ctx.timeout_scale)
    res.details["state"] = "exited" if job.done.is_set() else "running"
    if not job.done.is_set():
        return
    if job.error is not None:
        job.reported = True
        raise job.error
    why = _ended_badly(job, ready, ctx)
    if why is not None:
        assert job.result is not None
        job.reported = True
        _keep_output(argv, job.result, vm.name, ctx, res)
        raise StepFailed(why + _output_tail(job.result))


async def _wait_ready(ready: str | list[str], job: Job, vm: VM, res: StepResult,
                      timeout: float) -> bool:
    """Run ``ready`` until it exits 0 (True), or the background command ends (False)."""
    argv = _argv(ready)
    tries = 0
    while not job.done.is_set():
        tries += 1
        out = await vm.guarded(vm.agent.exec(argv, min(timeout, 30.0)))
        res.details["ready_tries"] = tries
        if out.status == 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.done.wait(), READY_INTERVAL)
    return False


async def _run_join(step: JoinStep, vm: VM, ctx: StepContext, res: StepResult,
                    timeout: float) -> None:
    """Wait for a background command to end (killing it after ``timeout``), then check it."""
    job = ctx.jobs.jobs.get(step.join) if ctx.jobs is not None else None
    if job is None:  # validation makes this impossible
        raise AgentError(vm.name, f"no background command {step.join!r} was started")
    job.reported = True
    res.details.update(background=job.name, started_by=job.step.index)
    waited_out = False
    try:
        async with asyncio.timeout(timeout):
            await job.done.wait()
    except TimeoutError:
        waited_out = True
        log.warning("background command still running at its join's timeout: killing it",
                    vm=vm.name, background=job.name, timeout=timeout)
        await job.kill()
    if job.error is not None:
        raise job.error
    if job.result is None:
        raise AgentError(vm.name, f"background command {job.name!r} did not end when "
                                  f"killed after the join's {timeout:.0f}s")
    out = replace(job.result, timed_out=True) if waited_out else job.result
    _check_exit(step, job.argv, out, vm.name, ctx, res,
                f"{shlex.join(job.argv)}: still running after the join's {timeout:.0f}s: "
                f"killed (exit status {job.result.status})")


def report_unjoined(ctx: StepContext) -> None:
    """After the job group ended: the step that started each background command no
    join reported (the scenario ended first) says how it ended, with its output."""
    if ctx.jobs is None:
        return
    for job in ctx.jobs.jobs.values():
        if job.reported:
            continue
        job.reported = True
        out = job.result
        if out is not None:
            _keep_output(job.argv, out, job.vm.name, ctx, job.step)
        if job.killed and out is not None:
            end = f"still running at the end of the run: killed (exit status {out.status})"
        elif job.killed:
            end = "still running at the end of the run: killed with its VM"
        elif job.error is not None:
            end = f"never joined; it failed: {job.error}"
        elif out is not None:
            end = f"exited with status {out.status} but was never joined"
        else:
            end = "ended without an exit status"
        res = job.step
        res.details["at_end"] = end
        res.message = (f"{res.message}; " if res.message else "") + f"background command {end}"
        log.warning("background command not joined", vm=job.vm.name, background=job.name,
                    end=end)


async def _run_qmp(step: QMPStep, vm: VM, res: StepResult) -> None:
    try:
        reply = await vm.execute(step.qmp.execute, step.qmp.arguments or None)
    except QMPCommandError as exc:
        res.details["error"] = str(exc)
        if step.expect_error is False:
            raise StepFailed(str(exc)) from exc
        if isinstance(step.expect_error, str) and not re.search(step.expect_error, str(exc)):
            raise StepFailed(f"error {exc} does not match {step.expect_error!r}") from exc
        return
    res.details["return"] = reply
    if step.expect_error is not False:
        raise StepFailed(f"{step.qmp.execute} succeeded but an error was expected")


async def _run_wait(step: WaitStep, vm: VM, ctx: StepContext, res: StepResult,
                    timeout: float) -> None:
    w = step.wait
    if w.event is not None:
        start = ctx.event_cursor.get(vm.name, 0)
        ctx.event_cursor[vm.name], ev = await vm.wait_event(w.event, w.data, start)
        res.details["event"] = ev
    elif w.console is not None:
        start = ctx.console_cursor.get(vm.name, 0)
        m = await vm.guarded(vm.console.wait_for(w.console, start))
        ctx.console_cursor[vm.name] = m.end()
        res.details["console"] = m.group(0)
    else:
        assert w.guest is not None
        argv = _argv(w.guest)
        tries = 0
        while True:
            tries += 1
            out = await vm.guarded(vm.agent.exec(argv, min(timeout, 30.0)))
            if out.status == 0:
                res.details.update(tries=tries, stdout_tail=tail_lines(out.stdout, 30))
                return
            await asyncio.sleep(w.interval)


async def _measured(metric: str | None, qom: str | None, vm: VM | None, ctx: StepContext,
                    res: StepResult) -> Any:
    """A captured metric, or a device property read now (and recorded with the step)."""
    if metric is not None:
        return ctx.metrics.get(metric)
    assert qom is not None and vm is not None
    dev, prop = qom.split(".", 1)
    value = await qom_get(vm, dev, prop)
    res.metrics[qom] = value
    return value


async def _run_assert(step: AssertStep, vm: VM | None, ctx: StepContext,
                      res: StepResult) -> None:
    failures: list[str] = []
    for check in step.assert_:
        actual = await _measured(check.metric, check.qom, vm, ctx, res)
        expected: Any = check.value
        if isinstance(check.value, ValueRef):
            expected = await _measured(check.value.metric, check.value.qom, vm, ctx, res)
        try:
            ok = actual is not None and expected is not None and \
                _COMPARE[check.op](actual, expected)
        except TypeError:
            ok = False
        res.details.setdefault("checks", []).append(
            {"check": _check_text(check), "actual": actual, "expected": expected, "ok": ok}
        )
        if not ok:
            against = f", {expected!r} on the right" if isinstance(check.value, ValueRef) else ""
            failures.append(f"{_check_text(check)} is false (actual: {actual!r}{against})")
    if failures:
        raise StepFailed("; ".join(failures))


async def _dispatch(step: Step, vm: VM | None, ctx: StepContext, res: StepResult,
                    timeout: float) -> None:
    if isinstance(step, AssertStep):
        await _run_assert(step, vm, ctx, res)
        return
    assert vm is not None
    vm.check_alive()
    if isinstance(step, ExecStep):
        await _run_exec(step, vm, ctx, res, timeout)
    elif isinstance(step, JoinStep):
        await _run_join(step, vm, ctx, res, timeout)
    elif isinstance(step, QMPStep):
        await _run_qmp(step, vm, res)
    elif isinstance(step, FaultStep):
        res.details.update(await faults.inject(vm, step.fault))
    elif isinstance(step, WaitStep):
        await _run_wait(step, vm, ctx, res, timeout)


async def _guest_hung(vm: VM) -> bool:
    """After a timeout: a running guest whose agent does not answer a ping is hung."""
    if not vm.running or vm.agent.ready_info is None:
        return False
    try:
        await vm.guarded(vm.agent.ping(timeout=HANG_PING_TIMEOUT))
    except P2PLabError:
        return True
    return False


def _fail_on_reports(res: StepResult, ctx: StepContext, before: dict[str, int]) -> None:
    """A kernel report on any VM during the step makes it an error, after its output is kept."""
    for name, vm in ctx.vms.items():
        vm.console.read_new()
        new = vm.console.report_lines[before.get(name, 0) :]
        if not new or res.status == "error":
            continue
        more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
        was = f"; the step itself {res.status}: {res.message}" if res.status != "passed" else ""
        res.status = "error"
        res.message = f"{name}: kernel report: {new[0]}{more}{was}"
        res.details["kernel_reports"] = [text for text, why in vm.console.reports()
                                         if why is None]


async def run_step(index: int, step: Step, ctx: StepContext) -> StepResult:
    """Run one step; the result says passed, failed or error (never raises but on cancel)."""
    machine = step_machine(step, ctx.vms)
    res = StepResult(index, step_title(step), step_kind(step), machine)
    timeout = (step.timeout or DEFAULT_STEP_TIMEOUT) * ctx.timeout_scale
    vm = ctx.vms.get(machine) if machine else None
    t0 = time.monotonic()
    log.info("step", index=index, name=res.name, machine=machine)
    reports_before = {name: len(v.console.report_lines) for name, v in ctx.vms.items()}
    try:
        # exec: the agent enforces ``timeout`` and reports; the host allows a margin.
        # join: it kills the command after ``timeout`` and waits for its exit.
        # A background exec's ``timeout`` (to start, and be ready) is the host's alone.
        margin = 0.0
        if isinstance(step, ExecStep) and step.background is None:
            margin = 10.0
        elif isinstance(step, JoinStep):
            margin = 2 * KILL_WAIT + 5.0
        async with asyncio.timeout(timeout + margin):
            await _dispatch(step, vm, ctx, res, timeout)
        res.status = "passed"
    except TimeoutError:
        res.status = "failed"
        res.message = f"timed out after {timeout:.0f}s"
        if vm is not None and await _guest_hung(vm):
            res.status = "error"
            quiet = time.monotonic() - vm.console.last_output
            res.message += (f"; the guest is hung: its agent does not answer a ping"
                            f" (console silent for {quiet:.0f}s)")
            res.details["console_tail"] = vm.console.tail()
    except StepFailed as exc:
        res.status = "failed"
        res.message = str(exc)
    except P2PLabError as exc:
        res.status = "error"
        res.message = str(exc)
        if isinstance(exc, VMError) and exc.console_tail:
            res.details["console_tail"] = exc.console_tail
    _fail_on_reports(res, ctx, reports_before)
    res.duration = time.monotonic() - t0
    log.info("step done", index=index, name=res.name, status=res.status,
             seconds=round(res.duration, 2), message=res.message.split("\n")[0][:200])
    return res

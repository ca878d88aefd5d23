"""Background commands: ``exec`` steps with ``background: NAME`` and their ``join``.

A background command is one agent ``exec`` request (with ``report_start``: the
agent says ``started`` once the program runs) held open by a task of the run's
:func:`job_group` TaskGroup while other steps run; the ``join`` step awaits the
answer. Nothing outlives the group: on the way out it kills, through the agent,
every command still running (and waits a moment for its exit, so its output and
status are kept), then cancels what did not end. The steps that use them are in
:mod:`orchestrator.steps`; docs/scenarios.md and docs/guest-agent.md describe them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import structlog

from .agent import ExecResult, Started
from .errors import P2PLabError
from .results import StepResult
from .schema import JoinStep
from .vm import VM

log = structlog.get_logger(__name__)

KILL_WAIT = 5.0  # seconds for a killed command's exit to come back from the agent


@dataclass(eq=False)
class Job:
    """One background command, from its ``exec`` step to its end."""

    name: str
    vm: VM
    argv: list[str]
    step: StepResult  # the result of the step that started it
    started: asyncio.Event = field(default_factory=asyncio.Event)  # also set when it ended
    done: asyncio.Event = field(default_factory=asyncio.Event)
    request_id: int | None = None
    pid: int | None = None
    result: ExecResult | None = None
    error: Exception | None = None  # what its task hit instead of a result
    killed: bool = False  # killed at the end of the run, still running
    reported: bool = False  # its outcome is in a step result (its join, or its own step)
    task: asyncio.Task[None] | None = None

    def _on_start(self, info: Started) -> None:
        self.request_id, self.pid = info.request_id, info.pid
        self.started.set()

    async def run(self) -> None:
        """Hold the exec request until the command ends; keep what came back."""
        try:
            self.result = await self.vm.guarded(
                self.vm.agent.exec(self.argv, None, on_start=self._on_start))
        except Exception as exc:  # kept for the join: a TaskGroup child must not raise
            self.error = exc
            log.warning("background command failed", vm=self.vm.name, background=self.name,
                        error=str(exc))
        finally:
            self.started.set()
            self.done.set()
        log.info("background command ended", vm=self.vm.name, background=self.name,
                 status=self.result.status if self.result else None)

    @property
    def running(self) -> bool:
        """Started and not ended."""
        return self.pid is not None and not self.done.is_set()

    async def kill(self, wait: float = KILL_WAIT) -> None:
        """SIGKILL its process group in the guest, then wait (at most ``wait`` s) for its exit."""
        if self.done.is_set():
            return
        if self.request_id is not None and self.vm.running:
            # It may have ended meanwhile ("no running command"), or the agent be gone.
            with contextlib.suppress(P2PLabError):
                await self.vm.agent.kill(self.request_id, timeout=wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), wait)


class BackgroundJobs:
    """The background commands of one run, their tasks owned by one TaskGroup."""

    def __init__(self, tg: asyncio.TaskGroup, joins: Mapping[str, JoinStep]) -> None:
        self._tg = tg
        self.joins = dict(joins)  # name -> the step that joins it
        self.jobs: dict[str, Job] = {}

    def start(self, name: str, vm: VM, argv: list[str], step: StepResult) -> Job:
        """Start ``argv`` on ``vm`` in the background; the returned job's ``started``
        is set once the agent says it runs (or once it ended, failing to start)."""
        if name in self.jobs:  # validation makes names unique
            raise ValueError(f"background command {name!r} started twice")
        job = Job(name, vm, argv, step)
        job.task = self._tg.create_task(job.run(), name=f"{vm.name}-background-{name}")
        self.jobs[name] = job
        log.info("background command", vm=vm.name, background=name, argv=argv)
        return job

    async def stop_all(self) -> None:
        """Kill every command still running (concurrently), then cancel what did not end."""
        left = [job for job in self.jobs.values() if not job.done.is_set()]
        if not left:
            return
        for job in left:
            log.warning("background command still running at the end of the run: killing it",
                        vm=job.vm.name, background=job.name)
            job.killed = True
        async with asyncio.TaskGroup() as tg:
            for job in left:
                tg.create_task(job.kill(), name=f"{job.vm.name}-kill-{job.name}")
        for job in left:
            if job.task is not None and not job.done.is_set():
                job.task.cancel()


@contextlib.asynccontextmanager
async def job_group(joins: Mapping[str, JoinStep]) -> AsyncIterator[BackgroundJobs]:
    """A TaskGroup for background commands; on the way out (whatever happened) every
    command still running is killed and every task has ended."""
    error: Exception | None = None
    async with asyncio.TaskGroup() as tg:
        jobs = BackgroundJobs(tg, joins)
        try:
            yield jobs
        except Exception as exc:  # raised again below, not wrapped in a group
            error = exc
        finally:
            await jobs.stop_all()
    if error is not None:
        raise error

"""One VM: the QEMU process, its QMP client, its console watcher and its agent.

Lifecycle: :meth:`VM.start` spawns QEMU in its own process group (and with a
parent-death signal, so it dies with the orchestrator even on SIGKILL), then
connects QMP and the agent socket; :meth:`VM.wait_ready` waits for the guest
agent; :meth:`VM.shutdown` powers the guest off through the agent, else quits
over QMP, else kills the process group. Shutdown is idempotent and always ends
with the process gone, even when cancelled.

Every QEMU process group started here is recorded in :data:`LIVE_GROUPS` until
it is reaped; :func:`kill_all_now` (used at exit) kills whatever is left.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import json
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TextIO, TypeVar

import structlog
from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, Runstate

from .agent import AgentClient
from .cmdline import Accel, Boot, LanMember, LinkEnd, VMPaths, build_argv
from .console import ConsoleWatcher
from .errors import (
    GuestCrashed,
    GuestSetupError,
    QMPCommandError,
    VMError,
    VMExited,
    VMLaunchError,
)
from .kernels import GuestKernel
from .lan import guest_script
from .schema import Machine, size_bytes

log = structlog.get_logger(__name__)

T = TypeVar("T")

LIVE_GROUPS: set[int] = set()
CRASH_GRACE = 1.5  # seconds to wait for crash/exit evidence after a channel breaks
LAN_TIMEOUT = 30.0  # seconds for the guest to set up the management LAN (0.13 s under TCG)


def kill_all_now() -> None:
    """SIGKILL every QEMU process group this process started and has not reaped."""
    for pgid in list(LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        LIVE_GROUPS.discard(pgid)


atexit.register(kill_all_now)

# QEMU dies with the orchestrator even on SIGKILL: setpriv (util-linux, in every
# Debian) sets the parent-death signal and execs QEMU.  Not a preexec_fn: that
# runs Python between fork and exec, which is unsafe once a process has a
# second thread (the shell has one), and asyncio's fork path would run it too.
_PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"]


@contextlib.contextmanager
def _tolerated(vm: str, what: str) -> Iterator[None]:
    """Shutdown goes on past a failed way of stopping (the next one is harsher):
    say which failed and why, rather than swallowing it."""
    try:
        yield
    except Exception as exc:
        log.info("shutdown: going on after a failure", vm=vm, step=what,
                 error=f"{type(exc).__name__}: {exc}")


class VMState(enum.Enum):
    """Where a VM is in its life; every transition is logged."""

    CREATED = "created"
    STARTING = "starting"      # QEMU spawned; QMP and the agent socket connecting
    RUNNING = "running"        # QEMU up and connected (the guest may still be booting)
    STOPPING = "stopping"      # shutdown() under way
    STOPPED = "stopped"        # QEMU reaped, channels closed, background tasks done


class VM:
    """A running (or about to run) QEMU guest.

    Its background tasks (the reaper, the console watcher, the QMP event pump)
    live in one TaskGroup held by a supervisor task, so none outlives the VM
    and none fails unseen: a background task that raises is logged, recorded
    in :attr:`background_error`, and fails whatever the VM is doing
    (:meth:`guarded`).
    """

    def __init__(
        self,
        machine: Machine,
        boot: Boot,
        paths: VMPaths,
        accel: Accel,
        links: Sequence[LinkEnd] = (),
        kernel: GuestKernel | None = None,
        known_reports: Sequence[tuple[str, str]] = (),
        lan: LanMember | None = None,
    ) -> None:
        self.machine = machine
        self.kernel = kernel
        self.name = machine.name
        self.paths = paths
        self.accel = accel
        self.lan = lan
        self.argv = build_argv(machine, boot, paths, accel, links, lan)
        self.proc: asyncio.subprocess.Process | None = None
        self.qmp = QMPClient(self.name)
        self.agent = AgentClient(self.name, paths.agent_sock, paths.agent_log)
        self.console = ConsoleWatcher(paths.console_log, known=known_reports)
        self.events: list[dict[str, Any]] = []
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None
        self._events_changed = asyncio.Event()
        self._exited = asyncio.Event()
        self._started_at = 0.0
        self.started_wall = 0.0
        self._group: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self._group_ready = asyncio.Event()
        self._stop_background = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._broken = asyncio.Event()
        self.background_error: str | None = None
        self._state = VMState.CREATED
        self._qmp_log: TextIO | None = None
        self._listener = EventListener()
        self._shut = False
        # How shutdown() ended the VM: poweroff, quit, sigterm, sigkill or exited.
        self.ended_by: str | None = None

    # ------------------------------------------------------------ start

    @property
    def state(self) -> VMState:
        return self._state

    def _set_state(self, state: VMState) -> None:
        log.debug("vm state", vm=self.name, old=self._state.value, new=state.value)
        self._state = state

    async def _supervise(self) -> None:
        """Own the background tasks until shutdown asks them to stop."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._group_ready.set()
            await self._stop_background.wait()
            for task in self._background:
                task.cancel()
        self._group = None

    def _spawn(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        if self._group is None:
            coro.close()
            raise VMError(self.name, f"cannot start {what}: the VM's task group is closed")
        self._background.append(
            self._group.create_task(self._guard(what, coro), name=f"{self.name}/{what}"))

    async def _guard(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug in the orchestrator, not in the guest: fail the VM's work loudly.
            log.error("background task failed", vm=self.name, task=what,
                      error=f"{type(exc).__name__}: {exc}")
            self.background_error = f"{what} failed: {type(exc).__name__}: {exc}"
            self._broken.set()

    async def start(self, launch_timeout: float = 20.0) -> None:
        """Spawn QEMU and connect QMP and the agent socket (the guest need not be up)."""
        if self._state is not VMState.CREATED:
            raise VMError(self.name, f"cannot start a VM that is {self._state.value}")
        self._set_state(VMState.STARTING)
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        self.paths.sock_dir.mkdir(parents=True, exist_ok=True)
        for sock in (self.paths.qmp_sock, self.paths.agent_sock, self.paths.console_sock):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
        for disk in self.machine.disks:
            with self.paths.disk(disk.id).open("wb") as f:
                f.truncate(size_bytes(disk.size))
        (self.paths.dir / "cmdline.json").write_text(json.dumps(self.argv, indent=1) + "\n")
        self._qmp_log = self.paths.qmp_log.open("a", encoding="utf-8")
        if shutil.which(self.argv[0]) is None:
            # setpriv would report it only in qemu.log, as an exit status 127.
            raise VMLaunchError(self.name, f"cannot run {self.argv[0]}: no such executable")
        with self.paths.qemu_log.open("ab") as qlog:
            self._started_at = time.monotonic()
            self.started_wall = time.time()
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    *_PDEATHSIG, *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=qlog,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise VMLaunchError(self.name, f"cannot run {self.argv[0]}: {exc}") from exc
        LIVE_GROUPS.add(self.proc.pid)
        (self.paths.dir / "qemu.pid").write_text(f"{self.proc.pid}\n")
        log.info("qemu started", vm=self.name, pid=self.proc.pid, accel=self.accel)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.name}/supervisor")
        await self._group_ready.wait()
        self._spawn("reaper", self._reap())
        self._spawn("console", self.console.run())
        deadline = time.monotonic() + launch_timeout
        await self._connect_qmp(deadline)
        await self.guarded(self.agent.connect(deadline))
        self._set_state(VMState.RUNNING)

    async def _reap(self) -> None:
        assert self.proc is not None
        rc = await self.proc.wait()
        LIVE_GROUPS.discard(self.proc.pid)
        # QEMU is the group leader; anything it forked goes with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._exited.set()
        log.info("qemu exited", vm=self.name, status=rc)

    async def _connect_qmp(self, deadline: float) -> None:
        while True:
            if self._exited.is_set():
                raise self._exit_error("QEMU exited during start-up")
            try:
                if self.paths.qmp_sock.exists():
                    await asyncio.wait_for(self.qmp.connect(str(self.paths.qmp_sock)), 5.0)
                    break
            except (ConnectError, TimeoutError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise VMLaunchError(self.name, f"QMP connect failed: {exc}") from exc
            if time.monotonic() > deadline:
                raise VMLaunchError(self.name, f"no QMP socket at {self.paths.qmp_sock}")
            await asyncio.sleep(0.02)
        self.qmp.register_listener(self._listener)
        self._spawn("events", self._pump_events())

    async def _pump_events(self) -> None:
        async for event in self._listener:
            ev = dict(event)
            self.events.append(ev)
            self._qlog("event", ev)
            self._events_changed.set()
            if self.on_event is not None:
                self.on_event(self.name, ev)

    def _qlog(self, kind: str, obj: object) -> None:
        if self._qmp_log is not None:
            self._qmp_log.write(f"{time.time():.3f} {kind} {json.dumps(obj, default=str)}\n")
            self._qmp_log.flush()

    async def wait_ready(self) -> float:
        """Wait for the guest agent; returns seconds from QEMU start to agent ready."""
        scale = self.kernel.timeout_scale if self.kernel is not None else 1.0
        info = await self.guarded(self.agent.wait_ready(self.machine.boot_timeout * scale))
        boot_seconds = time.monotonic() - self._started_at
        log.info(
            "boot to agent ready",
            seconds=round(boot_seconds, 2),
            vm=self.name,
            kernel=info.get("kernel"),
            guest_uptime=info.get("uptime"),
        )
        return boot_seconds

    async def configure_lan(self) -> float:
        """Set up this guest's part of the management LAN; returns the seconds it took."""
        if self.lan is None:
            raise GuestSetupError(self.name, "this machine is not on a management LAN")
        scale = self.kernel.timeout_scale if self.kernel is not None else 1.0
        t0 = time.monotonic()
        out = await self.guarded(
            self.agent.exec(["sh", "-c", guest_script(self.lan)], LAN_TIMEOUT * scale))
        seconds = time.monotonic() - t0
        if out.status != 0:
            why = "; ".join((out.stderr.strip() or out.stdout.strip() or "no output").splitlines())
            if out.timed_out:
                why = f"timed out after {LAN_TIMEOUT * scale:.0f} s; {why}"
            raise GuestSetupError(
                self.name, f"management LAN setup failed (exit status {out.status}): {why}",
                self.console.tail())
        log.info("management LAN up", seconds=round(seconds, 3), vm=self.name,
                 address=self.lan.address,
                 peers=[p.peer for p in self.lan.ports])
        return seconds

    # ------------------------------------------------------------ running

    @property
    def qmp_connected(self) -> bool:
        return bool(self.qmp.runstate == Runstate.RUNNING)

    @property
    def running(self) -> bool:
        return self.proc is not None and not self._exited.is_set()

    def _exit_error(self, what: str) -> VMError:
        # A panicking guest makes QEMU exit (panic=-1, -no-reboot) with status 0:
        # the panic, not the exit, is what happened, so read the console to its end.
        self.console.read_new()
        if self.console.crashed.is_set():
            return GuestCrashed(self.name, f"guest crashed: {self.console.crash_line}",
                                self.console.tail())
        rc = self.proc.returncode if self.proc else None
        qlog = ""
        with contextlib.suppress(OSError):
            qlog = self.paths.qemu_log.read_text(errors="replace")[-2000:].strip()
        detail = f"{what} (status {rc})" + (f": {qlog}" if qlog else "")
        return VMExited(self.name, detail, self.console.tail())

    async def guarded(self, aw: Awaitable[T]) -> T:
        """Await ``aw``, but fail at once if the guest crashes or QEMU exits meanwhile."""
        work = asyncio.ensure_future(aw)
        crash = asyncio.ensure_future(self.console.crashed.wait())
        exited = asyncio.ensure_future(self._exited.wait())
        broken = asyncio.ensure_future(self._broken.wait())
        try:
            await asyncio.wait({work, crash, exited, broken},
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (crash, exited, broken):
                fut.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(work, crash, exited, broken, return_exceptions=True)
        if self._broken.is_set():
            raise VMError(self.name, f"internal error: {self.background_error}",
                          self.console.tail())
        failed = work.done() and not work.cancelled() and work.exception() is not None
        if failed and not isinstance(work.exception(), ExecuteError):
            # A channel that breaks is often the first sign of a crash or an exit:
            # give the console watcher and the reaper a moment to see it.
            await self._settle(CRASH_GRACE)
        dead = self.console.crashed.is_set() or self._exited.is_set()
        if work.done() and not work.cancelled() and (work.exception() is None or not dead):
            return work.result()
        if self.console.crashed.is_set():
            raise GuestCrashed(
                self.name, f"guest crashed: {self.console.crash_line}",
                self.console.tail()
            )
        raise self._exit_error("QEMU exited")

    async def _settle(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.console.read_new()
            if self.console.crashed.is_set() or self._exited.is_set():
                return
            await asyncio.sleep(0.05)

    def check_alive(self) -> None:
        """Raise if the guest has crashed or QEMU is gone."""
        if self.console.crashed.is_set():
            raise GuestCrashed(
                self.name, f"guest crashed: {self.console.crash_line}",
                self.console.tail()
            )
        if not self.running:
            raise self._exit_error("QEMU is not running")

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Run one QMP command; raise :class:`QMPCommandError` if QEMU answers an error."""
        self._qlog("->", {"execute": cmd, "arguments": args or {}})
        try:
            reply = await self.guarded(self.qmp.execute(cmd, args))
        except ExecuteError as exc:
            self._qlog("<-", {"error": str(exc)})
            raise QMPCommandError(self.name, f"{cmd}: {exc}") from exc
        self._qlog("<-", {"return": reply})
        return reply

    def event_mark(self) -> int:
        """A position in the event list, for :meth:`wait_event` to search from."""
        return len(self.events)

    async def wait_event(self, name: str, data: dict[str, Any],
                         start: int) -> tuple[int, dict[str, Any]]:
        """Wait for QMP event ``name`` whose data contains ``data``, seen after ``start``.

        Returns the position just past the event (the next search's ``start``) and the event.
        """
        i = start
        while True:
            while i < len(self.events):
                ev = self.events[i]
                i += 1
                evdata = ev.get("data", {})
                if ev.get("event") == name and all(evdata.get(k) == v for k, v in data.items()):
                    return i, ev
            self._events_changed.clear()
            await self.guarded(self._events_changed.wait())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to QEMU's process group (a fault, or the last resort)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    # ------------------------------------------------------------ shutdown

    async def _wait_exit(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)
        return self._exited.is_set()

    async def _vcpus_running(self) -> bool:
        """Whether the guest can run (a paused guest cannot answer a poweroff request)."""
        try:
            status = await asyncio.wait_for(self.qmp.execute("query-status"), 2.0)
        except Exception as exc:
            log.info("shutdown: cannot query the vCPUs; no poweroff", vm=self.name,
                     error=f"{type(exc).__name__}: {exc}")
            return False
        return isinstance(status, dict) and status.get("status") == "running"

    async def shutdown(self) -> str:
        """Stop the VM: agent poweroff, else QMP quit, else kill. Returns how it ended."""
        if self._shut:
            return "already"
        self._shut = True
        self._set_state(VMState.STOPPING)
        how = "exited"
        try:
            if self.running and self.agent.ready_info and not self.console.crashed.is_set() \
                    and await self._vcpus_running():
                with _tolerated(self.name, "agent poweroff"):
                    await self.agent.poweroff(timeout=3.0)
                    if await self._wait_exit(10.0):
                        how = "poweroff"
            if self.running and self.qmp_connected:
                with _tolerated(self.name, "QMP quit"):
                    await asyncio.wait_for(self.qmp.execute("quit"), 3.0)
                if await self._wait_exit(5.0):
                    how = "quit"
            if self.running:
                self.kill(signal.SIGTERM)
                how = "sigterm"
                if not await self._wait_exit(3.0):
                    self.kill(signal.SIGKILL)
                    how = "sigkill"
                    await self._wait_exit(5.0)
        finally:
            # Whatever happened above (even cancellation), QEMU does not survive.
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            await self._close()
        self.ended_by = how
        log.info("vm stopped", vm=self.name, how=how)
        return how

    async def _close(self) -> None:
        with _tolerated(self.name, "agent close"):
            await self.agent.close()
        with _tolerated(self.name, "QMP disconnect"):
            await asyncio.wait_for(self.qmp.disconnect(), 3.0)
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
        self._stop_background.set()
        if self._supervisor is not None:
            # The group's tasks are cancelled and awaited; none outlives the VM.
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self._set_state(VMState.STOPPED)
        self.console.read_new()
        if self._qmp_log is not None:
            self._qmp_log.close()
            self._qmp_log = None

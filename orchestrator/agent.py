"""The host side of the guest agent channel (JSON Lines over virtio-serial).

:class:`AgentClient` connects to the VM's ``agent.sock``, waits for the agent to
announce itself (pinging, because a port does not replay what the guest wrote
before the host connected), and sends requests. Requests may overlap: an agent of
protocol version 2 runs commands concurrently and answers each when it is done
(a version 1 agent answers them one at a time, in order). Every line in both
directions is appended to the VM's ``agent.log``. See docs/guest-agent.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import structlog

from .errors import AgentError, AgentTimeout

log = structlog.get_logger(__name__)

_LINE_LIMIT = 64 * 1024 * 1024  # stdout+stderr are capped at 1 MiB each, before escaping


@dataclass(frozen=True)
class ExecResult:
    """The agent's answer to ``exec``."""

    status: int
    signal: int
    timed_out: bool
    duration: float
    stdout: str
    stderr: str
    truncated: bool


@dataclass(frozen=True)
class Started:
    """The agent's ``started`` event: an exec request's program is running."""

    request_id: int  # the exec request's id: what ``kill`` names
    pid: int


class AgentClient:
    """One connection to one guest agent."""

    def __init__(self, vm: str, sock: Path, log_path: Path) -> None:
        self.vm = vm
        self.sock = sock
        self.log_path = log_path
        self.ready_info: dict[str, Any] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Interim events of a pending request (``started``), to a callback.
        self._interim: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._log: TextIO | None = None
        self._read_task: asyncio.Task[None] | None = None

    async def connect(self, deadline: float) -> None:
        """Connect to the socket, retrying until it exists or ``deadline`` (monotonic)."""
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.sock), limit=_LINE_LIMIT
                )
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() > deadline:
                    raise AgentError(self.vm, f"cannot connect to {self.sock}: {exc}") from exc
                await asyncio.sleep(0.02)
        self._log = self.log_path.open("a", encoding="utf-8")
        self._read_task = asyncio.create_task(self._read_loop(), name=f"{self.vm}-agent-reader")

    def _record(self, direction: str, line: str) -> None:
        if self._log is not None:
            self._log.write(f"{time.time():.3f} {direction} {line.rstrip()[:4096]}\n")
            self._log.flush()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace")
                self._record("<", line)
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("agent sent a line that is not JSON", vm=self.vm, line=line[:200])
                    continue
                if not isinstance(msg, dict):
                    continue
                self._dispatch(msg)
        except (OSError, ValueError) as exc:  # ValueError: a line over the limit
            log.warning("agent channel failed", vm=self.vm, error=str(exc))
        finally:
            self._closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(AgentError(self.vm, "agent channel closed"))
            self._pending.clear()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event == "ready" or (event == "pong" and msg.get("id") == 0):
            if self.ready_info is None:
                self.ready_info = msg
            self._ready.set()
            return
        ident = msg.get("id")
        if event == "started" and isinstance(ident, int) and ident in self._interim:
            self._interim[ident](msg)
            return
        if isinstance(ident, int) and ident in self._pending:
            fut = self._pending.pop(ident)
            if not fut.done():
                fut.set_result(msg)
        elif event == "error":
            log.warning("agent error without a request", vm=self.vm, message=msg.get("message"))

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._writer is None:
            raise AgentError(self.vm, "not connected")
        line = json.dumps(msg, separators=(",", ":")) + "\n"
        self._record(">", line)
        try:
            self._writer.write(line.encode())
            await self._writer.drain()
        except OSError as exc:
            raise AgentError(self.vm, f"cannot write to the agent: {exc}") from exc

    async def wait_ready(self, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        """Ping until the agent answers (or says ready); return its ready message."""
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if self._closed.is_set():
                raise AgentError(self.vm, "agent channel closed before the agent was ready")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout(self.vm, f"guest agent not ready after {timeout:.0f}s")
            await self._send({"id": 0, "op": "ping"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(interval, remaining))
        assert self.ready_info is not None
        return self.ready_info

    @property
    def version(self) -> int:
        """The agent's protocol version (0 before it is ready; 1 did not say)."""
        if self.ready_info is None:
            return 0
        return int(self.ready_info.get("version", 1))

    async def request(self, msg: dict[str, Any], timeout: float | None,
                      on_interim: Callable[[dict[str, Any]], None] | None = None,
                      ) -> dict[str, Any]:
        """Send one request and wait for its answer; other requests may run meanwhile.

        ``on_interim`` gets the request's interim events (``started``) before the answer.
        """
        ident = self._next_id
        self._next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        if on_interim is not None:
            self._interim[ident] = on_interim
        try:
            async with self._lock:  # one writer at a time; the answers are awaited unlocked
                await self._send({"id": ident, **msg})
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            raise AgentTimeout(
                self.vm, f"no answer to {msg.get('op')} within {timeout}s"
            ) from exc
        finally:
            self._pending.pop(ident, None)
            self._interim.pop(ident, None)
        if reply.get("event") == "error":
            raise AgentError(self.vm, f"agent: {reply.get('message', 'error')}")
        return reply

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip; returns the guest's uptime."""
        reply = await self.request({"op": "ping"}, timeout)
        return float(reply.get("uptime", 0.0))

    async def exec(self, argv: list[str], timeout: float | None,
                   on_start: Callable[[Started], None] | None = None) -> ExecResult:
        """Run ``argv`` in the guest; ``timeout`` is enforced by the agent, with margin here.

        With ``on_start`` (protocol version 2), the agent reports when the program runs
        (its exec succeeded): ``on_start`` gets the request's id, for :meth:`kill`.
        """
        msg: dict[str, Any] = {"op": "exec", "argv": argv}
        if timeout is not None:
            msg["timeout"] = timeout
        interim: Callable[[dict[str, Any]], None] | None = None
        if on_start is not None:
            msg["report_start"] = True
            report = on_start

            def interim(event: dict[str, Any]) -> None:
                report(Started(int(event["id"]), int(event.get("pid", 0))))

        reply = await self.request(msg, None if timeout is None else timeout + 15.0, interim)
        if reply.get("event") != "exit":
            raise AgentError(self.vm, f"unexpected answer to exec: {reply}")
        return ExecResult(
            status=int(reply.get("status", -1)),
            signal=int(reply.get("signal", 0)),
            timed_out=bool(reply.get("timed_out", False)),
            duration=float(reply.get("duration", 0.0)),
            stdout=str(reply.get("stdout", "")),
            stderr=str(reply.get("stderr", "")),
            truncated=bool(reply.get("truncated", False)),
        )

    async def kill(self, request_id: int, sig: int = 9, timeout: float = 5.0) -> None:
        """Send ``sig`` to the process group of the command of exec request ``request_id``
        (protocol version 2); its exec then answers with its exit. Raises
        :class:`AgentError` if that command is no longer running."""
        await self.request({"op": "kill", "job": request_id, "signal": sig}, timeout)

    async def poweroff(self, timeout: float = 5.0) -> None:
        """Ask the guest to power off (QEMU then exits on its own)."""
        await self.request({"op": "poweroff"}, timeout)

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
            self._read_task = None
        if self._log is not None:
            self._log.close()
            self._log = None

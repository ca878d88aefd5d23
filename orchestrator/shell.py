"""``orchestrator shell``: boot a scenario's machines and drive them by hand.

The asyncio side (VMs, QMP, agent) runs on an event loop in a background
thread; the prompt runs in the main thread with readline (completion, history,
Ctrl-C cancels the running command). Type ``help`` at the prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import select
import shlex
import signal
import socket
import sys
import termios
import threading
import tty
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TextIO, TypeVar

import structlog

from . import paths
from .devices import qom_path, read_counters
from .errors import P2PLabError
from .faults import qmp_prop_value
from .results import ScenarioResult
from .runner import RunOptions, create_vms, new_run_dir, start_vms, teardown
from .scenario import LoadedScenario
from .vm import VM

log = structlog.get_logger(__name__)

T = TypeVar("T")

HELP = """\
Commands (the current VM is in the prompt):
  vms                           list the machines; 'use VM' switches
  CMD [JSON | key=value ...]    any QMP command: query-pci, qom-list path=/machine/peripheral
  {"execute": ...}              a raw QMP command as JSON
  counters [DEV]                the p2plab devices' counters
  get DEV PROP | set DEV PROP VALUE    qom-get / qom-set on a device
  unplug DEV                    device_del (waits for DEVICE_DELETED)
  plug DRIVER id=ID [bus=B] [prop=value ...]   device_add
  stop | cont | kill            pause, resume, SIGKILL the VM's QEMU
  exec CMD ...                  run a command in the guest (through the agent)
  console                       attach to the guest console; Ctrl-] detaches
  events [on | off | N]         live event printing on/off, or the last N events
  help | quit (or Ctrl-D)       quit tears everything down
"""

SHELL_WORDS = ["vms", "use", "counters", "get", "set", "unplug", "plug", "kill", "exec",
               "console", "events", "help", "quit", "exit"]


def parse_value(text: str) -> Any:
    """A JSON value if it parses as one (numbers, true, null, objects), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_qmp(line: str) -> tuple[str, dict[str, Any]]:
    """``cmd {json}``, ``cmd k=v ...`` or raw ``{"execute": ...}`` -> (command, arguments)."""
    line = line.strip()
    if line.startswith("{"):
        msg = json.loads(line)
        if not isinstance(msg, dict) or "execute" not in msg:
            raise ValueError('raw QMP needs {"execute": ...}')
        return str(msg["execute"]), dict(msg.get("arguments", {}))
    cmd, _, rest = line.partition(" ")
    rest = rest.strip()
    if not rest:
        return cmd, {}
    if rest.startswith("{"):
        args = json.loads(rest)
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        return cmd, args
    args = {}
    for word in shlex.split(rest):
        key, eq, value = word.partition("=")
        if not eq:
            raise ValueError(f"expected key=value, got {word!r}")
        args[key] = parse_value(value)
    return cmd, args


class Shell:
    """The interactive session: a loop thread for the VMs, a prompt in the main thread."""

    def __init__(self, loaded: LoadedScenario, opts: RunOptions,
                 out: TextIO = sys.stdout) -> None:
        self.loaded = loaded
        self.opts = opts
        self.out = out
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="shell-loop",
                                       daemon=True)
        self.vms: dict[str, VM] = {}
        self.result = ScenarioResult(loaded.name, str(loaded.path))
        self.current = loaded.scenario.machines[0].name
        self.live_events = True
        self.qmp_commands: list[str] = []
        self._stack = contextlib.ExitStack()

    # ---------------------------------------------------------------- plumbing

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait; Ctrl-C cancels it."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except KeyboardInterrupt:
            fut.cancel()
            with contextlib.suppress(concurrent.futures.CancelledError, Exception):
                fut.result(timeout=10)
            raise

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _on_event(self, vm: str, ev: dict[str, Any]) -> None:
        if self.live_events:
            data = json.dumps(ev.get("data", {}))
            self.say(f"\n[{vm}] event {ev.get('event')} {data}")

    @property
    def vm(self) -> VM:
        return self.vms[self.current]

    # ---------------------------------------------------------------- lifecycle

    async def _boot(self) -> None:
        run_dir = new_run_dir(self.opts.artifacts, self.loaded.name + "-shell")
        self.result.run_dir = str(run_dir)
        await create_vms(self.loaded, self.opts, run_dir, self.vms, self.result, self._stack)
        for vm in self.vms.values():
            vm.on_event = self._on_event
        await start_vms(self.vms, self.result)
        reply = await self.vm.execute("query-commands")
        self.qmp_commands = sorted(c["name"] for c in reply)

    def start(self) -> None:
        self.thread.start()
        self.say(f"booting {', '.join(m.name for m in self.loaded.scenario.machines)} ...")
        self.call(self._boot())
        boots = ", ".join(f"{n} {m.boot_seconds:.2f}s" for n, m in self.result.machines.items()
                          if m.boot_seconds is not None)
        self.say(f"ready ({boots}); run directory {self.result.run_dir}; type 'help'")

    def stop(self) -> None:
        if self.thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(
                teardown(self.vms, self.result, self.opts, self.loaded.name), self.loop)
            try:
                fut.result(timeout=60)
            except Exception as exc:
                # Teardown kills whatever it could not stop; say why it had to.
                log.warning("shell: teardown failed", error=f"{type(exc).__name__}: {exc}")
                self.say(f"teardown failed: {exc}")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self._stack.close()

    # ---------------------------------------------------------------- commands

    def handle(self, line: str) -> bool:
        """Run one command line; False means quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            return self._dispatch(word, rest, line)
        except (P2PLabError, ValueError) as exc:
            self.say(f"error: {exc}")
        return True

    def _dispatch(self, word: str, rest: str, line: str) -> bool:
        if word in ("quit", "exit"):
            return False
        if word == "help":
            self.say(HELP)
        elif word == "vms":
            for name, vm in self.vms.items():
                mark = "*" if name == self.current else " "
                state = "running" if vm.running else "stopped"
                self.say(f"{mark} {name}: {state}, accel {vm.accel}, pid "
                         f"{vm.proc.pid if vm.proc else '-'}, dir {vm.paths.dir}")
        elif word == "use":
            if rest not in self.vms:
                raise ValueError(f"no machine {rest!r} (have: {', '.join(self.vms)})")
            self.current = rest
        elif word == "counters":
            counters = self.call(read_counters(self.vm))
            for dev, values in counters.items():
                if rest and dev != rest:
                    continue
                self.say(f"{dev}: " + " ".join(f"{k}={v}" for k, v in values.items()))
            if not counters:
                self.say("no p2plab devices on this machine")
        elif word == "get":
            dev, prop = shlex.split(rest)
            self._print(self.call(self.vm.execute(
                "qom-get", {"path": qom_path(dev), "property": prop})))
        elif word == "set":
            dev, prop, value = shlex.split(rest)
            self.call(self.vm.execute("qom-set", {"path": qom_path(dev), "property": prop,
                                                  "value": parse_value(value)}))
            self.say("ok")
        elif word == "unplug":
            self.call(self._unplug(rest))
        elif word == "plug":
            driver, _, props = rest.partition(" ")
            _, args = parse_qmp("x " + props) if props else ("x", {})
            typed = {k: qmp_prop_value(v) if isinstance(v, str) else v for k, v in args.items()}
            self.call(self.vm.execute("device_add", {"driver": driver, **typed}))
            self.say("ok")
        elif word == "kill":
            self.vm.kill()
            self.say(f"killed {self.current}")
        elif word == "exec":
            res = self.call(self.vm.agent.exec(shlex.split(rest), 600))
            self.out.write(res.stdout)
            if res.stderr:
                self.out.write(res.stderr)
            self.say(f"[exit status {res.status}, {res.duration:.2f}s]")
        elif word == "console":
            self.console()
        elif word == "events":
            self._events(rest)
        else:
            cmd, args = parse_qmp(line)
            self._print(self.call(self.vm.execute(cmd, args or None)))
        return True

    async def _unplug(self, dev: str) -> None:
        mark = self.vm.event_mark()
        await self.vm.execute("device_del", {"id": dev})
        self.say("device_del sent; waiting for DEVICE_DELETED (Ctrl-C stops waiting)")
        await self.vm.wait_event("DEVICE_DELETED", {"device": dev}, mark)
        self.say(f"{dev} deleted")

    def _events(self, rest: str) -> None:
        if rest in ("on", "off"):
            self.live_events = rest == "on"
            return
        count = int(rest) if rest else 10
        for ev in self.vm.events[-count:]:
            self.say(json.dumps(ev))

    def _print(self, reply: Any) -> None:
        self.say(json.dumps(reply, indent=2) if reply not in ({}, None) else "ok")

    def console(self) -> None:
        """Attach the terminal to the guest console until Ctrl-]."""
        sock_path = self.vm.paths.console_sock
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(sock_path))
            self.say(f"attached to {self.current}'s console; Ctrl-] detaches")
            sock.sendall(b"\n")
            fd = sys.stdin.fileno()
            saved = termios.tcgetattr(fd) if os.isatty(fd) else None
            try:
                if saved is not None:
                    tty.setraw(fd)
                while True:
                    ready, _, _ = select.select([fd, sock], [], [])
                    if sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            break
                        os.write(sys.stdout.fileno(), data)
                    if fd in ready:
                        data = os.read(fd, 1024)
                        if not data or b"\x1d" in data:
                            sock.sendall(data.split(b"\x1d")[0])
                            break
                        sock.sendall(data)
            finally:
                if saved is not None:
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        self.say("\ndetached")

    # ---------------------------------------------------------------- prompt

    def completions(self, text: str, line: str) -> list[str]:
        """Candidates for the word being typed."""
        words = line.split()
        first = len(words) == 0 or (len(words) == 1 and not line.endswith(" "))
        if first:
            pool = SHELL_WORDS + self.qmp_commands
        elif words[0] == "use":
            pool = list(self.vms)
        else:
            pool = [d.id for d in self.vm.machine.devices] + list(self.vms)
        return sorted(w for w in pool if w.startswith(text))

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:
            return
        history = paths.cache_dir() / "shell_history"
        with contextlib.suppress(OSError):
            readline.read_history_file(history)

        def complete(text: str, state: int) -> str | None:
            options = self.completions(text, readline.get_line_buffer())
            return options[state] if state < len(options) else None

        readline.set_completer(complete)
        readline.set_completer_delims(" \t")
        readline.parse_and_bind("tab: complete")

        def save() -> None:
            with contextlib.suppress(OSError):
                history.parent.mkdir(parents=True, exist_ok=True)
                readline.set_history_length(1000)
                readline.write_history_file(history)

        self._stack.callback(save)

    def repl(self) -> None:
        interactive = sys.stdin.isatty()
        if interactive:
            self._setup_readline()
        while True:
            try:
                line = input(f"p2plab[{self.current}]> " if interactive else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                self.say("^C")
                continue
            if not interactive:
                self.say(f"> {line}")
            try:
                if not self.handle(line):
                    break
            except KeyboardInterrupt:
                self.say("^C (cancelled)")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_shell(loaded: LoadedScenario, opts: RunOptions) -> int:
    """Boot, prompt, tear down. Exit status 0, or 1 if the machines did not boot."""
    shell = Shell(loaded, opts)
    old = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        try:
            shell.start()
        except (P2PLabError, KeyboardInterrupt) as exc:
            shell.say(f"error: {exc or 'interrupted'}")
            return 1
        shell.repl()
        return 0
    finally:
        shell.say("tearing down ...")
        shell.stop()
        signal.signal(signal.SIGTERM, old)


__all__ = ["Shell", "parse_qmp", "parse_value", "run_shell"]


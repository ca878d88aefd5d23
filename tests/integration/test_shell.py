"""``orchestrator shell`` driven through a pipe, and through a pseudo-terminal
(completion, console attach and detach), as a user would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from orchestrator import kernels

from .conftest import REPO, orchestrator_cmd, run_cli


def test_shell_through_a_pipe(no_leftovers: Path) -> None:
    script = "\n".join([
        "vms", "use right", "counters gpu0", "set gpu0 fail-next-copy true",
        "get gpu0 fail-next-copy", "exec uname -r", "stop", "cont", "no-such-command",
        '{"execute": "query-name"}', "quit",
    ]) + "\n"
    proc = subprocess.run(
        orchestrator_cmd("shell", "scenarios/two-vms.yaml", "--artifacts", str(no_leftovers)),
        cwd=REPO, input=script, capture_output=True, text=True, timeout=300, check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "* left: running" in out and "  right: running" in out
    assert "gpu0: copies=0" in out
    assert "\ntrue\n" in out
    assert kernels.resolve(None).info["release"] in out and "[exit status 0" in out
    assert "event STOP" in out and "event RESUME" in out
    assert "error: right: no-such-command" in out
    assert '"name": "right"' in out


def _read_until(fd: int, buf: bytearray, pattern: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while pattern not in buf:
        assert time.monotonic() < deadline, f"no {pattern!r} in {bytes(buf[-500:])!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break


def _console_prompt(fd: int, buf: bytearray, tries: int = 30) -> None:
    """Wait until keystrokes reach the guest: Enter until its shell prompts
    again, rather than sleeping and hoping the attach is done."""
    for _ in range(tries):
        mark = len(buf)
        os.write(fd, b"\r")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if b"# " in buf[mark:]:
                return
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                buf += os.read(fd, 65536)
    raise AssertionError(f"the guest shell never prompted on the console: {bytes(buf[-300:])!r}")


def test_shell_on_a_terminal(no_leftovers: Path) -> None:
    argv = orchestrator_cmd("shell", "scenarios/hmm-selftest.yaml",
                            "--artifacts", str(no_leftovers))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell on a pseudo-terminal
        os.chdir(REPO)
        os.execv(argv[0], argv)
    buf = bytearray()
    try:
        _read_until(fd, buf, b"p2plab[vm0]> ")
        os.write(fd, b"query-statu\t")
        _read_until(fd, buf, b"query-status")
        os.write(fd, b"\r")
        _read_until(fd, buf, b'"running": true')
        os.write(fd, b"console\r")
        _read_until(fd, buf, b"Ctrl-] detaches")
        _console_prompt(fd, buf)
        os.write(fd, b"echo hello-$((6*7))\r")
        _read_until(fd, buf, b"hello-42")
        os.write(fd, b"\x1d")
        _read_until(fd, buf, b"detached")
        os.write(fd, b"quit\r")
        _read_until(fd, buf, b"tearing down")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_shell_reports_a_bad_scenario() -> None:
    proc = run_cli("shell", "tests/scenarios/malformed/bad-accel.yaml")
    assert proc.returncode == 2
    assert "machines[0].accel" in proc.stderr

"""Background commands and their joins, against the real guest agent run on the host.

The agent (guest/agent/p2plab-agent.c) is compiled here and started with ``--fd``
on the far end of a unix socket the orchestrator's :class:`AgentClient` connects
to, so the protocol (concurrent execs, ``started``, ``kill``) and the steps
(``background``, ``ready``, ``join``, the kill at the end) run in milliseconds,
without QEMU. The commands run on the host: short ones, or killed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.agent import AgentClient, Started
from orchestrator.background import job_group
from orchestrator.cmdline import Boot, VMPaths
from orchestrator.errors import AgentError
from orchestrator.results import StepResult
from orchestrator.scenario import parse_scenario
from orchestrator.schema import JoinStep, Step
from orchestrator.steps import StepContext, report_unjoined, run_step
from orchestrator.vm import VM
from tests.support.artifacts import require_tool
from tests.support.poll import within

REPO = Path(__file__).resolve().parents[2]
AGENT_SRC = REPO / "guest" / "agent" / "p2plab-agent.c"


@pytest.fixture(scope="module")
def agent_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = require_tool("gcc", "build-essential")
    out = tmp_path_factory.mktemp("agent") / "p2plab-agent"
    # The warnings build-guest.sh builds it with.
    subprocess.run([gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(AGENT_SRC)],
                   check=True)
    return out


@pytest.fixture
async def vm(agent_bin: Path, tmp_path: Path) -> AsyncIterator[VM]:
    """A VM object without QEMU whose agent is the real agent, running on the host."""
    machine = parse_scenario("machines: [{name: vm0}]\nsteps: [{exec: 'true'}]",
                             "s.yaml").scenario.machines[0]
    vm = VM(machine, Boot(Path("/q"), Path("/k"), None), VMPaths(tmp_path, tmp_path), "tcg")
    vm.proc = object()  # type: ignore[assignment]  # "running", for check_alive and kill
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(vm.paths.agent_sock))
    srv.listen(1)
    await vm.agent.connect(time.monotonic() + 5)
    conn, _ = srv.accept()
    proc = subprocess.Popen([str(agent_bin), "--fd", str(conn.fileno())],
                            pass_fds=[conn.fileno()])
    conn.close()
    srv.close()
    try:
        await vm.agent.wait_ready(10)
        yield vm
    finally:
        await vm.agent.close()
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ protocol


async def test_the_agent_runs_commands_concurrently(vm: VM) -> None:
    assert vm.agent.version == 2
    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        runs = [tg.create_task(vm.agent.exec(["sh", "-c", f"sleep 0.5; echo {i}"], 10))
                for i in range(3)]
        await asyncio.sleep(0.1)
        t1 = time.monotonic()
        await vm.agent.ping()  # answered while the commands run
        assert time.monotonic() - t1 < 0.3
    assert time.monotonic() - t0 < 1.4  # not 3 x 0.5 s
    assert [r.result().stdout for r in runs] == ["0\n", "1\n", "2\n"]


async def test_started_then_killed(vm: VM) -> None:
    started: list[Started] = []
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(vm.agent.exec(["sleep", "30"], None, on_start=started.append))
        while not started:
            await asyncio.sleep(0.01)
        await vm.agent.kill(started[0].request_id)
    out = run.result()
    assert (out.status, out.signal, out.timed_out) == (137, 9, False)
    assert started[0].pid > 0
    with pytest.raises(AgentError, match="no running command with that id"):
        await vm.agent.kill(started[0].request_id)


async def test_a_program_that_cannot_run_never_starts(vm: VM) -> None:
    started: list[Started] = []
    out = await vm.agent.exec(["/nonexistent/tool"], 10, on_start=started.append)
    assert out.status == 127 and "exec /nonexistent/tool" in out.stderr
    assert not started


# ------------------------------------------------------------------- steps


def _steps(body: str) -> list[Step]:
    return parse_scenario(f"machines: [{{name: vm0}}]\nsteps:\n{body}", "s.yaml").scenario.steps


async def _run(vm: VM, tmp_path: Path, steps: list[Step]) -> tuple[list[StepResult], StepContext]:
    """Run the steps like the runner does: in a job group, stopping at the first failure."""
    ctx = StepContext({"vm0": vm}, tmp_path)
    results: list[StepResult] = []
    try:
        async with job_group({s.join: s for s in steps if isinstance(s, JoinStep)}) as ctx.jobs:
            for i, step in enumerate(steps):
                results.append(await run_step(i, step, ctx))
                if results[-1].status != "passed":
                    break
    finally:
        report_unjoined(ctx)
    return results, ctx


async def test_background_then_join_checks_like_exec(vm: VM, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    steps = _steps(f"""
  - exec: [sh, -c, 'while [ ! -e {marker} ]; do sleep 0.02; done; echo sum=abc; echo e >&2']
    background: server
  - exec: touch {marker}
  - join: server
    expect: {{stdout: '^sum=', stderr: '^e$'}}
    metrics: {{sum: {{pattern: 'sum=(\\w+)', type: str}}}}
""")
    (start, _, join), ctx = await _run(vm, tmp_path, steps)
    assert start.status == "passed" and start.kind == "exec"
    assert start.details["background"] == "server" and start.details["state"] == "running"
    assert start.details["pid"] > 0 and "at_end" not in start.details
    assert join.status == "passed", join.message
    assert (join.kind, join.name) == ("join", "join server")
    assert join.details["status"] == 0 and join.details["argv"][0] == "sh"
    assert join.details["started_by"] == 0 and join.details["guest_duration"] > 0
    assert join.metrics == {"sum": "abc"} and ctx.metrics["sum"] == "abc"
    assert Path(join.artifacts["stdout"]).read_text() == "sum=abc\n"
    assert Path(join.artifacts["stdout"]).name == "02.stdout"


async def test_a_join_fails_on_the_exit_status(vm: VM, tmp_path: Path) -> None:
    steps = _steps("""
  - exec: [sh, -c, 'sleep 0.5; echo bad news >&2; exit 3']
    background: server
  - join: server
""")
    (start, join), _ = await _run(vm, tmp_path, steps)
    assert start.status == "passed"
    assert join.status == "failed"
    assert join.message.startswith("exit status 3, expected 0")
    assert "bad news" in join.message


async def test_a_quick_failure_fails_the_background_step(vm: VM, tmp_path: Path) -> None:
    steps = _steps("""
  - exec: [sh, -c, 'echo no such device >&2; exit 4']
    background: server
  - join: server
""")
    (start,), _ = await _run(vm, tmp_path, steps)
    assert start.status == "failed"
    assert "exited at once with status 4 (its join expects 0)" in start.message
    assert "no such device" in start.message
    assert start.details["status"] == 4 and "stderr" in start.artifacts
    # A quick exit the join accepts is fine.
    steps = _steps("""
  - exec: [sh, -c, 'exit 4']
    background: quick
  - join: quick
    expect: {status: 4}
""")
    results, _ = await _run(vm, tmp_path / "2", steps)
    assert [r.status for r in results] == ["passed", "passed"]
    assert results[0].details["state"] == "exited"


async def test_a_program_that_cannot_run_fails_the_background_step(vm: VM,
                                                                    tmp_path: Path) -> None:
    steps = _steps("""
  - exec: /nonexistent/server
    background: server
  - join: server
""")
    (start,), _ = await _run(vm, tmp_path, steps)
    assert start.status == "failed"
    assert start.message.startswith("cannot start /nonexistent/server: exit status 127")
    assert "pid" not in start.details


async def test_ready_and_the_kill_at_the_end(vm: VM, tmp_path: Path) -> None:
    flag = tmp_path / "listening"
    steps = _steps(f"""
  - exec: [sh, -c, 'sleep 0.3; touch {flag}; echo serving; exec sleep 60']
    background: server
    ready: test -e {flag}
  - exec: "false"
  - join: server
""")
    (start, fail), _ = await _run(vm, tmp_path, steps)
    assert start.status == "passed" and start.details["ready_tries"] >= 2
    assert fail.status == "failed"
    # The join never ran: the command was killed when the steps ended, and its step says so.
    assert start.details["at_end"] == \
        "still running at the end of the run: killed (exit status 137)"
    assert start.message == "background command still running at the end of the run: " \
                            "killed (exit status 137)"
    assert start.details["signal"] == 9
    assert Path(start.artifacts["stdout"]).read_text() == "serving\n"


async def test_exiting_before_ready_fails(vm: VM, tmp_path: Path) -> None:
    steps = _steps("""
  - exec: [sh, -c, 'sleep 0.2; echo bind failed >&2; exit 0']
    background: server
    ready: "false"
  - join: server
""")
    (start,), _ = await _run(vm, tmp_path, steps)
    assert start.status == "failed"
    assert "exited with status 0 before it was ready" in start.message
    assert "bind failed" in start.message


async def test_a_join_that_times_out_kills_the_command(vm: VM, tmp_path: Path) -> None:
    steps = _steps("""
  - exec: [sh, -c, 'echo waiting; exec sleep 60']
    background: server
  - join: server
    timeout: 1
""")
    async with within(20, "the 1 s join to time out and kill the command"):
        (_, join), _ = await _run(vm, tmp_path, steps)
    assert join.status == "failed"
    assert join.message == "sh -c 'echo waiting; exec sleep 60': still running after the " \
                           "join's 1s: killed (exit status 137)"
    assert join.details["timed_out"] is True and join.details["signal"] == 9
    assert join.details["stdout_tail"] == "waiting"


async def test_an_old_agent_cannot_run_background_commands(vm: VM, tmp_path: Path) -> None:
    vm.agent.ready_info = {"event": "ready", "version": 1}
    steps = _steps("""
  - exec: sleep 1
    background: server
  - join: server
""")
    (start,), ctx = await _run(vm, tmp_path, steps)
    assert start.status == "error"
    assert "protocol version 1, background commands need 2" in start.message
    assert ctx.jobs is not None and not ctx.jobs.jobs


async def test_the_group_raises_what_the_steps_raised(vm: VM) -> None:
    """Not wrapped in an exception group: the runner handles P2PLabError and bugs as such."""
    with pytest.raises(RuntimeError, match="a bug"):
        async with job_group({}):
            raise RuntimeError("a bug")


def test_the_version_is_unknown_before_ready() -> None:
    assert AgentClient("vm0", Path("/nonexistent"), Path("/dev/null")).version == 0

"""Scenario loading: the shipped scenarios validate, shorthands expand, cross-references."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ScenarioError
from orchestrator.scenario import load_scenario, load_scenarios, parse_scenario
from orchestrator.schema import (
    AssertStep,
    ExecStep,
    FaultStep,
    JoinStep,
    QMPStep,
    StopFault,
    WaitStep,
)
from orchestrator.steps import step_kind, step_title

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
machines:
  - name: vm0
steps:
  - exec: uname -a
"""


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path: Path) -> None:
    for loaded in load_scenarios(path):    # one, or a matrix's cells
        assert loaded.name
        assert loaded.scenario.steps


def test_hmm_selftest_shape() -> None:
    loaded = load_scenario(REPO / "scenarios" / "hmm-selftest.yaml")
    sc = loaded.scenario
    assert loaded.name == "hmm-selftest"
    (vm,) = sc.machines
    assert vm.viommu is not None and vm.viommu.model == "intel-iommu"
    kinds = [type(s) for s in sc.steps]
    assert kinds == [ExecStep, ExecStep, AssertStep]
    tests = sc.steps[1]
    assert isinstance(tests, ExecStep)
    assert set(tests.metrics) >= {"passed", "failed", "skipped"}
    assert tests.expect.status == 0


def test_defaults_and_name_from_file() -> None:
    loaded = parse_scenario(MINIMAL, "dir/my-test.yaml")
    assert loaded.name == "my-test"
    vm = loaded.scenario.machines[0]
    assert (vm.memory, vm.cpus, vm.accel) == ("1G", 1, "auto")
    assert vm.viommu is not None and vm.viommu.model == "intel-iommu"
    step = loaded.scenario.steps[0]
    assert isinstance(step, ExecStep) and step.exec_ == "uname -a"
    assert step.expect.status == 0


def test_shorthands() -> None:
    text = """
machines:
  - {name: vm0, viommu: none}
steps:
  - exec: [cat, /proc/uptime]
    metrics: {up: '^([0-9.]+)'}
  - qmp: query-status
  - fault: stop
  - wait: {console: 'login'}
  - assert: up > 0
"""
    sc = parse_scenario(text, "s.yaml").scenario
    assert sc.machines[0].viommu is None
    e, q, f, w, a = sc.steps
    assert isinstance(e, ExecStep) and e.metrics["up"].pattern == "^([0-9.]+)"
    assert isinstance(q, QMPStep) and q.qmp.execute == "query-status"
    assert isinstance(f, FaultStep) and isinstance(f.fault, StopFault)
    assert isinstance(w, WaitStep) and w.wait.console == "login"
    assert isinstance(a, AssertStep)
    check = a.assert_[0]
    assert (check.metric, check.op, check.value) == ("up", "gt", 0)


def test_several_machines_need_step_machine() -> None:
    text = """
machines: [{name: a}, {name: b}]
steps:
  - exec: "true"
"""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    (problem,) = info.value.problems
    assert problem.path == "steps[0]"
    assert "must name its 'machine'" in problem.message
    assert (problem.line, problem.column) == (4, 5)


def test_sockets_move_to_a_short_directory_when_the_run_dir_is_deep(tmp_path: Path) -> None:
    import contextlib

    from orchestrator.runner import vm_paths

    with contextlib.ExitStack() as stack:
        short = vm_paths(tmp_path, "vm0", stack)
        assert short.sock_dir == short.dir == tmp_path / "vm0"
        deep = tmp_path / ("d" * 120)
        p = vm_paths(deep, "vm0", stack)
        assert p.dir == deep / "vm0"
        assert len(str(p.qmp_sock)) < 100 and p.sock_dir.exists()
    assert not p.sock_dir.exists()


@pytest.mark.parametrize(("value", "machines", "mtu"), [
    ("true", None, 1500),
    ("yes", None, 1500),
    ("{}", None, 1500),
    ("{machines: [b, a], mtu: 9000}", ["b", "a"], 9000),
])
def test_management_lan_forms(value: str, machines: list[str] | None, mtu: int) -> None:
    text = f"machines: [{{name: a}}, {{name: b}}]\nmanagement_lan: {value}\n" \
           "steps: [{machine: a, exec: 'true'}]\n"
    lan = parse_scenario(text, "s.yaml").scenario.management_lan
    assert lan is not None and lan.machines == machines and lan.mtu == mtu


@pytest.mark.parametrize("value", ["false", "null", None])
def test_management_lan_off(value: str | None) -> None:
    text = "machines: [{name: a}]\nsteps: [{exec: 'true'}]\n"
    if value is not None:
        text += f"management_lan: {value}\n"
    assert parse_scenario(text, "s.yaml").scenario.management_lan is None


def test_machine_count_limit() -> None:
    """At most 16 machines (also the management LAN's limit: 169.254.100.1-16)."""
    names = ", ".join(f"{{name: m{i}}}" for i in range(17))
    text = f"machines: [{names}]\nmanagement_lan: true\nsteps: [{{machine: m0, exec: x}}]\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.column) == ("machines", 1, 11)
    assert "at most 16 items" in problem.message
    parse_scenario(text.replace(", {name: m16}", ""), "s.yaml")


BACKGROUND = """
machines: [{name: a}, {name: b}]
steps:
  - machine: b
    exec: nc -l -p 5000
    background: server
    ready: sh -c 'netstat -ltn | grep -q :5000'
  - machine: a
    exec: [nc, b, "5000"]
  - machine: b
    join: server
    timeout: 20
    expect: {status: 0, stdout: done}
    metrics: {bytes: 'got (\\d+)'}
  - machine: b
    assert: bytes > 0
"""


def test_background_and_join() -> None:
    start, client, join, check = parse_scenario(BACKGROUND, "s.yaml").scenario.steps
    assert isinstance(start, ExecStep) and start.background == "server"
    assert start.ready == "sh -c 'netstat -ltn | grep -q :5000'"
    assert isinstance(client, ExecStep) and client.background is None and client.ready is None
    assert isinstance(join, JoinStep) and join.join == "server" and join.timeout == 20
    assert join.expect.stdout == ["done"] and join.metrics["bytes"].pattern == r"got (\d+)"
    assert isinstance(check, AssertStep)  # a join's metrics are captured for later asserts
    assert (step_kind(start), step_kind(join)) == ("exec", "join")
    assert (step_title(start), step_title(join)) == ("nc -l -p 5000", "join server")


def test_a_join_with_one_machine_needs_no_machine() -> None:
    text = "machines: [{name: a}]\nsteps: [{exec: x, background: s}, {join: s}]\n"
    parse_scenario(text, "s.yaml")


@pytest.mark.parametrize(("step", "message"), [
    ("{exec: x, background: s, ready: ''}", "the command is empty"),
    ("{exec: x, background: s, ready: []}", "the command is empty"),
    ("{join: s, exec: x}", "exactly one of the keys exec, join, qmp"),
    ("{join: s, background: t}", "unknown key 'background'"),
    ("{join: s, ready: x}", "unknown key 'ready'"),
])
def test_background_schema_errors(step: str, message: str) -> None:
    text = f"machines: [{{name: a}}]\nsteps: [{{exec: x, background: s}}, {step}]\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    assert any(message in p.message for p in info.value.problems), info.value.problems


def test_join_on_another_machine_is_located() -> None:
    text = BACKGROUND.replace("  - machine: b\n    join: server",
                              "  - machine: a\n    join: server")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.column) == ("steps[2].join", 11, 11)
    assert problem.message == "background command 'server' runs on machine 'b' (steps[0]), " \
                              "not on 'a'"

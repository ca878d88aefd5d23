"""Step kinds against a real guest: hot-plug and unplug, waits, QMP expectations,
and the shipped hotplug scenario."""

from __future__ import annotations

from pathlib import Path

from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import parse_scenario

from .conftest import run_cli

STEPS = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - wait: {console: 'p2plab-init: userspace up at ([0-9.]+)s'}
  - fault:
      kind: device-add
      device: {driver: virtserialport, id: port1, bus: vser0.0, props: {name: org.test.1}}
  - wait: {guest: "sh -c 'cat /sys/class/virtio-ports/*/name | grep -q org.test.1'"}
    timeout: 30
  - fault: {kind: device-del, id: port1}
    timeout: 30
  - wait: {event: DEVICE_DELETED, data: {device: port1}}
    timeout: 5
  - qmp: {execute: qom-get, arguments: {path: /machine/peripheral/port1, property: name}}
    expect_error: 'not found'
  - exec: sh -c 'echo out; echo err >&2; exit 3'
    expect: {status: 3, stdout: '^out$', stderr: 'err', not_stdout: 'err'}
    metrics:
      word: {pattern: '^(\\w+)$', from: stderr, type: str}
  - assert: ["word == err"]
"""


async def test_step_kinds(no_leftovers: Path) -> None:
    res = await run_scenario(parse_scenario(STEPS, "steps.yaml"),
                             RunOptions(artifacts=no_leftovers))
    assert res.status == "passed", [(s.name, s.status, s.message) for s in res.steps]
    assert res.metrics["word"] == "err"
    assert res.steps[4].details["event"]["data"]["device"] == "port1"


async def test_failed_expectations_are_explained(no_leftovers: Path) -> None:
    text = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - exec: echo hello
    expect: {stdout: goodbye}
    metrics: {n: 'count=(\\d+)'}
"""
    res = await run_scenario(parse_scenario(text, "f.yaml"), RunOptions(artifacts=no_leftovers))
    (step,) = res.steps
    assert step.status == "failed"
    assert "stdout does not match 'goodbye'" in step.message
    assert "metric 'n': no match" in step.message
    assert "hello" in step.message  # the output tail


def test_hotplug_scenario(no_leftovers: Path) -> None:
    proc = run_cli("run", "scenarios/hotplug.yaml", "--artifacts", str(no_leftovers))
    assert proc.returncode == 0, proc.stdout + proc.stderr

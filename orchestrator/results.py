"""Run results: the data model, ``results.json`` and JUnit XML.

JSON layout (``schema_version`` 1), documented in docs/scenarios.md::

    {"schema_version": 1, "tool": "p2plab-orchestrator", "started": ISO-8601,
     "duration": s, "status": "passed|failed|error",
     "summary": {"total": n, "passed": n, "failed": n, "error": n},
     "scenarios": [ScenarioResult, ...]}

    ScenarioResult = {"name", "file", "status", "duration", "run_dir", "message",
      "machines": {vm: {"accel", "accel_reason", "kernel": Kernel, "boot_seconds",
                        "guest_uptime_at_ready", "lan_seconds", "shutdown", "kernel_reports",
                        "known_kernel_reports": [{"reason", "report"}],
                        "console_tail", "artifacts": {name: path}}},
      "metrics": {name: value}, "counters": {vm: {device: {counter: int}}},
      "steps": [StepResult, ...]}

    StepResult = {"index", "name", "kind", "machine", "status", "duration",
      "message", "metrics": {...}, "details": {...}, "artifacts": {name: path}}

    Kernel = {"requested", "name", "image", "booted" (uname -r in the guest),
      "flavour", "series", "series_requested", "package", "package_version",
      "release" (what the build produced), "notice" (a source fallback, if any)}

Status values: ``passed``, ``failed`` (an expectation was not met), ``error``
(the orchestrator or a VM failed), ``skipped`` (not run after an earlier failure).
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["passed", "failed", "error", "skipped"]
SCHEMA_VERSION = 1


@dataclass
class StepResult:
    """The outcome of one step."""

    index: int
    name: str
    kind: str
    machine: str | None
    status: Status = "skipped"
    duration: float = 0.0
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class MachineResult:
    """What we know about one VM at the end of a scenario."""

    accel: str = ""
    accel_reason: str = ""
    boot_seconds: float | None = None
    shutdown: str = ""
    console_tail: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)
    guest_uptime_at_ready: float | None = None
    kernel_reports: list[str] = field(default_factory=list)
    known_kernel_reports: list[dict[str, str]] = field(default_factory=list)
    # Debug kernels: leaks kmemleak found after the last step (None: no scan ran).
    kmemleak_leaks: int | None = None
    # Agent ready to management LAN set up in the guest (None: not on a LAN).
    lan_seconds: float | None = None
    # Wall-clock (Unix time) of QEMU's start and of the agent's ready event.
    started_at: float | None = None
    ready_at: float | None = None


@dataclass
class ScenarioResult:
    """The outcome of one scenario."""

    name: str
    file: str
    status: Status = "error"
    duration: float = 0.0
    run_dir: str = ""
    message: str = ""
    machines: dict[str, MachineResult] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    # A matrix cell's axis values (empty for a plain scenario).
    axes: dict[str, Any] = field(default_factory=dict)
    # On a cluster: the worker that ran it, and every worker that took it (a
    # worker that died mid-cell is in the list before the one that finished).
    worker: str = ""
    attempts: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """All scenarios of one ``orchestrator run``."""

    started: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime())
    )
    duration: float = 0.0
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if any(s.status == "error" for s in self.scenarios):
            return "error"
        if any(s.status != "passed" for s in self.scenarios):
            return "failed"
        return "passed"

    def to_json(self) -> dict[str, Any]:
        counts = {k: sum(1 for s in self.scenarios if s.status == k)
                  for k in ("passed", "failed", "error", "skipped")}
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "p2plab-orchestrator",
            "started": self.started,
            "duration": round(self.duration, 3),
            "status": self.status,
            "summary": {"total": len(self.scenarios), **counts},
            **({"by_axis": by_axis(self.scenarios)} if any(s.axes for s in self.scenarios)
               else {}),
            "scenarios": [asdict(s) for s in self.scenarios],
        }


def by_axis(results: list[ScenarioResult]) -> dict[str, dict[str, dict[str, int]]]:
    """Matrix cells counted by axis value: axis -> value -> {passed, total}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        for axis, value in r.axes.items():
            cell = out.setdefault(axis, {}).setdefault(str(value), {"passed": 0, "total": 0})
            cell["total"] += 1
            cell["passed"] += r.status == "passed"
    return out


def axis_table(results: list[ScenarioResult]) -> str:
    """The pass/fail summary of a matrix run, by axis value, as plain text."""
    table = by_axis(results)
    rows = [("axis", "value", "passed", "failed")]
    for axis, values in table.items():
        for value, c in values.items():
            rows.append((axis, value, str(c["passed"]), str(c["total"] - c["passed"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [r.name for r in results if r.axes and r.status != "passed"]
    if failed:
        lines += ["", "failed cells:", *(f"  {n}" for n in failed)]
    return "\n".join(lines) + "\n"


def write_json(result: RunResult | ScenarioResult, path: Path) -> None:
    """Write a run (or one scenario) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = result.to_json() if isinstance(result, RunResult) else asdict(result)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def junit_xml(run: RunResult) -> ET.ElementTree[ET.Element]:
    """One ``<testsuite>`` per scenario, one ``<testcase>`` per step."""
    root = ET.Element("testsuites", name="p2plab", time=f"{run.duration:.3f}")
    for sc in run.scenarios:
        suite = ET.SubElement(
            root,
            "testsuite",
            name=sc.name,
            file=sc.file,
            tests=str(len(sc.steps) or 1),
            failures=str(sum(1 for s in sc.steps if s.status == "failed")),
            errors=str(sum(1 for s in sc.steps if s.status == "error")
                       + (1 if sc.status == "error" and not sc.steps else 0)),
            skipped=str(sum(1 for s in sc.steps if s.status == "skipped")),
            time=f"{sc.duration:.3f}",
        )
        props = ET.SubElement(suite, "properties")
        for name, value in sorted(sc.metrics.items()):
            ET.SubElement(props, "property", name=f"metric.{name}", value=str(value))
        for vm, m in sc.machines.items():
            ET.SubElement(props, "property", name=f"{vm}.accel", value=m.accel)
            if m.boot_seconds is not None:
                ET.SubElement(props, "property", name=f"{vm}.boot_seconds",
                              value=f"{m.boot_seconds:.2f}")
            if m.lan_seconds is not None:
                ET.SubElement(props, "property", name=f"{vm}.lan_seconds",
                              value=f"{m.lan_seconds:.3f}")
        for vm, devs in sc.counters.items():
            for dev, counters in devs.items():
                for cname, value in counters.items():
                    ET.SubElement(props, "property", name=f"counter.{vm}.{dev}.{cname}",
                                  value=str(value))
        for axis, value in sc.axes.items():
            ET.SubElement(props, "property", name=f"axis.{axis}", value=str(value))
        if sc.worker:
            ET.SubElement(props, "property", name="worker", value=sc.worker)
            ET.SubElement(props, "property", name="attempts", value=" | ".join(sc.attempts))
        ET.SubElement(props, "property", name="run_dir", value=sc.run_dir)
        if not sc.steps:
            case = ET.SubElement(suite, "testcase", classname=sc.name, name="setup", time="0")
            ET.SubElement(case, "error", message=sc.message or "error").text = sc.message
        for step in sc.steps:
            case = ET.SubElement(
                suite, "testcase", classname=sc.name,
                name=f"{step.index:02d} {step.name}", time=f"{step.duration:.3f}",
            )
            if step.status == "failed":
                ET.SubElement(case, "failure", message=step.message[:500]).text = step.message
            elif step.status == "error":
                ET.SubElement(case, "error", message=step.message[:500]).text = step.message
            elif step.status == "skipped":
                ET.SubElement(case, "skipped", message=step.message or "not run")
            out = step.details.get("stdout_tail")
            if out:
                ET.SubElement(case, "system-out").text = str(out)
        if sc.status != "passed":
            tails = "\n".join(f"== {vm}\n{m.console_tail}" for vm, m in sc.machines.items()
                              if m.console_tail)
            if tails:
                ET.SubElement(suite, "system-err").text = tails
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(run: RunResult, path: Path) -> None:
    """Write JUnit XML for a run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(run).write(path, encoding="utf-8", xml_declaration=True)

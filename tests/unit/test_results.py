"""results.json and JUnit XML from a hand-made run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.results import (
    MachineResult,
    RunResult,
    ScenarioResult,
    StepResult,
    write_json,
    write_junit,
)


def _run() -> RunResult:
    ok = ScenarioResult("good", "scenarios/good.yaml", status="passed", duration=3.5,
                        run_dir="/runs/good", metrics={"passed": 28},
                        machines={"vm0": MachineResult("tcg", "no kvm", 2.1, "poweroff",
                                                       lan_seconds=0.131)},
                        counters={"vm0": {"gpu0": {"copies": 3}}})
    ok.steps = [StepResult(0, "load", "exec", "vm0", "passed", 0.1),
                StepResult(1, "tests", "exec", "vm0", "passed", 3.0, metrics={"passed": 28},
                           details={"stdout_tail": "# Totals: pass:28"})]
    bad = ScenarioResult("bad", "b.yaml", status="failed", duration=1.0, run_dir="/runs/bad",
                         machines={"vm0": MachineResult("tcg", "", 2.0, "poweroff",
                                                        console_tail="Oops: 0000")})
    bad.steps = [StepResult(0, "x", "exec", "vm0", "failed", 0.5, "exit status 1, expected 0"),
                 StepResult(1, "y", "exec", "vm0", "skipped", message="not run")]
    broken = ScenarioResult("broken", "c.yaml", status="error", message="kernel not found")
    return RunResult(duration=5.0, scenarios=[ok, bad, broken])


def test_json(tmp_path: Path) -> None:
    write_json(_run(), tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema_version"] == 1
    assert data["status"] == "error"
    assert data["summary"] == {"total": 3, "passed": 1, "failed": 1, "error": 1, "skipped": 0}
    good = data["scenarios"][0]
    assert good["metrics"] == {"passed": 28}
    assert good["counters"]["vm0"]["gpu0"]["copies"] == 3
    assert good["machines"]["vm0"]["boot_seconds"] == 2.1
    assert good["machines"]["vm0"]["lan_seconds"] == 0.131
    assert data["scenarios"][1]["machines"]["vm0"]["lan_seconds"] is None
    assert good["steps"][1]["metrics"] == {"passed": 28}


def test_junit(tmp_path: Path) -> None:
    write_junit(_run(), tmp_path / "r.xml")
    root = ET.parse(tmp_path / "r.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["good", "bad", "broken"]
    good, bad, broken = suites
    assert good.get("tests") == "2" and good.get("failures") == "0"
    props = {p.get("name"): p.get("value") for p in good.iter("property")}
    assert props["metric.passed"] == "28"
    assert props["counter.vm0.gpu0.copies"] == "3"
    assert props["vm0.boot_seconds"] == "2.10"
    assert props["vm0.lan_seconds"] == "0.131"
    assert not any(p.get("name", "").endswith("lan_seconds") for p in bad.iter("property"))
    assert bad.get("failures") == "1" and bad.get("skipped") == "1"
    failure = bad.find("testcase/failure")
    assert failure is not None and "exit status 1" in (failure.get("message") or "")
    err = bad.find("system-err")
    assert err is not None and "Oops" in (err.text or "")
    assert broken.get("errors") == "1"
    assert broken.find("testcase/error") is not None


def test_status_all_passed() -> None:
    run = RunResult(scenarios=[ScenarioResult("a", "a.yaml", status="passed")])
    assert run.status == "passed"

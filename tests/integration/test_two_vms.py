"""The 2-VM scenario through the CLI (concurrent boot, link, QMP, faults, counters),
and two scenarios at once with -j 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from .conftest import run_cli


def test_two_vms(no_leftovers: Path) -> None:
    out, junit = no_leftovers / "r.json", no_leftovers / "r.xml"
    proc = run_cli("run", "scenarios/two-vms.yaml", "--artifacts", str(no_leftovers),
                   "--json", str(out), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert set(sc["machines"]) == {"left", "right"}
    for m in sc["machines"].values():
        assert m["boot_seconds"] > 0
        assert m["shutdown"] == "poweroff"
    assert sc["counters"]["right"]["gpu0"]["copy-errors"] == 0
    assert "link-tx" in sc["counters"]["left"]["nic0"]
    assert sc["metrics"]["right_devices"] == 2
    # The two machines booted concurrently: each QEMU started before the other's
    # guest was ready (their boot intervals overlap).
    left, right = sc["machines"]["left"], sc["machines"]["right"]
    assert left["started_at"] < right["ready_at"] and right["started_at"] < left["ready_at"]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "13" and suite.get("failures") == "0"


def test_two_scenarios_in_parallel(no_leftovers: Path) -> None:
    out = no_leftovers / "r.json"
    proc = run_cli("run", "-j", "2", "scenarios/two-vms.yaml", "scenarios/hmm-selftest.yaml",
                   "--artifacts", str(no_leftovers), "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["summary"] == {"total": 2, "passed": 2, "failed": 0, "error": 0, "skipped": 0}
    assert [s["name"] for s in data["scenarios"]] == ["two-vms", "hmm-selftest"]


def test_a_failing_scenario_exits_1_and_stops_the_rest(tmp_path: Path,
                                                       no_leftovers: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("machines: [{name: vm0, accel: tcg, memory: 256M}]\n"
                   "steps: [{exec: 'false'}]\n")
    out = no_leftovers / "r.json"
    # One at a time: the second is not started once the first failed (with the
    # default -j, one per core, both would already be running).
    proc = run_cli("run", "-j", "1", str(bad), "scenarios/hmm-selftest.yaml",
                   "--artifacts", str(no_leftovers), "--json", str(out))
    assert proc.returncode == 1
    data = json.loads(out.read_text())
    statuses = [s["status"] for s in data["scenarios"]]
    assert statuses == ["failed", "skipped"]
    assert "exit status 1, expected 0" in data["scenarios"][0]["steps"][0]["message"]

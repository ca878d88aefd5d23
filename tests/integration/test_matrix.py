"""A shipped matrix through the CLI: every cell runs, results and JUnit hold one
entry per cell with its axis values, and the summary by axis is printed and kept."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from .conftest import run_cli

CELLS = {"p2p-gpu-rebar-matrix[cpu=max,bar=256M]", "p2p-gpu-rebar-matrix[cpu=max,bar=512M]",
         "p2p-gpu-rebar-matrix[cpu=EPYC,bar=256M]", "p2p-gpu-rebar-matrix[cpu=EPYC,bar=512M]"}


def test_rebar_matrix_runs_every_cell(no_leftovers: Path) -> None:
    out, junit = no_leftovers / "r.json", no_leftovers / "r.xml"
    proc = run_cli("run", "-j", "2", "scenarios/p2p-gpu-rebar-matrix.yaml", "--artifacts",
                   str(no_leftovers), "--json", str(out), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert {s["name"] for s in data["scenarios"]} == CELLS
    assert all(s["status"] == "passed" for s in data["scenarios"])
    assert {(s["axes"]["cpu"], s["axes"]["bar"]) for s in data["scenarios"]} == {
        ("max", "256M"), ("max", "512M"), ("EPYC", "256M"), ("EPYC", "512M")}
    assert data["by_axis"] == {"cpu": {"max": {"passed": 2, "total": 2},
                                       "EPYC": {"passed": 2, "total": 2}},
                               "bar": {"256M": {"passed": 2, "total": 2},
                                       "512M": {"passed": 2, "total": 2}}}
    # Each cell really booted what its axes say: the CPU model QEMU was given.
    for s in data["scenarios"]:
        argv = json.loads((Path(s["run_dir"]) / "vm0" / "cmdline.json").read_text())
        assert argv[argv.index("-cpu") + 1].split(",")[0] == s["axes"]["cpu"]
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == CELLS
    for suite in suites:
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["axis.cpu"] in ("max", "EPYC") and props["axis.bar"] in ("256M", "512M")
    (summary,) = no_leftovers.glob("*-matrix-summary.txt")
    text = summary.read_text()
    assert "cpu   EPYC   2       0" in text and "bar   512M   2       0" in text
    assert text in proc.stdout

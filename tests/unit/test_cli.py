"""The small subcommands: schema, list, validate; argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.scenario import parse_scenario

REPO = Path(__file__).resolve().parents[2]


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "p2plab scenario"
    assert set(schema["required"]) == {"machines", "steps"}
    assert schema["additionalProperties"] is False
    text = json.dumps(schema)
    for word in ("exec", "join", "qmp", "fault", "wait", "assert", "intel-iommu", "root-port"):
        assert f'"{word}"' in text
    steps = schema["$defs"]
    assert {"background", "ready", "expect", "metrics"} <= set(steps["ExecStep"]["properties"])
    assert set(steps["JoinStep"]["properties"]) == {"name", "machine", "timeout", "join",
                                                    "expect", "metrics"}
    assert steps["JoinStep"]["required"] == ["join"]
    lan = schema["properties"]["management_lan"]
    assert {"type": "boolean"} in lan["anyOf"]
    assert {"$ref": "#/$defs/ManagementLAN"} in lan["anyOf"]
    assert set(schema["$defs"]["ManagementLAN"]["properties"]) == {"machines", "mtu"}


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "hmm-selftest" in out and "HMM selftest" in out
    assert "two-vms" in out


def test_list_marks_invalid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text(
        "description: fine\nmachines: [{name: a}]\nsteps: [{exec: x}]\n")
    (tmp_path / "broken.yaml").write_text("machines: [\n")
    assert main(["list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ok      fine" in out
    assert "broken  (invalid:" in out


def test_missing_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such.yaml"]) == 2
    assert "no/such.yaml: cannot read" in capsys.readouterr().err


def test_usage_error_is_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2


def test_docs_example_validates() -> None:
    """The example in docs/scenarios.md is a valid scenario."""
    text = (REPO / "docs" / "scenarios.md").read_text()
    blocks = text.split("```yaml\n")[1:]
    assert blocks, "docs/scenarios.md has no yaml example"
    for block in blocks:
        body = block.split("```", 1)[0]
        if "machines:" in body:
            parse_scenario(body, "docs-example.yaml")

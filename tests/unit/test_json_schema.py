"""The exported JSON Schema (``orchestrator schema``) agrees with the loader.

A standard validator (check-jsonschema, from PyPI) checks every shipped scenario
and every complete scenario example in README.md and docs/ against the schema,
so an editor using it never flags a file the orchestrator accepts.  Each such
example is also loaded by the orchestrator itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.scenario import parse_scenario
from orchestrator.schema import Scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.M | re.S)


def _doc_examples() -> list[tuple[str, str]]:
    """(id, text) of each ```yaml block that is a whole scenario (machines and steps)."""
    out = []
    for doc in DOCS:
        for i, m in enumerate(_BLOCK.finditer(doc.read_text())):
            text = m.group(1)
            if re.search(r"^machines:", text, re.M) and re.search(r"^steps:", text, re.M):
                out.append((f"{doc.relative_to(REPO)}#{i}", text))
    return out


EXAMPLES = _doc_examples()


def _check(schema: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run([str(exe), "--schemafile", str(schema), *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schema") / "scenario.schema.json"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    json.loads(proc.stdout)
    out.write_text(proc.stdout)
    return out


def test_there_is_something_to_check() -> None:
    assert len(SCENARIOS) >= 10
    assert EXAMPLES, "no complete scenario example found in README.md or docs/"


def test_every_shipped_scenario_validates_against_the_schema(schema_file: Path) -> None:
    proc = _check(schema_file, SCENARIOS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_documented_example_validates_both_ways(schema_file: Path,
                                                       tmp_path: Path) -> None:
    files = []
    for ident, text in EXAMPLES:
        parse_scenario(text, ident)  # the orchestrator accepts it ...
        f = tmp_path / (re.sub(r"\W", "_", ident) + ".yaml")
        f.write_text(text)
        files.append(f)
    proc = _check(schema_file, files)  # ... and so does the schema
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_still_refuses_what_the_loader_refuses(schema_file: Path,
                                                           tmp_path: Path) -> None:
    """Shorthands widened the schema; it must not have become permissive."""
    bad = {
        "unknown-key": "machines: [{name: vm0, colour: red}]\nsteps: [{exec: 'true'}]\n",
        "bad-fault": "machines: [{name: vm0}]\nsteps: [{fault: explode}]\n",
        "bad-check": "machines: [{name: vm0}]\nsteps: [{assert: 'x ~ 1'}]\n",
        "two-kinds": "machines: [{name: vm0}]\nsteps: [{exec: 'true', wait: {console: x}}]\n",
        "bad-viommu": "machines: [{name: vm0, viommu: amd}]\nsteps: [{exec: 'true'}]\n",
    }
    for name, text in bad.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        assert _check(schema_file, [f]).returncode == 1, name


def test_the_cli_exports_the_model_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    exported = json.loads(proc.stdout)
    assert exported["properties"] == Scenario.model_json_schema(by_alias=True)["properties"]

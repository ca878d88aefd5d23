"""Hostile scenario files: each is refused with exit status 2 and a located message,
within bounded time and memory (the process runs under an address-space limit, and
a hard timeout).  The hand-written cases live in the malformed corpus
(tests/scenarios/malformed/yaml-*.yaml); these are the ones too big to ship.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES

REPO = Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 1 << 30  # the validator must stay far below this
TIME_LIMIT = 30.0
# The run's own limit: validate sets RLIMIT_AS, then runs the CLI.
RUNNER = (
    "import resource, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE})); "
    "from orchestrator.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _validate(path: Path) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUNNER, "validate", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=TIME_LIMIT,
                          check=False)
    return proc.returncode, proc.stderr, time.monotonic() - start


def _laughs(levels: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmachines: *a{levels - 1}\n"


STEP = '  - exec: "true"\n'
CASES = {
    # name: (file text, what the message must say, where: "line:col" or "" for file-level)
    "too-large": ("# " + "x" * MAX_FILE_BYTES + "\n", f"larger than {MAX_FILE_BYTES} bytes", ""),
    "laughs-deeper": (_laughs(12), f"more than {MAX_VALUES} values", ":1:"),
    "nesting-mappings": ("a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
                         f"nested deeper than {MAX_DEPTH} levels", ":1:"),
    "many-steps": ("machines: [{name: vm0}]\nsteps:\n" + STEP * 5000,
                   "at most 1000 items", ":3:3:"),
    "long-line-of-aliases": ("a: &a [x]\nb: [" + ", ".join(["*a"] * 120_000) + "]\n",
                             f"more than {MAX_VALUES} values", ":1:"),
    "control-character": ("name: x\x07y\nmachines: [{name: vm0}]\nsteps: [{exec: x}]\n",
                          "character '\\x07' is not allowed", ":1:8:"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_in_bounded_time_and_memory(name: str, tmp_path: Path) -> None:
    text, message, where = CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    rc, err, seconds = _validate(path)
    assert "Traceback" not in err, err[-2000:]
    assert rc == 2, err[-2000:]
    assert message in err, err[-2000:]
    assert f"error: {path}{where}" in err, err[-2000:]
    assert seconds < TIME_LIMIT


def test_limits_leave_room_for_real_scenarios() -> None:
    """The largest shipped scenario is far inside every limit."""
    files = sorted((REPO / "scenarios").glob("*.yaml"))
    assert files
    assert max(f.stat().st_size for f in files) * 16 < MAX_FILE_BYTES

"""Background commands and their joins in real guests: a server on one VM and a client
on another over the management LAN (scenarios/client-server.yaml), a server that fails
(its join fails with the status), and one still running at the end (killed, reported)."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import parse_scenario

from .conftest import run_cli

# What vm0 sends (`seq 1 40000` in the guest), computed here independently.
PAYLOAD = "".join(f"{i}\n" for i in range(1, 40001)).encode()


def test_a_server_in_the_background_and_its_client(no_leftovers: Path) -> None:
    out, junit = no_leftovers / "r.json", no_leftovers / "r.xml"
    proc = run_cli("run", "scenarios/client-server.yaml", "--artifacts", str(no_leftovers),
                   "--json", str(out), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert sc["status"] == "passed"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert sc["metrics"] == {"sent_md5": md5, "received_md5": md5}
    start, _, join, _ = sc["steps"]
    assert (start["kind"], start["machine"], start["status"]) == ("exec", "vm1", "passed")
    assert start["details"]["background"] == "server" and start["details"]["pid"] > 0
    assert start["details"]["state"] == "running" and start["details"]["ready_tries"] >= 1
    # The join carries the server's exit as an exec step carries its command's.
    assert (join["kind"], join["machine"], join["status"]) == ("join", "vm1", "passed")
    assert join["details"]["argv"] == start["details"]["argv"]
    assert join["details"]["status"] == 0 and join["details"]["guest_duration"] > 0
    assert join["metrics"] == {"received_md5": md5}
    assert Path(join["artifacts"]["stdout"]).read_text() == f"{md5}  /tmp/x\n"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "0"
    case = suite.find("testcase[@name='02 the server received it whole']")
    assert case is not None and md5 in (case.findtext("system-out") or "")


FAILING = """
machines: [{name: vm0, accel: tcg, memory: 256M}]
steps:
  - exec: [sh, -c, 'echo serving; exec sleep 600']
    background: idle
  - exec: [sh, -c, 'sleep 1; echo cannot serve >&2; exit 3']
    background: server
  - join: server
  - join: idle
"""


async def test_a_failing_server_fails_its_join(no_leftovers: Path) -> None:
    res = await run_scenario(parse_scenario(FAILING, "failing.yaml"),
                             RunOptions(artifacts=no_leftovers))
    assert res.status == "failed"
    idle, server, join, never = res.steps
    assert server.status == "passed" and server.details["state"] == "running"
    assert join.status == "failed"
    assert join.message.startswith("exit status 3, expected 0")
    assert "cannot serve" in join.message
    assert res.message.startswith("step 2 (join server): exit status 3, expected 0")
    assert never.status == "skipped"
    # Still running when the steps ended: killed in the guest, and its step says so.
    assert idle.status == "passed"
    assert idle.details["at_end"] == \
        "still running at the end of the run: killed (exit status 137)"
    assert Path(idle.artifacts["stdout"]).read_text() == "serving\n"
    assert res.machines["vm0"].shutdown == "poweroff"

"""The management LAN between two real guests: a known payload crosses it by machine name,
and a guest that cannot set its part up ends the run at boot with its reason."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .conftest import run_cli

# What vm0 sends (`seq 1 40000` in the guest), computed here independently.
PAYLOAD = "".join(f"{i}\n" for i in range(1, 40001)).encode()


def test_payload_crosses_the_lan_by_name(no_leftovers: Path) -> None:
    out = no_leftovers / "r.json"
    proc = run_cli("run", "scenarios/management-lan.yaml", "--artifacts", str(no_leftovers),
                   "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert sc["status"] == "passed"
    # vm1's own checksum and size of what it received, against the host's.
    assert sc["metrics"]["received_md5"] == hashlib.md5(PAYLOAD).hexdigest()
    assert sc["metrics"]["received_bytes"] == len(PAYLOAD)
    for name, peer, mac in (("vm0", "vm1", "02:70:6c:4c:01:02"),
                            ("vm1", "vm0", "02:70:6c:4c:02:01")):
        m = sc["machines"][name]
        assert m["lan_seconds"] > 0 and m["shutdown"] == "poweroff"
        argv = json.loads(Path(m["artifacts"]["cmdline"]).read_text())
        nics = [a for a in argv if a.startswith("virtio-net-pci,")]
        assert nics == [f"virtio-net-pci,id=lan.{peer},bus=pcie.0,netdev=lan.{peer},"
                        f"mac={mac},disable-legacy=on,romfile="]


def test_a_guest_without_its_lan_nic_fails_the_run(tmp_path: Path,
                                                   no_leftovers: Path) -> None:
    bad = tmp_path / "lan-no-driver.yaml"
    bad.write_text(
        "machines:\n"
        "  - {name: vm0, memory: 512M}\n"
        "  - {name: vm1, memory: 512M, append: initcall_blacklist=virtio_net_driver_init}\n"
        "management_lan: true\n"
        "steps: [{machine: vm0, exec: 'true'}]\n")
    out = no_leftovers / "r.json"
    proc = run_cli("run", str(bad), "--artifacts", str(no_leftovers), "--json", str(out))
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert sc["status"] == "error"
    assert sc["message"] == ("vm1: management LAN setup failed (exit status 1): "
                             "no interface with MAC 02:70:6c:4c:02:01, the link to vm0")
    assert sc["steps"][0]["status"] == "skipped"

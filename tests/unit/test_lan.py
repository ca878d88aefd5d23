"""The management LAN: the plan (addresses, MACs, sockets), the guest script, its failure."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agent import ExecResult
from orchestrator.cmdline import Boot, VMPaths
from orchestrator.errors import GuestSetupError
from orchestrator.lan import guest_script, lan_plan
from orchestrator.scenario import parse_scenario
from orchestrator.vm import VM
from tests.support.artifacts import require_tool

MESH = """
machines: [{name: a}, {name: b}, {name: c}, {name: d}]
management_lan: {machines: [c, a, b]}
steps: [{machine: a, exec: 'true'}]
"""


def _plan(text: str = MESH) -> dict[str, Any]:
    return lan_plan(parse_scenario(text, "mesh.yaml").scenario, Path("/S"))


def test_no_lan_no_plan() -> None:
    sc = parse_scenario("machines: [{name: a}, {name: b}]\nsteps: [{machine: a, exec: x}]",
                        "s.yaml").scenario
    assert lan_plan(sc, Path("/S")) == {}


def test_full_mesh_in_the_listed_order() -> None:
    plan = _plan()
    assert set(plan) == {"a", "b", "c"}  # d is not on the LAN
    assert {n: m.address for n, m in plan.items()} == {
        "c": "169.254.100.1", "a": "169.254.100.2", "b": "169.254.100.3"}
    for member in plan.values():
        assert member.hosts == (("169.254.100.1", "c"), ("169.254.100.2", "a"),
                                ("169.254.100.3", "b"))
        assert member.mtu == 1500
    a = plan["a"]
    assert [(p.peer, p.peer_address, p.mac) for p in a.ports] == [
        ("c", "169.254.100.1", "02:70:6c:4c:02:01"),
        ("b", "169.254.100.3", "02:70:6c:4c:02:03"),
    ]
    assert [p.end.device for p in a.ports] == ["lan.c", "lan.b"]


def test_every_link_is_one_socket_pair_crossed_over() -> None:
    plan = _plan()
    ends = {(name, p.peer): p.end for name, m in plan.items() for p in m.ports}
    assert len(ends) == 6  # 3 machines, 2 ports each
    for (x, y), end in ends.items():
        back = ends[(y, x)]
        assert end.local == back.remote and end.remote == back.local
    assert len({e.local for e in ends.values()}) == 6
    macs = [p.mac for m in plan.values() for p in m.ports]
    assert len(set(macs)) == len(macs)


def test_guest_script() -> None:
    script = guest_script(_plan()["a"])
    assert script.startswith("set -e\necho a > /proc/sys/kernel/hostname\n")
    assert ("printf '%s\\n' '127.0.0.1 localhost' '169.254.100.1 c' '169.254.100.2 a' "
            "'169.254.100.3 b' > /etc/hosts\n") in script
    assert 'ip addr add 169.254.100.2/32 dev' in script
    assert 'ip route add "$2"/32 dev' in script
    assert script.endswith("port 02:70:6c:4c:02:01 169.254.100.1 c\n"
                           "port 02:70:6c:4c:02:03 169.254.100.3 b\n")


@pytest.mark.parametrize("shell", ["busybox", "sh"])
def test_guest_script_parses(shell: str) -> None:
    """The guest runs busybox sh; the host's busybox (a build dependency) checks the syntax."""
    exe = require_tool(shell, "busybox-static" if shell == "busybox" else "dash")
    argv = [exe, "sh", "-n"] if shell == "busybox" else [exe, "-n"]
    proc = subprocess.run(argv, input=guest_script(_plan()["b"]), capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


async def test_a_failed_setup_is_a_guest_setup_error(tmp_path: Path) -> None:
    sc = parse_scenario(MESH, "mesh.yaml").scenario
    lan = lan_plan(sc, tmp_path)["a"]
    vm = VM(sc.machines[0], Boot(Path("/q"), Path("/k"), None), VMPaths(tmp_path, tmp_path),
            "tcg", lan=lan)
    seen: list[list[str]] = []

    async def fake_exec(argv: list[str], timeout: float | None,
                        on_start: Any = None) -> ExecResult:
        seen.append(argv)
        return ExecResult(1, 0, False, 0.1, "",
                          "no interface with MAC 02:70:6c:4c:02:01, the link to c\n", False)

    vm.agent.exec = fake_exec  # type: ignore[method-assign]
    with pytest.raises(GuestSetupError, match=r"a: management LAN setup failed \(exit status 1\)"
                                              r": no interface with MAC 02:70:6c:4c:02:01"):
        await vm.configure_lan()
    assert seen == [["sh", "-c", guest_script(lan)]]
    assert vm.argv.count("virtio-net-pci,id=lan.c,bus=pcie.0,netdev=lan.c,"
                         "mac=02:70:6c:4c:02:01,disable-legacy=on,romfile=") == 1

"""QEMU command-line construction against golden files (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cmdline import (
    Accel,
    Boot,
    VMPaths,
    build_argv,
    device_arg,
    firmware_for,
    kernel_cmdline,
    link_ends,
)
from orchestrator.lan import lan_plan
from orchestrator.scenario import parse_scenario
from tests.support.golden import check_golden

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cmdline"
BOOT = Boot(Path("/QEMU/qemu-system-x86_64"), Path("/GUEST/bzImage"), Path("/GUEST/initrd"))
PATHS = VMPaths(Path("/RUN/vm0"), Path("/RUN/vm0"))

CASES: dict[str, tuple[str, Accel]] = {
    "minimal-tcg": ("machines: [{name: vm0}]", "tcg"),
    "minimal-kvm": ("machines: [{name: vm0}]", "kvm"),
    "no-viommu": ("machines: [{name: vm0, viommu: none, memory: 512, cpus: 2}]", "tcg"),
    "seabios": ("machines: [{name: vm0, firmware: seabios}]", "tcg"),
    "virtio-iommu": (
        "machines: [{name: vm0, viommu: {model: virtio-iommu}, append: 'quiet loglevel=3'}]",
        "kvm",
    ),
    "topology": (
        """
machines:
  - name: vm0
    cpu: EPYC
    memory: 2G
    viommu: {model: intel-iommu, options: {intremap: "on", caching-mode: true, aw-bits: 48}}
    topology:
      - {kind: root-port, id: rp0, props: {pref64-reserve: 32G}}
      - {kind: root-port, id: rp1, chassis: 9, slot: 2}
      - kind: switch
        id: sw0
        bus: rp1
        downstream: [{id: dp0}, {id: dp1}]
    devices:
      - {driver: p2p-gpu, id: gpu0, bus: dp0, props: {vram-size: 4G, bar-size: 256M}}
      - {driver: odp-nic, id: nic0, bus: dp1, props: {mac: "52:54:00:00:0d:0a"}}
    qemu_args: [-global, "q35-pcihost.pci-hole64-size=64G"]
""",
        "tcg",
    ),
    "nvme-disk": (
        """
machines:
  - name: vm0
    topology: [{kind: root-port, id: rp0}]
    devices: [{driver: nvme, id: nvme0, bus: rp0, props: {serial: p2plab0, drive: nvm0}}]
    disks: [{id: nvm0, size: 64M}]
""",
        "tcg",
    ),
    "custom-cmdline": (
        "machines: [{name: vm0, cmdline: 'console=ttyS0 rdinit=/bin/sh', kernel: /k}]",
        "tcg",
    ),
}


def _argv(name: str) -> list[str]:
    text, accel = CASES[name]
    loaded = parse_scenario(text + "\nsteps: [{exec: 'true'}]\n", f"{name}.yaml")
    return build_argv(loaded.scenario.machines[0], BOOT, PATHS, accel)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    check_golden(GOLDEN / f"{name}.argv", "\n".join(_argv(name)) + "\n")


def test_device_arg_escapes_commas_and_bools() -> None:
    assert device_arg("d", {"id": "x", "a": "1,2", "b": True, "c": False}) == (
        "d,id=x,a=1,,2,b=on,c=off"
    )


def test_kernel_cmdline() -> None:
    loaded = parse_scenario("machines: [{name: v, append: foo=1}]\nsteps: [{exec: x}]", "s.yaml")
    assert kernel_cmdline(loaded.scenario.machines[0]) == (
        "console=ttyS0 loglevel=5 8250.nr_uarts=1 no_timer_check panic=-1 intel_iommu=on foo=1"
    )


def test_kvm_with_intel_iommu_uses_split_irqchip() -> None:
    argv = _argv("minimal-kvm")
    assert argv[argv.index("-accel") + 1] == "kvm,kernel-irqchip=split"
    assert argv[argv.index("-cpu") + 1] == "host"
    argv = _argv("minimal-tcg")
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-cpu") + 1] == "max"


LINKED = """
machines:
  - name: left
    devices: [{driver: odp-nic, id: nic0, props: {mac: "52:54:00:00:0d:0a"}}]
  - name: right
    devices: [{driver: odp-nic, id: nic1}]
links:
  - {a: left.nic0, b: right.nic1}
steps: [{machine: left, exec: 'true'}]
"""


@pytest.mark.parametrize("machine", ["left", "right"])
def test_golden_link(machine: str) -> None:
    sc = parse_scenario(LINKED, "linked.yaml").scenario
    ends = link_ends([(lk.a, lk.b) for lk in sc.links], Path("/RUN/_links"))
    m = next(x for x in sc.machines if x.name == machine)
    paths = VMPaths(Path(f"/RUN/{machine}"), Path(f"/RUN/{machine}"))
    got = "\n".join(build_argv(m, BOOT, paths, "tcg", ends[machine])) + "\n"
    check_golden(GOLDEN / f"link-{machine}.argv", got)


def test_link_ends_cross_over() -> None:
    ends = link_ends([("a.n0", "b.n1")], Path("/S"))
    (ea,), (eb,) = ends["a"], ends["b"]
    assert (ea.device, eb.device) == ("n0", "n1")
    assert ea.local == eb.remote and ea.remote == eb.local


def test_auto_firmware_follows_the_image(tmp_path: Path) -> None:
    elf, bz = tmp_path / "vmlinux", tmp_path / "bzImage"
    elf.write_bytes(b"\x7fELF\x02\x01\x01")
    bz.write_bytes(b"\xeb\x3c" + b"\0" * 0x200 + b"HdrS")
    assert firmware_for(elf) == "qboot"
    assert firmware_for(bz) == "seabios"
    loaded = parse_scenario("machines: [{name: vm0}]\nsteps: [{exec: 'true'}]\n", "fw.yaml")
    machine = loaded.scenario.machines[0]
    assert "bios-microvm.bin" in build_argv(machine, BOOT, PATHS, "tcg")
    seabios_boot = Boot(BOOT.qemu, bz, BOOT.initrd, "seabios")
    assert "-bios" not in build_argv(machine, seabios_boot, PATHS, "tcg")


# Two machines on the management LAN, one with its own topology, a linked NIC and
# qemu_args: the LAN's netdevs and NICs come last, on pcie.0, after all of them.
LAN = """
machines:
  - name: vm0
    topology: [{kind: root-port, id: rp0}]
    devices: [{driver: odp-nic, id: nic0, bus: rp0}]
    qemu_args: [-global, "q35-pcihost.pci-hole64-size=64G"]
  - name: vm1
    viommu: virtio-iommu
    devices: [{driver: odp-nic, id: nic0}]
links:
  - {a: vm0.nic0, b: vm1.nic0}
management_lan: true
steps: [{machine: vm0, exec: 'true'}]
"""


def _lan_argv(text: str, machine: str) -> list[str]:
    sc = parse_scenario(text, "lan.yaml").scenario
    ends = link_ends([(lk.a, lk.b) for lk in sc.links], Path("/RUN/_links"))
    plan = lan_plan(sc, Path("/RUN/_links"))
    m = next(x for x in sc.machines if x.name == machine)
    paths = VMPaths(Path(f"/RUN/{machine}"), Path(f"/RUN/{machine}"))
    return build_argv(m, BOOT, paths, "tcg", ends.get(machine, []), plan.get(machine))


@pytest.mark.parametrize("machine", ["vm0", "vm1"])
def test_golden_lan(machine: str) -> None:
    got = "\n".join(_lan_argv(LAN, machine)) + "\n"
    golden = GOLDEN / f"lan-{machine}.argv"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(got)
    assert got == golden.read_text(), f"argv differs from {golden} (UPDATE_GOLDEN=1 rewrites)"


def test_lan_changes_nothing_but_adding_its_nics() -> None:
    """The LAN only appends: the argv without it is the same scenario's argv, unchanged."""
    without = LAN.replace("management_lan: true", "")
    for machine in ("vm0", "vm1"):
        with_lan, plain = _lan_argv(LAN, machine), _lan_argv(without, machine)
        assert with_lan[: len(plain)] == plain
        extra = with_lan[len(plain):]
        assert extra[0::2] == ["-netdev", "-device"]
        assert extra[3].startswith("virtio-net-pci,id=lan.") and "bus=pcie.0" in extra[3]
        assert "addr=" not in extra[3] and "iommu_platform" not in extra[3]


def test_lan_mtu_is_the_nics_host_mtu() -> None:
    text = LAN.replace("management_lan: true", "management_lan: {mtu: 9000}")
    nics = [a for a in _lan_argv(text, "vm1") if a.startswith("virtio-net-pci,")]
    assert len(nics) == 1 and nics[0].endswith(",host_mtu=9000")
    assert all("host_mtu" not in a for a in _lan_argv(LAN, "vm1"))

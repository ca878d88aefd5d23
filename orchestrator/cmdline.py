"""Building a VM's QEMU command line: a pure function of the machine and its paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .schema import LAN_DEFAULT_MTU, Device, Machine, PropValue, RootPort, Switch

Accel = Literal["kvm", "tcg"]

AGENT_PORT = "org.p2plab.agent.0"


@dataclass(frozen=True)
class VMPaths:
    """Files and sockets of one VM inside its run directory."""

    dir: Path
    sock_dir: Path  # sockets; the run directory unless its path is too long for AF_UNIX

    @property
    def qmp_sock(self) -> Path:
        return self.sock_dir / "qmp.sock"

    @property
    def agent_sock(self) -> Path:
        return self.sock_dir / "agent.sock"

    @property
    def console_sock(self) -> Path:
        return self.sock_dir / "console.sock"

    @property
    def console_log(self) -> Path:
        return self.dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    def disk(self, disk_id: str) -> Path:
        return self.dir / f"disk-{disk_id}.img"

    @property
    def qmp_log(self) -> Path:
        return self.dir / "qmp.log"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def dmesg_log(self) -> Path:
        return self.dir / "dmesg.log"


@dataclass(frozen=True)
class Boot:
    """What to boot: the QEMU binary, kernel, initramfs and kernel command line."""

    qemu: Path
    kernel: Path
    initrd: Path | None
    # The firmware a machine with ``firmware: auto`` gets: qboot for an ELF
    # vmlinux (PVH entry), seabios for a bzImage (see firmware_for()).
    firmware: Literal["qboot", "seabios"] = "qboot"


@dataclass(frozen=True)
class LinkEnd:
    """One machine's end of a link: its NIC, the netdev id, and the two socket paths."""

    device: str
    netdev: str
    local: Path
    remote: Path

    def netdev_arg(self) -> str:
        return (f"dgram,id={self.netdev},local.type=unix,local.path={self.local},"
                f"remote.type=unix,remote.path={self.remote}")


@dataclass(frozen=True)
class LanPort:
    """One machine's NIC on the management LAN: the link to one peer (see lan.py)."""

    peer: str
    peer_address: str
    mac: str
    end: LinkEnd


@dataclass(frozen=True)
class LanMember:
    """One machine's part of the management LAN: its address, a port per peer, the names."""

    name: str
    address: str
    mtu: int
    ports: tuple[LanPort, ...]
    hosts: tuple[tuple[str, str], ...]  # (address, name) of every machine on the LAN


def firmware_for(image: Path) -> Literal["qboot", "seabios"]:
    """qboot for an ELF image (QEMU enters vmlinux through its PVH note), else SeaBIOS."""
    try:
        with image.open("rb") as f:
            return "qboot" if f.read(4) == b"\x7fELF" else "seabios"
    except OSError:
        return "seabios"


def link_ends(links: list[tuple[str, str]], sock_dir: Path) -> dict[str, list[LinkEnd]]:
    """Per machine, its link ends; ``links`` are ``("vmA.nic0", "vmB.nic0")`` pairs."""
    out: dict[str, list[LinkEnd]] = {}
    for i, (a, b) in enumerate(links):
        (ma, da), (mb, db) = a.split(".", 1), b.split(".", 1)
        pa, pb = sock_dir / f"link{i}-{ma}.sock", sock_dir / f"link{i}-{mb}.sock"
        out.setdefault(ma, []).append(LinkEnd(da, f"link{i}", pa, pb))
        out.setdefault(mb, []).append(LinkEnd(db, f"link{i}", pb, pa))
    return out


def _value(v: PropValue) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v).replace(",", ",,")


def device_arg(driver: str, props: dict[str, PropValue]) -> str:
    """``driver,key=value,...`` with commas escaped and booleans as on/off."""
    return ",".join([driver, *(f"{k}={_value(v)}" for k, v in props.items())])


def kernel_cmdline(machine: Machine) -> str:
    """The guest kernel command line: ours (console, IOMMU, panic) plus ``append``."""
    if machine.cmdline is not None:
        return machine.cmdline
    # loglevel=5: the serial console shows warnings and worse (every report the
    # orchestrator watches for); at 115200 baud-equivalent port I/O under TCG the
    # boot chatter alone cost ~0.25 s.  The whole log is kept as dmesg.log.
    # 8250.nr_uarts=1: q35 has one UART; probing four costs time for nothing.
    # no_timer_check: the boot-time check that the timer ticks through the
    # IO-APIC counts ticks against a busy loop; a TCG vCPU thread that the host
    # descheduled (several VMs on two cores) misses them, and with interrupt
    # remapping on the kernel panics ("timer doesn't work through
    # Interrupt-remapped IO-APIC").  KVM guests skip the check the same way.
    parts = ["console=ttyS0", "loglevel=5", "8250.nr_uarts=1", "no_timer_check", "panic=-1"]
    if machine.viommu is not None and machine.viommu.model == "intel-iommu":
        parts.append("intel_iommu=on")
    if machine.append:
        parts.append(machine.append)
    return " ".join(parts)


def _device(dev: Device, netdev: str | None) -> list[str]:
    props: dict[str, PropValue] = {"id": dev.id}
    if dev.bus is not None:
        props["bus"] = dev.bus
    if netdev is not None:
        props["netdev"] = netdev
    props.update(dev.props)
    return ["-device", device_arg(dev.driver, props)]


def lan_args(lan: LanMember) -> list[str]:
    """The management LAN's netdevs and virtio-net NICs, one pair per peer.

    The NICs go on the root bus (pcie.0) with no address: QEMU gives each the
    next free slot, and as they come after everything the scenario adds
    (topology, devices, qemu_args) they can take no slot a scenario device asked
    for, and add no bridge, so the scenario's own buses and addresses stay as
    they are. disable-legacy: no I/O BAR, which would take I/O space from the
    scenario's root ports; romfile empty: no option ROM (nothing boots from it).
    No iommu_platform: like the agent's virtio-serial, the LAN's DMA bypasses
    the vIOMMU (the driver hands the device guest-physical addresses and QEMU
    reads them directly), so it works the same under intel-iommu,
    virtio-iommu or none, costs no IOTLB work per packet, and adds nothing to
    the IOMMU activity a scenario is about.
    """
    args: list[str] = []
    for port in lan.ports:
        props: dict[str, PropValue] = {
            "id": port.end.device, "bus": "pcie.0", "netdev": port.end.netdev,
            "mac": port.mac, "disable-legacy": True, "romfile": "",
        }
        if lan.mtu != LAN_DEFAULT_MTU:
            props["host_mtu"] = lan.mtu  # the guest driver takes it as the MTU at probe
        args += ["-netdev", port.end.netdev_arg(), "-device", device_arg("virtio-net-pci", props)]
    return args


def topology_args(machine: Machine) -> list[str]:
    """Root ports and switches; each port gets its own chassis number unless given."""
    args: list[str] = []
    taken = {e.chassis for e in machine.topology if isinstance(e, RootPort) and e.chassis}
    taken |= {p.chassis for e in machine.topology if isinstance(e, Switch)
              for p in e.downstream if p.chassis}
    counter = 0

    def next_chassis() -> int:
        nonlocal counter
        counter += 1
        while counter in taken:
            counter += 1
        return counter

    for entry in machine.topology:
        if isinstance(entry, RootPort):
            props: dict[str, PropValue] = {
                "id": entry.id,
                "bus": entry.bus or "pcie.0",
                "chassis": entry.chassis if entry.chassis is not None else next_chassis(),
                "slot": entry.slot if entry.slot is not None else 0,
            }
            props.update(entry.props)
            args += ["-device", device_arg("pcie-root-port", props)]
        elif isinstance(entry, Switch):
            props = {"id": entry.id, "bus": entry.bus}
            props.update(entry.props)
            args += ["-device", device_arg("x3130-upstream", props)]
            for slot, port in enumerate(entry.downstream):
                dprops: dict[str, PropValue] = {
                    "id": port.id,
                    "bus": entry.id,
                    "chassis": port.chassis if port.chassis is not None else next_chassis(),
                    "slot": port.slot if port.slot is not None else slot,
                }
                dprops.update(port.props)
                args += ["-device", device_arg("xio3130-downstream", dprops)]
    return args


def build_argv(
    machine: Machine,
    boot: Boot,
    paths: VMPaths,
    accel: Accel,
    links: Sequence[LinkEnd] = (),
    lan: LanMember | None = None,
) -> list[str]:
    """The complete argv for one VM. Pure: no file system access, no environment."""
    argv = [str(boot.qemu), "-name", f"guest={machine.name},debug-threads=on"]
    argv += ["-machine", "q35"]
    if accel == "kvm":
        split = machine.viommu is not None and machine.viommu.model == "intel-iommu"
        argv += ["-accel", "kvm,kernel-irqchip=split" if split else "kvm"]
    else:
        argv += ["-accel", "tcg"]
    argv += ["-cpu", machine.cpu or ("host" if accel == "kvm" else "max")]
    argv += ["-m", str(machine.memory) + ("M" if isinstance(machine.memory, int) else "")]
    argv += ["-smp", str(machine.cpus)]
    argv += ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
    # PCIe hot-plug is native (pciehp on the root ports), as on real PCIe
    # hardware.  q35's default, ACPI hot-plug, puts AML for every slot into the
    # DSDT, which the guest interprets at boot: 45-70 ms of acpi_init under TCG.
    argv += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    firmware = boot.firmware if machine.firmware == "auto" else machine.firmware
    if firmware == "qboot":
        argv += ["-bios", "bios-microvm.bin"]  # found through the wrapper's -L paths
    if machine.viommu is not None:
        driver = "intel-iommu" if machine.viommu.model == "intel-iommu" else "virtio-iommu-pci"
        argv += ["-device", device_arg(driver, dict(machine.viommu.options))]
    argv += ["-kernel", str(boot.kernel)]
    if boot.initrd is not None:
        argv += ["-initrd", str(boot.initrd)]
    argv += ["-append", kernel_cmdline(machine)]
    argv += [
        "-chardev",
        f"socket,id=con0,path={paths.console_sock},server=on,wait=off,"
        f"logfile={paths.console_log},logappend=off",
        "-serial",
        "chardev:con0",
        "-chardev",
        f"socket,id=qmp0,path={paths.qmp_sock},server=on,wait=off",
        "-mon",
        "chardev=qmp0,mode=control",
        "-device",
        "virtio-serial-pci,id=vser0",
        "-chardev",
        f"socket,id=agent0,path={paths.agent_sock},server=on,wait=off",
        "-device",
        f"virtserialport,bus=vser0.0,chardev=agent0,name={AGENT_PORT}",
    ]
    argv += topology_args(machine)
    for disk in machine.disks:
        argv += ["-blockdev",
                 f"driver=file,node-name={disk.id},filename={paths.disk(disk.id)}"]
    netdevs = {end.device: end.netdev for end in links}
    for end in links:
        argv += ["-netdev", end.netdev_arg()]
    for dev in machine.devices:
        argv += _device(dev, netdevs.get(dev.id))
    argv += machine.qemu_args
    if lan is not None:
        argv += lan_args(lan)
    return argv

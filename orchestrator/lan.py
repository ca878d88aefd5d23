"""The management LAN: a network between a scenario's machines for what tools say over TCP.

Two-machine RDMA tools (ibv_rc_pingpong, perftest) exchange their connection
data over a socket; a scenario with ``management_lan`` gives its machines a
network for that, apart from the devices under test:

* Transport: for each pair of machines, a virtio-net NIC in each, joined by a
  ``-netdev dgram`` over two unix sockets in the run directory, as ``links``
  join NICs. Unix datagram sockets are point to point, hence a full mesh: one
  NIC per peer. Nothing touches the host's network.
* Addresses: the N-th machine of the LAN (1-based) is ``169.254.100.N``. It puts
  that one address on each of its NICs as a /32, with a /32 host route to the
  peer through that NIC: no subnet, so with N-1 NICs there is no ambiguity to
  route.  Not ``ip addr add A peer B``: RoCE (rxe on this LAN) builds its GIDs
  from each address's ``ifa_address``, which for a point-to-point address is
  the peer's, so rxe would take the peer's GID for its own.
* MACs: ``02:70:6c:4c:NN:PP`` (hex) on machine NN's NIC towards machine PP,
  locally administered: the guest finds the NIC for each peer by its MAC.
* Names: each guest gets an ``/etc/hosts`` with every machine's name, its
  hostname set to its machine name, and loopback up, so a step can run
  ``nc vm1 7000`` or ``ib_write_bw vm0``.

:func:`lan_plan` is pure (the argv side is :func:`~orchestrator.cmdline.lan_args`);
:func:`guest_script` is what the guest runs once its agent is up.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .cmdline import LanMember, LanPort, LinkEnd
from .schema import Scenario

LAN_PREFIX = "169.254.100."
MAC_PREFIX = "02:70:6c:4c"  # locally administered; 70:6c is "pl"


def lan_address(n: int) -> str:
    """The address of the ``n``-th machine of the LAN (1-based)."""
    return f"{LAN_PREFIX}{n}"


def lan_mac(n: int, peer: int) -> str:
    """The MAC of machine ``n``'s NIC towards machine ``peer`` (both 1-based)."""
    return f"{MAC_PREFIX}:{n:02x}:{peer:02x}"


def lan_members(sc: Scenario) -> list[str]:
    """The machines on the scenario's LAN, in address order (none without a LAN)."""
    if sc.management_lan is None:
        return []
    if sc.management_lan.machines is not None:
        return list(sc.management_lan.machines)
    return [m.name for m in sc.machines]


def lan_plan(sc: Scenario, sock_dir: Path) -> dict[str, LanMember]:
    """Per machine on the LAN, its part: address, a port per peer, every machine's name.

    Machine n's end of the link to machine p binds ``lan{n}-{p}.sock`` and sends
    to ``lan{p}-{n}.sock`` (short names: AF_UNIX paths are limited).
    """
    members = lan_members(sc)
    if sc.management_lan is None or not members:
        return {}
    hosts = tuple((lan_address(n), name) for n, name in enumerate(members, 1))
    plan: dict[str, LanMember] = {}
    for n, name in enumerate(members, 1):
        ports = tuple(
            LanPort(peer, lan_address(p), lan_mac(n, p),
                    LinkEnd(f"lan.{peer}", f"lan.{peer}",  # a "." no scenario id can have
                            sock_dir / f"lan{n}-{p}.sock", sock_dir / f"lan{p}-{n}.sock"))
            for p, peer in enumerate(members, 1) if p != n
        )
        plan[name] = LanMember(name, lan_address(n), sc.management_lan.mtu, ports, hosts)
    return plan


# The guest side runs through the agent once it is up, not from /init with
# the plan on the kernel command line, because:
# - the cost is the same forks either way: a busybox `ip` per peer is the only
#   one that cannot be a shell builtin; the agent adds one `sh` and a round trip
#   over virtio-serial, about 10 ms under TCG (measured), of about 0.13 s for
#   the whole set-up with one peer (the first `ip` about 40 ms, lo and the NIC
#   coming up about 20 ms each: kernel work that /init would pay too);
# - a failure comes back as an exit status and stderr, so a LAN that cannot be
#   set up ends the run at boot with the guest's own words (GuestSetupError),
#   where /init could only print to a console nobody reads;
# - nothing changes in /init, the initramfs or the kernel command line:
#   scenarios without the LAN boot exactly as before, and any initramfs with
#   our agent and busybox (a scenario's own `initrd`, a `cmdline` override) works.
# Everything else is a builtin: read and echo on /sys/class/net/*/address to
# find a NIC by MAC, on .../flags to bring it up (IFF_UP; the kernel then adds
# the peer route), on /proc/sys/kernel/hostname; printf for /etc/hosts.
_SCRIPT = """\
set -e
echo {name} > /proc/sys/kernel/hostname
printf '%s\\n' {hosts} > /etc/hosts
[ -e /etc/nsswitch.conf ] || echo 'hosts: files' > /etc/nsswitch.conf
up() {{ read -r f < "$1/flags"; echo $((f | 1)) > "$1/flags"; }}
up /sys/class/net/lo
port() {{
    for d in /sys/class/net/*; do
        [ -r "$d/address" ] || continue
        read -r m < "$d/address"
        [ "$m" = "$1" ] || continue
        ip addr add {address}/32 dev "${{d##*/}}" && up "$d" &&
            ip route add "$2"/32 dev "${{d##*/}}" src {address} && return 0
        echo "cannot configure ${{d##*/}} (MAC $1), the link to $3" >&2
        exit 1
    done
    echo "no interface with MAC $1, the link to $3" >&2
    exit 1
}}
"""


def guest_script(lan: LanMember) -> str:
    """The shell script (busybox sh) that applies ``lan`` in its machine's guest."""
    hosts = ["127.0.0.1 localhost", *(f"{addr} {name}" for addr, name in lan.hosts)]
    script = _SCRIPT.format(name=shlex.quote(lan.name), address=lan.address,
                            hosts=" ".join(shlex.quote(h) for h in hosts))
    for port in lan.ports:
        script += f"port {port.mac} {port.peer_address} {shlex.quote(port.peer)}\n"
    return script

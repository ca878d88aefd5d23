"""p2p-gpu under the real Linux PCI core: sysfs resource2_resize and BAR access.

Boots the built guest kernel (TCG, about 2 s) with a one-shot /init appended to
the guest initramfs.  The kernel's pci_resize_resource() must drive the ReBAR
capability unchanged, reassign BAR2, and the device must see the new size;
then devmem maps a window, writes through BAR2 and switches to direct mode.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.artifacts import require
from tests.support.qtest import QEMU, REPO

GUEST = REPO / "build" / "guest" / "default"
MARK = "P2PGPU"

INIT = r"""#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x5032 ] && D=$d
done
r2() { sed -n 3p $D/resource; }
b0() { echo $(($(sed -n 1p $D/resource | cut -d' ' -f1))); }  # a resize may move BAR0 too
echo "P2PGPU class $(cat $D/class) sizes $(cat $D/resource2_resize) bar2 $(r2)"
echo 1 > $D/enable
for idx in 10 8 9; do
  echo $idx > $D/resource2_resize && st=ok || st=fail
  B0=$(b0)
  echo "P2PGPU resize $idx $st bar2 $(r2) reg $(devmem $((B0 + 0x18)) 32)"
done
B2=$(($(r2 | cut -d' ' -f1)))
devmem $((B0 + 0x110)) 32 0x400000
devmem $((B0 + 0x118)) 32 0xffffffff
devmem $((B0 + 0x11c)) 32 1
devmem $B2 32 0xcafef00d
echo "P2PGPU map $(devmem $((B0 + 0x120)) 32) $(devmem $B2 32) $(devmem $((B2 + 0x200000)) 32)"
echo 10 > $D/resource2_resize
echo 1 > $D/enable
B0=$(b0)
B2=$(($(r2 | cut -d' ' -f1)))
devmem $((B0 + 0x100)) 32 1
echo "P2PGPU direct $(devmem $((B0 + 0x120)) 32) $(devmem $((B2 + 0x400000)) 32)"
echo "P2PGPU done"
poweroff -f
"""


def _initrd(tmp: Path) -> Path:
    """The guest initramfs with our /init appended (a later cpio member wins)."""
    root = tmp / "overlay"
    root.mkdir()
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    extra = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=b"init\n",
                           capture_output=True, check=True).stdout
    out = tmp / "initrd.gz"
    gz = subprocess.run(["gzip", "-1"], input=extra, capture_output=True, check=True).stdout
    out.write_bytes((GUEST / "initramfs.cpio").read_bytes() + gz)
    return out


@pytest.mark.integration
def test_linux_resizes_bar2_through_sysfs(tmp_path: Path) -> None:
    require(GUEST / "bzImage", "kernel")
    require(GUEST / "initramfs.cpio", "guest")
    res = subprocess.run(
        [str(QEMU), "-machine", "q35", "-accel", "tcg", "-m", "512M", "-nodefaults",
         "-display", "none", "-serial", "stdio", "-no-reboot",
         "-kernel", str(GUEST / "bzImage"), "-initrd", str(_initrd(tmp_path)),
         "-append", "console=ttyS0 quiet rdinit=/init",
         "-device", "p2p-gpu,addr=04.0,vram-size=1G,bar-size=256M,rebar-min=256M"],
        capture_output=True, text=True, timeout=120, check=False)
    lines = [ln.strip() for ln in res.stdout.splitlines() if ln.startswith(MARK)]
    assert f"{MARK} done" in lines, res.stdout[-3000:]
    first = lines[0].split()
    assert first[2] == "0x030200"
    assert int(first[4], 16) == 0x700                   # 256 MiB, 512 MiB, 1 GiB
    assert int(first[8], 16) & 0xC == 0xC               # 64-bit prefetchable
    for want, line in zip((1 << 30, 256 << 20, 512 << 20),
                          [ln for ln in lines if " resize " in ln], strict=True):
        f = line.split()
        assert f[3] == "ok", line
        start, end = int(f[5], 16), int(f[6], 16)
        assert end - start + 1 == want and start % want == 0, line
        assert int(f[9], 16) == want & 0xFFFFFFFF, line  # BAR2_SIZE as the device sees it
    m = re.search(rf"{MARK} map (\S+) (\S+) (\S+)", "\n".join(lines))
    assert m and [int(x, 16) for x in m.groups()] == [0, 0xCAFEF00D, 0xFFFFFFFF], lines
    m = re.search(rf"{MARK} direct (\S+) (\S+)", "\n".join(lines))
    assert m and [int(x, 16) for x in m.groups()] == [0, 0xCAFEF00D], lines

#!/bin/bash
# Build what runs inside one kernel's guest and pack it into
# build/guest/NAME/initramfs.cpio.gz: busybox-static, our init, the agent, the
# kernel's modules plus our out-of-tree drivers (guest/drivers/*) built against
# that kernel, its hmm-tests and our static tools (guest/tools/*.c).  Cheap
# (seconds), so it lives in build/, not the cache.
# Usage: build-guest.sh NAME   (a kernel built by build-kernel.sh NAME)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: build-guest.sh NAME (e.g. 7.2, 6.12, 7.2-debug)}
out=$repo/build/guest/$name
kbuild=$out/kernel-build
[ -f "$kbuild/.p2plab-built" ] || { echo "build-guest: no kernel build at $kbuild: run 'scripts/build-kernel.sh $name'"; exit 1; }
krel=$(cat "$kbuild/include/config/kernel.release")
busybox=${BUSYBOX:-/bin/busybox}
cflags=(-static -O2 -Wall -Wextra -Werror -I "$repo/qemu-devices/include" -I "$kbuild/usr/include")

# 1. Out-of-tree drivers, each built from a copy so the work tree stays clean.
mods=()
for d in "$repo"/guest/drivers/*/; do
    [ -f "$d/Kbuild" ] || continue
    drv=$(basename "$d")
    mkdir -p "$out/drivers"
    rsync -a --delete --exclude "*.o" --exclude "*.ko" "$d" "$out/drivers/$drv/"
    make -s -C "$kbuild" M="$out/drivers/$drv" P2PLAB_ROOT="$repo" modules
    mods+=("$out/drivers/$drv"/*.ko)
done

# 2. Static tools and the agent.
mkdir -p "$out/tools"
gcc "${cflags[@]}" -o "$out/tools/p2plab-agent" "$repo/guest/agent/p2plab-agent.c"
for c in "$repo"/guest/tools/*.c; do
    [ -f "$c" ] || continue
    gcc "${cflags[@]}" $(for u in "$repo"/guest/drivers/*/uapi; do [ -d "$u" ] && echo "-I$u"; done) \
        -o "$out/tools/$(basename "$c" .c)" "$c" -lpthread
done

# 3. The root filesystem.
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,lib/modules}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 755 "$repo/guest/initramfs/init" "$root/init"
install -m 755 "$out/tools/p2plab-agent" "$root/sbin/p2plab-agent"
for t in "$out"/tools/*; do
    [ "$(basename "$t")" = p2plab-agent ] || install -m 755 "$t" "$root/usr/bin/"
done
install -m 755 "$kbuild/hmm-tests" "$root/usr/bin/hmm-tests"
for sh in "$repo"/guest/tools/*.sh; do
    [ -f "$sh" ] && install -m 755 "$sh" "$root/usr/bin/$(basename "$sh" .sh)"
done
cp -a "$kbuild/modroot/lib/modules/$krel" "$root/lib/modules/"
rm -f "$root/lib/modules/$krel/build" "$root/lib/modules/$krel/source"
if [ "${#mods[@]}" -gt 0 ]; then
    mkdir -p "$root/lib/modules/$krel/extra"
    cp "${mods[@]}" "$root/lib/modules/$krel/extra/"
fi
depmod -b "$root" "$krel"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible) \
    | gzip -1 > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "build-guest[$name]: $out/initramfs.cpio.gz ($(du -h "$out/initramfs.cpio.gz" | cut -f1), kernel $krel, ${#mods[@]} p2plab modules)"

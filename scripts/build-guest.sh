#!/bin/bash
# Build what runs inside one kernel's guest and pack it into
# build/guest/NAME/initramfs.cpio: busybox-static, our init, the agent, the
# kernel's modules plus our out-of-tree drivers (guest/drivers/*) built against
# that kernel, its hmm-tests, our static tools (guest/tools/*.c), and the RDMA
# userspace (build/rdma, scripts/build-rdma.sh) with its shared libraries,
# appended uncompressed.
# Cheap (seconds), so it lives in build/, not the cache.
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

# 4. The RDMA userspace: rdma-core's tools and providers and perftest
# (scripts/build-rdma.sh), and iproute2's rdma from the host, in a root of its
# own.  They are dynamically linked, and so may be any program above: every
# ELF file gets its libraries, from the stage first, else from the host
# (glibc among them), each under its soname in the multiarch libdir, which
# the loader searches without an ld.so.cache.
rdma=$repo/build/rdma
[ -f "$rdma/.p2plab-built" ] || { echo "build-guest: no RDMA userspace at $rdma: run 'scripts/build-rdma.sh'"; exit 1; }
libdir=$(sed -n 's/.*"libdir": "\([^"]*\)".*/\1/p' "$rdma/rdma.json")
provdir=$(sed -n 's/.*"provider_dir": "\([^"]*\)".*/\1/p' "$rdma/rdma.json")
dyn=$out/rootfs-rdma
rm -rf "$dyn"
mkdir -p "$dyn"
cp -a "$rdma/stage/." "$dyn/"
install -m 755 /usr/bin/rdma "$dyn/usr/bin/rdma"
strip "$dyn/usr/bin/rdma"
# Our verbs tools (guest/tools/rdma/*.c: odpnic-test, odpnic-bench), linked
# against that libibverbs like any RDMA application.
rdma_inc=$(sed -n 's/.*"include": "\([^"]*\)".*/\1/p' "$rdma/rdma.json")
rdma_lib=$(sed -n 's/.*"lib": "\([^"]*\)".*/\1/p' "$rdma/rdma.json")
for c in "$repo"/guest/tools/rdma/*.c; do
    [ -f "$c" ] || continue
    gcc -O2 -Wall -Wextra -Werror -I "$rdma_inc" -I "$kbuild/usr/include" \
        $(for u in "$repo"/guest/drivers/*/uapi; do [ -d "$u" ] && echo "-I$u"; done) \
        -o "$dyn/usr/bin/$(basename "$c" .c)" "$c" -L "$rdma_lib" -libverbs -lpthread
done
elf_needed() { objdump -p "$1" | sed -n 's/^ *NEEDED *//p'; }
find_lib() {
    local d
    for d in "$rdma/stage$libdir" /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib64 /usr/lib64; do
        [ -e "$d/$1" ] && { readlink -f "$d/$1"; return 0; }
    done
    return 1
}
queue=()
for f in "$root"/{bin,sbin,usr/bin,usr/sbin}/* "$dyn"/usr/bin/* "$dyn$libdir"/*.so.* "$dyn$provdir"/*.so; do
    [ -f "$f" ] && [ ! -L "$f" ] && [ "$(head -c 4 "$f")" = $'\x7fELF' ] && queue+=("$f")
done
interp=
while [ ${#queue[@]} -gt 0 ]; do
    elf=${queue[0]}; queue=("${queue[@]:1}")
    [ -n "$interp" ] || interp=$(readelf -l "$elf" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
    for lib in $(elf_needed "$elf"); do
        # libc names the loader, which is already mapped by then: no copy.
        [ -e "$dyn$libdir/$lib" ] || [ "$lib" = "$(basename "$interp")" ] && continue
        src=$(find_lib "$lib") || { echo "build-guest: $elf needs $lib, found neither in $rdma/stage nor on the host"; exit 1; }
        install -m 644 "$src" "$dyn$libdir/$lib"
        strip --strip-unneeded "$dyn$libdir/$lib"
        queue+=("$dyn$libdir/$lib")
    done
done
[ -n "$interp" ] || { echo "build-guest: no dynamically linked program, yet the RDMA tools are"; exit 1; }
mkdir -p "$dyn$(dirname "$interp")"
install -m 755 "$(readlink -f "$interp")" "$dyn$interp"

# The image: two stored (uncompressed) cpio archives, the root and then the
# RDMA root (the kernel unpacks concatenated archives in turn).  Inflating is
# what costs under TCG: gzip -1 of the root alone cost 7.2's boot about 75 ms
# (initcall_debug, bench/guest_boot.py), and the RDMA root's 5 MB another
# 0.12-0.17 s; stored, QEMU copies the bytes and the kernel only parses them.
# A stored archive must start 4-byte aligned; the kernel skips the NULs.
cpio_of() { (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --reproducible); }
rm -f "$out/initramfs.cpio.gz"
cpio_of "$root" > "$out/initramfs.cpio.tmp"
truncate -s %4 "$out/initramfs.cpio.tmp"
cpio_of "$dyn" >> "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
echo "build-guest[$name]: $out/initramfs.cpio ($(du -h "$out/initramfs.cpio" | cut -f1), kernel $krel, ${#mods[@]} p2plab modules)"

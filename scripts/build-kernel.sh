#!/bin/bash
# Build the guest kernel (Linux 6.12 LTS from Debian's linux-source-6.12, or
# KERNEL_SRC=<dir>) with guest/kernel/p2plab.config, out of tree in the cache,
# keyed by the source version, the fragment and the recipe version below.  Also builds the
# kernel's own HMM selftest (hmm-tests, static) from the same tree.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${P2PLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/p2plab}
fragment=$repo/guest/kernel/p2plab.config
out=$repo/build/guest
mkdir -p "$cache/kernel" "$cache/src" "$out"
exec 9>"$cache/kernel.lock"
flock 9

if [ -n "${KERNEL_SRC:-}" ]; then
    src=$(cd "$KERNEL_SRC" && pwd)
    srcid="$src $(git -C "$src" rev-parse HEAD 2>/dev/null || stat -c %Y "$src/Makefile")"
else
    tarball=/usr/src/linux-source-6.12.tar.xz
    [ -f "$tarball" ] || { echo "build-kernel: $tarball missing: run 'make deps' (package linux-source-6.12)"; exit 1; }
    pkgver=$(dpkg-query -W -f '${Version}' linux-source-6.12)
    src=$cache/src/linux-source-6.12-$pkgver
    if [ ! -f "$src/.p2plab-unpacked" ]; then
        echo "build-kernel: unpacking $tarball ($pkgver)"
        rm -rf "$src" "$src.tmp" && mkdir -p "$src.tmp"
        tar -xf "$tarball" -C "$src.tmp" --strip-components=1
        mv "$src.tmp" "$src" && touch "$src/.p2plab-unpacked"
    fi
    srcid="linux-source-6.12 $pkgver"
fi

# Bump RECIPE when a change here alters what gets built (not for cosmetic edits).
RECIPE=1
key=$( (echo "$srcid recipe=$RECIPE"; cat "$fragment") | sha256sum | cut -c1-16)
bld=$cache/kernel/build-$key
kmake() { make -C "$src" O="$bld" -j"$(nproc)" "$@"; }

if [ ! -f "$bld/.p2plab-config-done" ]; then
    echo "build-kernel: configuring in $bld"
    mkdir -p "$bld"
    kmake -s x86_64_defconfig
    kmake -s kvm_guest.config
    (cd "$bld" && "$src/scripts/kconfig/merge_config.sh" -m -O "$bld" "$bld/.config" "$fragment" >/dev/null)
    kmake -s olddefconfig
    # Kconfig silently drops a symbol whose dependencies fail: catch that here.
    missing=0
    while IFS= read -r line; do
        case "$line" in CONFIG_*=[ym]) grep -qx "$line" "$bld/.config" || { echo "build-kernel: not set: $line"; missing=1; } ;; esac
    done < "$fragment"
    [ "$missing" = 0 ] || exit 1
    touch "$bld/.p2plab-config-done"
fi

if [ ! -f "$bld/.p2plab-built" ]; then
    echo "build-kernel: building bzImage and modules ($(nproc) jobs)"
    kmake -s bzImage modules   # -s: no per-file lines; warnings and errors still show
    rm -rf "$bld/modroot"
    kmake -s modules_install INSTALL_MOD_PATH="$bld/modroot" INSTALL_MOD_STRIP=1 DEPMOD=/bin/true
    kmake -s headers_install INSTALL_HDR_PATH="$bld/usr"
    touch "$bld/.p2plab-built"
fi

# The kernel's own HMM selftest, static, from the same tree.
if [ ! -x "$bld/hmm-tests" ] || [ "$src/tools/testing/selftests/mm/hmm-tests.c" -nt "$bld/hmm-tests" ]; then
    gcc -static -O2 -I "$src/tools/testing/selftests" -I "$src" -I "$bld/usr/include" \
        -I "$src/tools/include/uapi" -o "$bld/hmm-tests" \
        "$src/tools/testing/selftests/mm/hmm-tests.c" -lpthread
fi

# Stale trees (other keys, unused for a week) are dropped; the current one is marked used.
touch "$bld"
find "$cache/kernel" -mindepth 1 -maxdepth 1 -name 'build-*' ! -path "$bld" \
    ! -newermt '-7 days' -exec rm -rf {} + 2>/dev/null || true

ln -sfn "$bld" "$out/kernel-build"
ln -sfn "$bld/arch/x86/boot/bzImage" "$out/bzImage"
echo "build-kernel: $out/bzImage -> $bld ($(cat "$bld/include/config/kernel.release"))"

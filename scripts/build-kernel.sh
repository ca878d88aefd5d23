#!/bin/bash
# Build one guest kernel, out of tree in the cache, keyed by its inputs.
#
# Usage: build-kernel.sh NAME
#   NAME is SERIES[-debug]: 7.2, 6.12, 7.2-debug ...  The tree is Debian's
#   linux-source-SERIES (scripts/fetch-linux-src.sh; the newest served SERIES.x,
#   or the newest served series of the same major when SERIES is gone, with a
#   notice).  With KERNEL_SRC=<dir>, that tree is built instead, under NAME.
#
# Config: x86_64_defconfig + kvm_guest.config + guest/kernel/p2plab.config
#   + guest/kernel/<series>.config (if present) + guest/kernel/debug.config
#   (for -debug).  Every =y/=m line of those fragments is checked after
#   olddefconfig, since Kconfig silently drops a symbol whose dependencies fail,
#   and so is every "is not set" line, since a select silently brings one back.
#
# Result: build/guest/NAME/{bzImage,kernel-build,kernel.json}; hmm-tests
# (static, from the same tree) lives in the kernel build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${P2PLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/p2plab}
name=${1:?usage: build-kernel.sh NAME (e.g. 7.2, 6.12, 7.2-debug)}
case $name in
    *-debug) series=${name%-debug} flavour=debug ;;
    *) series=$name flavour=release ;;
esac
out=$repo/build/guest/$name
mkdir -p "$cache/kernel" "$cache/src/linux" "$out"
log() { echo "build-kernel[$name]: $*"; }

package="" version="" notice="" used_series=$series
if [ -n "${KERNEL_SRC:-}" ]; then
    src=$(cd "$KERNEL_SRC" && pwd)
    srcid="$src $(git -C "$src" rev-parse HEAD 2>/dev/null || stat -c %Y "$src/Makefile")"
    used_series=$(make -s -C "$src" kernelversion | cut -d. -f1,2)
else
    # One fetch at a time: two kernels of one series share the unpacked tree.
    while IFS='=' read -r k v; do
        case $k in src) src=$v ;; package) package=$v ;; version) version=$v ;;
                   series) used_series=$v ;; notice) notice=$v ;; esac
    done < <(flock "$cache/src/linux.lock" "$repo/scripts/fetch-linux-src.sh" "$series" "$cache/src/linux")
    [ -n "${src:-}" ] || { log "no source tree"; exit 1; }
    srcid="$package $version"
fi

fragments=("$repo/guest/kernel/p2plab.config")
[ -f "$repo/guest/kernel/$used_series.config" ] && fragments+=("$repo/guest/kernel/$used_series.config")
[ "$flavour" = debug ] && fragments+=("$repo/guest/kernel/debug.config")

# Bump RECIPE when a change here alters what gets built (not for cosmetic edits).
RECIPE=2
key=$( (echo "$srcid recipe=$RECIPE"; for f in "${fragments[@]}"; do echo "== $(basename "$f")"; cat "$f"; done) \
      | sha256sum | cut -c1-16)
bld=$cache/kernel/build-$used_series-$flavour-$key
# Kernels with other keys build in parallel (make -j); the same key waits.
exec 9>"$bld.lock"
flock 9
kmake() { make -C "$src" O="$bld" -j"$(nproc)" "$@"; }

if [ ! -f "$bld/.p2plab-config-done" ]; then
    rm -rf "$bld"
    # A new key is usually a small change to a fragment: start from the newest
    # finished tree of the same source and flavour, so kbuild's per-symbol
    # dependencies rebuild only what the change touches.
    seed=$(ls -1dt "$cache"/kernel/build-"$used_series-$flavour"-*/ 2>/dev/null | while read -r d; do
        [ -f "$d/.p2plab-built" ] && [ "$(cat "$d/.p2plab-srcid" 2>/dev/null)" = "$srcid" ] && { echo "${d%/}"; break; }
    done || true)
    if [ -n "$seed" ]; then
        log "seeding $bld from $(basename "$seed")"
        cp -a "$seed" "$bld.tmp" && rm -f "$bld.tmp"/.p2plab-* && mv "$bld.tmp" "$bld"
    fi
    log "configuring $srcid ($flavour) in $bld"
    mkdir -p "$bld"
    echo "$srcid" > "$bld/.p2plab-srcid"
    kmake -s x86_64_defconfig
    kmake -s kvm_guest.config
    (cd "$bld" && "$src/scripts/kconfig/merge_config.sh" -m -O "$bld" "$bld/.config" "${fragments[@]}" >/dev/null)
    kmake -s olddefconfig
    missing=0
    for f in "${fragments[@]}"; do
        while IFS= read -r line; do
            case "$line" in
                CONFIG_*=[ym]) grep -qx "$line" "$bld/.config" \
                    || { log "not set after olddefconfig: $line ($(basename "$f"))"; missing=1; } ;;
                # A trim that another symbol selects back in is a lie in the fragment
                # (only a warning for a user's own tree, whose Kconfig may differ).
                "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
                    ! grep -q "^$sym=" "$bld/.config" || {
                        log "still set after olddefconfig: $line ($(basename "$f"))"
                        [ -n "${KERNEL_SRC:-}" ] || missing=1; } ;;
            esac
        done < "$f"
    done
    [ "$missing" = 0 ] || exit 1
    touch "$bld/.p2plab-config-done"
fi

if [ ! -f "$bld/.p2plab-built" ]; then
    log "building bzImage and modules ($(nproc) jobs)"
    start=$(date +%s)
    kmake -s bzImage modules   # -s: no per-file lines; warnings and errors still show
    rm -rf "$bld/modroot" "$bld/usr"
    kmake -s modules_install INSTALL_MOD_PATH="$bld/modroot" INSTALL_MOD_STRIP=1 DEPMOD=/bin/true
    kmake -s headers_install INSTALL_HDR_PATH="$bld/usr"
    touch "$bld/.p2plab-built"
    log "built in $(( $(date +%s) - start )) s"
fi

# The kernel's own HMM selftest, static, built by its own kselftest Makefile
# (which knows the helpers each version links in: vm_util.c, hugepage_settings.c ...).
# On the debug flavour every case runs many times slower under TCG, and the
# harness kills a case after a fixed TEST_TIMEOUT_DEFAULT (30 s) with no
# run-time override: its hmm-tests gets a copy of kselftest_harness.h with that
# default scaled 4x, as the orchestrator scales its own timeouts on debug kernels.
st=$bld/selftests/mm
harness_timeout=30
[ "$flavour" = debug ] && harness_timeout=120
extra=(-static)
if [ "$harness_timeout" != 30 ]; then
    mkdir -p "$bld/selftests/harness"
    sed "s/^#define TEST_TIMEOUT_DEFAULT 30\$/#define TEST_TIMEOUT_DEFAULT $harness_timeout/" \
        "$src/tools/testing/selftests/kselftest_harness.h" > "$bld/selftests/harness/kselftest_harness.h"
    grep -q "TEST_TIMEOUT_DEFAULT $harness_timeout\$" "$bld/selftests/harness/kselftest_harness.h" \
        || { log "cannot scale kselftest_harness.h's TEST_TIMEOUT_DEFAULT"; exit 1; }
    extra+=(-I "$bld/selftests/harness")
fi
if [ ! -x "$st/hmm-tests" ] || [ ! -f "$st/.timeout-$harness_timeout" ] \
        || [ "$src/tools/testing/selftests/mm/hmm-tests.c" -nt "$st/hmm-tests" ]; then
    mkdir -p "$st"
    rm -f "$st/hmm-tests" "$st"/.timeout-*
    make -s -C "$src/tools/testing/selftests/mm" OUTPUT="$st" KHDR_INCLUDES="-isystem $bld/usr/include" \
        EXTRA_CFLAGS="${extra[*]}" "$st/hmm-tests" > "$st/build.log" 2>&1 \
        || { cat "$st/build.log"; log "hmm-tests did not build"; exit 1; }
    touch "$st/.timeout-$harness_timeout"
fi
ln -sfn "$st/hmm-tests" "$bld/hmm-tests"

# Stale trees (other keys, unused for a week) are dropped; the current one is marked used.
touch "$bld"
find "$cache/kernel" -mindepth 1 -maxdepth 1 -name 'build-*' ! -name '*.lock' ! -path "$bld" \
    ! -newermt '-7 days' -exec rm -rf {} + 2>/dev/null || true

release=$(cat "$bld/include/config/kernel.release")
ln -sfn "$bld" "$out/kernel-build"
ln -sfn "$bld/arch/x86/boot/bzImage" "$out/bzImage"
ln -sfn "$bld/vmlinux" "$out/vmlinux"
python3 - "$out/kernel.json" name="$name" flavour="$flavour" series_requested="$series" \
    series="$used_series" source="${KERNEL_SRC:+$src}" package="$package" package_version="$version" \
    release="$release" notice="$notice" build_dir="$bld" fragments="${fragments[*]##*/}" <<'PY'
import json, sys
info = dict(a.split("=", 1) for a in sys.argv[2:])
info["source"] = info["source"] or "debian"
info["fragments"] = info["fragments"].split()
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
PY
[ -z "$notice" ] || log "NOTICE: $notice"
log "$out/bzImage -> $release ($flavour)"

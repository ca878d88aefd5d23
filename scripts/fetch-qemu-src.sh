#!/bin/bash
# Obtain the pinned QEMU source (Debian's qemu source package, series
# QEMU_SERIES, default 10.2) without touching the system's apt configuration,
# and unpack it with Debian's patches applied.
# Usage: fetch-qemu-src.sh DESTDIR   -> prints the unpacked source dir
#
# The newest listed 10.2.x whose files the mirror really serves is taken.  If
# no 10.2.x is served any more, the newest served release of the same major
# is taken instead, and the build output says so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/debian-apt.sh"
dest=$1
series=${QEMU_SERIES:-10.2}
mkdir -p "$dest"
dapt_init fetch-qemu-src

listed=$(dapt_versions src qemu | grep -v '~rc' || true)
pinned=$(grep -E "^([0-9]+:)?${series//./\\.}\." <<<"$listed" || true)
major=${series%%.*}
others=$(grep -E "^([0-9]+:)?${major}\." <<<"$listed" | grep -vxF -f <(printf '%s\n' "$pinned") || true)

unpack() {
    local ver=$1 upstream srcdir dsc
    upstream=${ver#*:}; upstream=${upstream%%-*}; upstream=${upstream%+ds*}
    srcdir=$dest/qemu-$upstream
    if [ ! -f "$srcdir/.p2plab-unpacked" ]; then
        dapt_download src qemu "$ver" "$dest/dl-$upstream" || return 1
        dsc=$(ls -1 "$dest/dl-$upstream"/qemu_*.dsc | head -1)
        rm -rf "$srcdir"
        dpkg-source -x "$dsc" "$srcdir" >"$dest/dl-$upstream/unpack.log" 2>&1 \
            || { dapt_log "dpkg-source -x $dsc failed: $(tail -3 "$dest/dl-$upstream/unpack.log")"; return 1; }
        rm -f "$dest/dl-$upstream"/*.tar.*
        touch "$srcdir/.p2plab-unpacked"
    fi
    echo "$srcdir"
}

for ver in $pinned; do
    unpack "$ver" && exit 0
    dapt_log "qemu $ver is listed but the mirror did not serve it; trying an older one"
done
for ver in $others; do
    if out=$(unpack "$ver"); then
        dapt_log "NOTICE: no qemu $series.x is served any more; using qemu $ver instead" \
            "(QEMU_SERIES=<x.y> pins another series, QEMU_SRC=<dir|tarball> another tree)"
        echo "$out"; exit 0
    fi
done
dapt_log "no qemu $series.x (nor any $major.x) could be fetched from Debian;" \
    "listed: $(tr '\n' ' ' <<<"$listed"). Set QEMU_SERIES=<x.y> or QEMU_SRC=<dir|tarball>."
exit 1

#!/bin/bash
# Obtain the upstream source of a Debian source package, the orig tarball as
# Debian serves it, without touching the system's apt configuration.
# Usage: fetch-orig-src.sh PKG SERIES DESTDIR   -> prints the unpacked source dir
#        (DESTDIR/PKG-UPSTREAM_VERSION; the version is what follows "PKG-")
#
# Only the orig tarball is taken, not Debian's patches: Debian's mirrors are
# partial (rdma-core 65.0-1.1's .dsc and debian.tar answered 404 on
# 2026-11-30 while its orig tarball was served), and we build upstream as is.
# Its SHA-256 is checked against the signed Sources index apt read.
#
# The newest listed version of release SERIES ("65" for rdma-core 65.x,
# "25.01" for perftest 25.01.x) whose tarball the mirror really serves is
# taken.  If none is served any more, the newest served version of any
# release is taken instead, and the build output says so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/debian-apt.sh"
pkg=${1:?usage: fetch-orig-src.sh PKG SERIES DESTDIR}
series=${2:?usage: fetch-orig-src.sh PKG SERIES DESTDIR}
dest=${3:?usage: fetch-orig-src.sh PKG SERIES DESTDIR}
mkdir -p "$dest"
dapt_init "fetch-orig-src[$pkg]"

listed=$(dapt_versions src "$pkg" | grep -v '~rc' || true)
pinned=$(grep -E "^([0-9]+:)?${series//./\\.}([.+~-]|\$)" <<<"$listed" || true)
others=$(grep -vxF -f <(printf '%s\n' "$pinned") <<<"$listed" || true)

unpack() {
    local ver=$1 upstream srcdir dl line uri file sha
    upstream=${ver#*:}; upstream=${upstream%-*}
    srcdir=$dest/$pkg-$upstream
    if [ ! -f "$srcdir/.p2plab-unpacked" ]; then
        dl=$dest/dl-$upstream
        mkdir -p "$dl"
        line=$(apt-get "${DAPT_OPTS[@]}" source --print-uris -q "$pkg=$ver" 2>/dev/null \
            | grep -E "^'[^']+' ${pkg}_[^ ]+\.orig\.tar\.[a-z0-9]+ " | head -1) || return 1
        read -r uri file _ sha <<<"$line"
        # The .dsc or the Debian diff may be missing on the mirror: apt then
        # fails the whole command but keeps every file it did verify.
        (cd "$dl" && apt-get "${DAPT_OPTS[@]}" source --download-only -q "$pkg=$ver" \
            >"$dl/download.log" 2>&1) || true
        [ -f "$dl/$file" ] || return 1
        [ "$(sha256sum "$dl/$file" | cut -d' ' -f1)" = "${sha#SHA256:}" ] \
            || { dapt_log "$file does not match its SHA-256 in the Sources index"; return 1; }
        rm -rf "$srcdir" && mkdir -p "$srcdir"
        tar -xf "$dl/$file" -C "$srcdir" --strip-components=1
        rm -rf "$dl"
        touch "$srcdir/.p2plab-unpacked"
    fi
    echo "$srcdir"
}

for ver in $pinned; do
    unpack "$ver" && exit 0
    dapt_log "$pkg $ver is listed but the mirror did not serve its orig tarball; trying an older one"
done
for ver in $others; do
    if out=$(unpack "$ver"); then
        dapt_log "NOTICE: no $pkg $series is served any more; using $pkg $ver instead"
        echo "$out"; exit 0
    fi
done
dapt_log "no $pkg $series (nor any other release) could be fetched from Debian;" \
    "listed: $(tr '\n' ' ' <<<"$listed")"
exit 1

#!/bin/bash
# Obtain a Linux source tree from Debian's binary source package
# linux-source-SERIES (e.g. 7.2, 6.12) without installing it: apt-get download
# through private lists, dpkg-deb -x, then the tarball it carries is unpacked
# into the cache.  Nothing in the system's apt configuration changes.
#
# Usage: fetch-linux-src.sh SERIES DESTDIR
# Prints KEY=VALUE lines on stdout: src (the unpacked tree), package, version,
# series (the one really used) and notice (empty unless the series fell back).
#
# The newest listed SERIES.x that the mirror really serves is taken.  Debian's
# unstable suite moves on, so when SERIES is no longer served at all, the newest
# release series of the same major that is served is taken instead (never a
# ~rc), and the notice says so; P2PLAB_KERNEL_FALLBACK=0 makes that an error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/debian-apt.sh"
series=$1 dest=$2
mkdir -p "$dest"
dapt_init fetch-linux-src

# fetch PKG VERSION: the unpacked tree for one listed version, or failure.
fetch() {
    local pkg=$1 ver=$2 src=$dest/$1-$2 deb tarball
    if [ ! -f "$src/.p2plab-unpacked" ]; then
        local dl=$dest/dl-$pkg-$ver
        rm -rf "$dl"
        dapt_download bin "$pkg" "$ver" "$dl" || { rm -rf "$dl"; return 1; }
        deb=$(ls -1 "$dl"/*.deb | head -1)
        dapt_log "unpacking $(basename "$deb") ($(du -h "$deb" | cut -f1))"
        dpkg-deb -x "$deb" "$dl/root"
        tarball=$(ls -1 "$dl"/root/usr/src/linux-source-*.tar.* | head -1)
        rm -rf "$src" "$src.tmp" && mkdir -p "$src.tmp"
        tar -xf "$tarball" -C "$src.tmp" --strip-components=1
        rm -rf "$dl"
        mv "$src.tmp" "$src" && touch "$src/.p2plab-unpacked"
    fi
    printf 'src=%s\npackage=%s\nversion=%s\n' "$src" "$pkg" "$ver"
}

# try SERIES: the newest served version of linux-source-SERIES.
try() {
    local v
    for v in $(dapt_versions bin "linux-source-$1" | grep -v '~rc'); do
        fetch "linux-source-$1" "$v" && return 0
        dapt_log "linux-source-$1 $v is listed but the mirror did not serve it; trying an older one"
    done
    return 1
}

if try "$series"; then
    printf 'series=%s\nnotice=\n' "$series"
    exit 0
fi
major=${series%%.*}
if [ "${P2PLAB_KERNEL_FALLBACK:-1}" != 0 ]; then
    # Other series of the same major, newest first.
    for s in $(apt-cache "${DAPT_OPTS[@]}" pkgnames "linux-source-$major." 2>/dev/null \
            | sed -n "s/^linux-source-\($major\.[0-9]*\)\$/\1/p" | sort -rV); do
        [ "$s" = "$series" ] && continue
        if try "$s"; then
            notice="linux-source-$series is not served by Debian any more; built linux-source-$s instead (pin a series: make KERNEL_SERIES=x.y or LTS_SERIES=x.y)"
            dapt_log "NOTICE: $notice"
            printf 'series=%s\nnotice=%s\n' "$s" "$notice"
            exit 0
        fi
    done
fi
dapt_log "no linux-source-$series could be fetched from Debian (suites: $dapt_suites)." \
    "Pin a served series, or build your own tree with KERNEL_SRC=<dir>."
exit 1

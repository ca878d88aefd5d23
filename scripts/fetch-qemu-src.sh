#!/bin/bash
# Obtain the pinned QEMU source (Debian trixie's qemu 10.0.x) without touching
# the system's apt configuration: a private sources list and lists directory,
# whose URIs come from the machine's own Debian entries.
# Usage: fetch-qemu-src.sh DESTDIR   -> prints the unpacked source dir
set -euo pipefail
dest=$1
suite=${QEMU_SUITE:-trixie}
mkdir -p "$dest"
apt_dir=$dest/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"

uri=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) \
      | grep -E '^(URIs:|deb )' | grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
      | awk '{print $1}' | head -1)
: "${uri:?no Debian mirror found in /etc/apt}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
printf 'deb-src [signed-by=%s] %s %s main\n' "$keyring" "$uri" "$suite" > "$apt_dir/sources.list"

apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
echo "fetch-qemu-src: apt-get source qemu from $uri $suite (private lists in $apt_dir)" >&2
apt-get "${apt_opts[@]}" update -q >&2
cd "$dest"
apt-get "${apt_opts[@]}" source --download-only -q qemu >&2
dsc=$(ls -1 qemu_*.dsc | sort -V | tail -1)
ver=$(sed -n 's/^Version: //p' "$dsc")
upstream=${ver%%-*}; upstream=${upstream#*:}; upstream=${upstream%+ds*}
srcdir=$dest/qemu-$upstream
if [ ! -f "$srcdir/.p2plab-unpacked" ]; then
    rm -rf "$srcdir"
    dpkg-source -x "$dsc" "$srcdir" >&2
    touch "$srcdir/.p2plab-unpacked"
fi
echo "$srcdir"

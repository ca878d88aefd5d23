#!/bin/bash
# Build the guest's RDMA userspace: rdma-core (Debian's orig tarball, release
# RDMA_CORE_SERIES, default 65) with our providers hooked in
# (guest/rdma-core/, scripts/hook-rdma-core.sh), then perftest (Debian's,
# PERFTEST_SERIES, default 25.01) against that rdma-core.
#
# Result: $P2PLAB_CACHE/rdma/build-<rdma-core>-<perftest>-<key>/stage, a root
# laid out as an installed system (/usr/bin, the multiarch libdir, the
# provider dir, /etc/libibverbs.d), stripped; build/rdma links to that build.
# A guest tool that uses verbs compiles against the same build: rdma.json
# there names its headers ("include") and libraries ("lib").
# The key hashes every input (versions, our provider files, the hook, the
# recipe below): an unchanged key is not rebuilt at all.  Only what the guest
# runs is built: no pyverbs, no man pages, no other providers.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${P2PLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/p2plab}
# Bump when this script changes what it produces.
recipe=3
start=$SECONDS
mkdir -p "$cache/rdma" "$cache/src" "$repo/build"
exec 9>"$cache/rdma.lock"
flock 9

rc_src=$("$repo/scripts/fetch-orig-src.sh" rdma-core "${RDMA_CORE_SERIES:-65}" "$cache/src/rdma-core-deb")
pt_src=$("$repo/scripts/fetch-orig-src.sh" perftest "${PERFTEST_SERIES:-25.01}" "$cache/src/perftest-deb")
rc_ver=${rc_src##*/rdma-core-}
pt_ver=${pt_src##*/perftest-}

providers=(odpnic rxe)
rc_tools=(ibv_devinfo ibv_devices ibv_rc_pingpong)
pt_tools=(ib_write_bw ib_read_bw ib_send_bw ib_write_lat ib_read_lat)
# Release: the stage is stripped anyway.  No libnl: neighbour resolution is
# only for UD address handles over RoCE (RC resolves in the kernel), and it
# would put libnl-3 and libnl-route-3 into every initramfs.  No valgrind
# annotations, so the result does not depend on the host's valgrind headers.
# No RPATH: the stage is installed at /, so build-tree paths would only leak.
cmake_flags=(-GNinja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr
             -DCMAKE_INSTALL_SYSCONFDIR=/etc -DNO_PYVERBS=1 -DNO_MAN_PAGES=1
             -DENABLE_RESOLVE_NEIGH=0 -DENABLE_VALGRIND=0 -DENABLE_STATIC=0
             -DCMAKE_SKIP_RPATH=ON)
key=$( { echo "recipe $recipe"; echo "rdma-core $rc_ver perftest $pt_ver"
         printf '%s\n' "${cmake_flags[@]}" "${providers[@]}" "${rc_tools[@]}" "${pt_tools[@]}"
         cd "$repo" && find guest/rdma-core/providers scripts/hook-rdma-core.sh -type f | LC_ALL=C sort \
             | xargs sha256sum; } | sha256sum | cut -c1-16)
bld=$cache/rdma/build-$rc_ver-$pt_ver-$key

if [ -f "$bld/.p2plab-built" ]; then
    ln -sfn "$bld" "$repo/build/rdma"
    echo "build-rdma: rdma-core $rc_ver + perftest $pt_ver up to date in $bld ($((SECONDS - start)) s)"
    exit 0
fi

echo "build-rdma: building rdma-core $rc_ver (providers: ${providers[*]}) and perftest $pt_ver in $bld"
rm -rf "$bld" && mkdir -p "$bld"
jobs=$(nproc)

# 1. rdma-core: a private copy of the source, so the hook never edits the
# cached tree that other keys start from.
cp -a "$rc_src" "$bld/rdma-core"
"$repo/scripts/hook-rdma-core.sh" "$bld/rdma-core" >/dev/null
mkdir -p "$bld/rdma-core-build"
(cd "$bld/rdma-core-build" && cmake "${cmake_flags[@]}" "$bld/rdma-core") > "$bld/cmake.log" 2>&1 \
    || { tail -30 "$bld/cmake.log"; exit 1; }
pabi=$(sed -n 's/^set(IBVERBS_PABI_VERSION "\([0-9]*\)")$/\1/p' "$bld/rdma-core/CMakeLists.txt")
[ -n "$pabi" ] || { echo "build-rdma: no IBVERBS_PABI_VERSION in rdma-core $rc_ver"; exit 1; }
ninja -C "$bld/rdma-core-build" -j "$jobs" ibverbs rdmacm ibumad \
    "${providers[@]/%/-rdmav$pabi}" "${rc_tools[@]}" > "$bld/ninja.log" 2>&1 \
    || { grep -B2 -A10 -m3 'error' "$bld/ninja.log" || tail -30 "$bld/ninja.log"; exit 1; }

# 2. perftest against that build.  It sees only the headers of libraries that
# were built: its configure takes a present mlx5dv.h or efadv.h for a
# present libmlx5 or libefa in some checks, then fails to link.
inc=$bld/sdk/include
mkdir -p "$inc"
cp -rL "$bld/rdma-core-build/include/." "$inc/"
rm -f "$inc"/infiniband/*dv.h "$inc"/infiniband/ionic_dv.h "$inc"/infiniband/mlx5_*.h
mkdir -p "$bld/perftest-build"
# Each tool links all of perftest's common code: built for size and with
# unused sections dropped, the five shrink from 1.2 MB to 0.8 MB.  Their loops
# only post and poll; the time goes in the provider and the kernel.
(cd "$bld/perftest-build" && "$pt_src/configure" --prefix=/usr CPPFLAGS="-I$inc" \
    CFLAGS="-Os -ffunction-sections -fdata-sections" \
    LDFLAGS="-L$bld/rdma-core-build/lib -Wl,--gc-sections") > "$bld/perftest-configure.log" 2>&1 \
    || { tail -30 "$bld/perftest-configure.log"; exit 1; }
make -C "$bld/perftest-build" -j "$jobs" "${pt_tools[@]}" > "$bld/perftest-make.log" 2>&1 \
    || { grep -B2 -A10 -m3 'error' "$bld/perftest-make.log" || tail -30 "$bld/perftest-make.log"; exit 1; }

# 3. The stage: where an installed rdma-core puts each file, as this build
# was configured (libdir, provider dir and config dir are compiled in).
cache_var() { sed -n "s|^$1:[A-Z]*=||p" "$bld/rdma-core-build/CMakeCache.txt"; }
libdir=/usr/$(cache_var CMAKE_INSTALL_LIBDIR)
provdir=$(cache_var VERBS_PROVIDER_DIR)
confdir=$(sed -n 's/^#define IBV_CONFIG_DIR "\(.*\)"$/\1/p' "$bld/rdma-core-build/include/config.h")
[ -n "$provdir" ] && [ -n "$confdir" ] || { echo "build-rdma: cannot tell the provider or config dir"; exit 1; }
stage=$bld/stage
mkdir -p "$stage/usr/bin" "$stage$libdir" "$stage$provdir" "$stage$confdir"
for t in "${rc_tools[@]}"; do install -m 755 "$bld/rdma-core-build/bin/$t" "$stage/usr/bin/"; done
for t in "${pt_tools[@]}"; do install -m 755 "$bld/perftest-build/$t" "$stage/usr/bin/"; done
for l in libibverbs.so.1 librdmacm.so.1 libibumad.so.3; do
    real=$(readlink -f "$bld/rdma-core-build/lib/$l")
    install -m 644 "$real" "$stage$libdir/"
    ln -sfn "$(basename "$real")" "$stage$libdir/$l"
done
for p in "${providers[@]}"; do
    install -m 644 "$bld/rdma-core-build/lib/lib$p-rdmav$pabi.so" "$stage$provdir/"
    install -m 644 "$bld/rdma-core-build/providers/$p/$p.driver" "$stage$confdir/"
done
find "$stage" -type f -perm -u+x -exec strip {} +
find "$stage" -type f -name '*.so*' -exec strip --strip-unneeded {} +

secs=$((SECONDS - start))
provs=$(printf '"%s", ' "${providers[@]}")
cat > "$bld/rdma.json" <<EOF
{"rdma_core": "$rc_ver", "perftest": "$pt_ver", "providers": [${provs%, }],
 "pabi": $pabi, "libdir": "$libdir", "provider_dir": "$provdir", "config_dir": "$confdir",
 "include": "$inc", "lib": "$bld/rdma-core-build/lib",
 "key": "$key", "recipe": $recipe, "build_seconds": $secs}
EOF
touch "$bld/.p2plab-built"
ln -sfn "$bld" "$repo/build/rdma"
echo "build-rdma: rdma-core $rc_ver + perftest $pt_ver built in $((secs / 60))m $((secs % 60))s: $bld/stage"

#!/bin/bash
# Hook our rdma-core providers (guest/rdma-core/providers/NAME/) into an
# unpacked upstream rdma-core tree, idempotently:
#   - providers/NAME/ of the tree becomes a content-synced copy of ours (an
#     unchanged file keeps its mtime, so ninja rebuilds only what changed);
#   - the top-level CMakeLists.txt gets one "add_subdirectory(providers/NAME)"
#     line per provider, marked "# p2plab", after upstream's own providers.
# Nothing else of the tree is touched, and nothing of upstream lives in this
# repository.  A provider needs no more than that: rdma_provider() in its
# CMakeLists.txt builds lib<NAME>-rdmav<PABI>.so and its NAME.driver file.
# Usage: hook-rdma-core.sh RDMA_CORE_TREE
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:?usage: hook-rdma-core.sh RDMA_CORE_TREE}
ours=$repo/guest/rdma-core/providers
top=$tree/CMakeLists.txt
mark="# p2plab"
[ -f "$top" ] && grep -q '^project(rdma-core' "$top" \
    || { echo "hook-rdma-core: $tree is not an rdma-core source tree" >&2; exit 1; }

names=()
for d in "$ours"/*/; do
    [ -f "$d/CMakeLists.txt" ] || continue
    name=$(basename "$d")
    names+=("$name")
    # -c compares contents, so unchanged files are not rewritten.
    rsync -rc --delete "$d" "$tree/providers/$name/"
done
[ ${#names[@]} -gt 0 ] || { echo "hook-rdma-core: no providers under $ours" >&2; exit 1; }

# Our lines go after providers/siw: outside upstream's HAVE_COHERENT_DMA block,
# since a provider whose data path is all kernel commands never maps device
# memory.  Rebuilt from scratch every run, so a removed provider loses its line.
anchor='add_subdirectory(providers/siw)'
grep -qxF "$anchor" "$top" || { echo "hook-rdma-core: no '$anchor' line in $top" >&2; exit 1; }
new=$(grep -vF "$mark" "$top" | while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line"
    if [ "$line" = "$anchor" ]; then
        for name in "${names[@]}"; do
            printf 'add_subdirectory(providers/%s) %s\n' "$name" "$mark"
        done
    fi
done)
# Rewriting an unchanged CMakeLists.txt would make ninja re-run cmake.
if [ "$new" != "$(cat "$top")" ]; then
    printf '%s\n' "$new" > "$top"
    echo "hook-rdma-core: hooked ${names[*]} into $top"
fi

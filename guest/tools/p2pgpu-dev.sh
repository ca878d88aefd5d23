#!/bin/sh
# p2pgpu-dev VRAM_BYTES: print the device node and debugfs directory of the
# p2pgpu GPU with that much VRAM ("/dev/p2pgpu0 /sys/kernel/debug/p2pgpu/BDF"),
# so scenarios name a GPU by what it is, not by probe order.
want=${1:?usage: p2pgpu-dev VRAM_BYTES}
for info in /sys/kernel/debug/p2pgpu/*/info; do
    [ -f "$info" ] || continue
    if grep -qx "vram_size $want" "$info"; then
        echo "/dev/$(awk '$1 == "name" {print $2}' "$info") $(dirname "$info")"
        exit 0
    fi
done
echo "p2pgpu-dev: no p2pgpu GPU with $want bytes of VRAM" >&2
exit 1

"""Guest boot time under the orchestrator: QEMU start to guest agent ready.

For each kernel (default: every kernel built under build/guest/), boots the
default machine (q35, intel-iommu, 1 GiB) ``--runs`` times and reports the wall
time from QEMU's start to the agent's ready event, and the guest's own uptime
at that moment (so the difference is QEMU, firmware and kernel loading).

Baseline, measured in the same run: the same kernel booted the conventional
way, as a bzImage (SeaBIOS's linuxboot option ROM, the real-mode setup and the
decompressor) instead of vmlinux through its PVH entry point.

Then one boot with ``initcall_debug`` lists the slowest initcalls and the
largest gaps in the kernel's printk timeline: where the remaining time goes.

Usage: python bench/guest_boot.py [--runs N] [KERNEL ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator import kernels
from orchestrator.logsetup import setup_logging
from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import parse_scenario

SCENARIO = """\
name: boot-{tag}
machines:
  - name: vm0
    memory: 1G
    accel: tcg
    kernel: {kernel}
    append: "{append}"
steps:
  - name: agent answers
    exec: "true"
"""
_INITCALL = re.compile(r"^\[\s*(\d+\.\d+)\] initcall (\S+) returned \S+ after (\d+) usecs", re.M)
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$", re.M)


async def boot_once(kernel: str, append: str, tmp: Path, tag: str) -> tuple[dict[str, Any], Path]:
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", tag)
    text = SCENARIO.format(tag=tag, kernel=kernel, append=append)
    loaded = parse_scenario(text, f"{tag}.yaml")
    res = await run_scenario(loaded, RunOptions(artifacts=tmp))
    if res.status != "passed":
        raise SystemExit(f"boot of {kernel} failed: {res.message}")
    vm = res.machines["vm0"]
    return ({"wall_s": vm.boot_seconds, "uptime_s": vm.guest_uptime_at_ready},
            Path(res.run_dir) / "vm0" / "dmesg.log")


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [s["wall_s"] for s in samples]
    ups = [s["uptime_s"] for s in samples]
    return {"runs": len(samples), "wall_s_median": round(statistics.median(walls), 3),
            "wall_s_min": round(min(walls), 3), "wall_s_max": round(max(walls), 3),
            "uptime_s_median": round(statistics.median(ups), 3)}


def timeline(log: str, top: int) -> dict[str, Any]:
    calls = sorted(((int(us), name) for _, name, us in _INITCALL.findall(log)), reverse=True)
    stamps = [(float(t), line) for t, line in _STAMP.findall(log)]
    gaps = sorted(((b[0] - a[0], a[1][:100], b[1][:100]) for a, b in itertools.pairwise(stamps)),
                  reverse=True)
    return {
        "initcalls_total_ms": round(sum(us for us, _ in calls) / 1000, 1),
        "slowest_initcalls": [{"initcall": n, "ms": round(us / 1000, 2)} for us, n in calls[:top]],
        "largest_gaps": [{"ms": round(g * 1000, 1), "after": a, "before": b}
                         for g, a, b in gaps[:top]],
    }


async def bench_kernel(name: str, runs: int, tmp: Path) -> dict[str, Any]:
    k = kernels.resolve(name)
    bz = k.image.parent / "bzImage"
    out: dict[str, Any] = {"kernel": name, "release": k.info.get("release"),
                           "image": k.image.name}
    out["boot"] = summary([(await boot_once(name, "", tmp, f"{name}-{i}"))[0]
                           for i in range(runs)])
    if bz.exists() and bz != k.image:
        base = [(await boot_once(str(bz), "", tmp, f"{name}-bz-{i}"))[0] for i in range(runs)]
        out["baseline_bzimage"] = summary(base)
    _, console = await boot_once(name, "initcall_debug", tmp, f"{name}-initcalls")
    out["where_the_time_goes"] = timeline(console.read_text(errors="replace"), 12)
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("kernels", nargs="*", help="default: every built kernel")
    args = ap.parse_args()
    setup_logging(quiet=True)  # stdout is the JSON result alone
    names = args.kernels or kernels.built_names()
    with tempfile.TemporaryDirectory(prefix="p2plab-boot-") as tmp:
        results = [await bench_kernel(n, args.runs, Path(tmp)) for n in names]
    print(json.dumps({"benchmark": "guest_boot", "accel": "tcg", "kernels": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

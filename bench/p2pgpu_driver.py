"""Throughput through the p2pgpu driver in a guest, against its baselines, as JSON.

Boots one guest (TCG, intel-iommu translating, a 4 GiB p2p-gpu whose BAR the
driver grows to 4 GiB) and runs guest/tools/p2pgpu-bench there: COPY ioctls
through the copy engine, CPU access through a BO mapping, HMM migration both
ways and CPU faults back to RAM, each checked for the bytes it moved.  In the
same run it measures host memcpy and the device alone under qtest
(bench/p2p_gpu_copy.py), so the driver's figure reads as a fraction of both.

Usage: .venv/bin/python bench/p2pgpu_driver.py [--kernel 7.2] [--size-mib 64] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _baseline import host_memcpy_gbps

from orchestrator.logsetup import setup_logging
from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import parse_scenario

MiB = 1 << 20
SCENARIO = """\
name: p2pgpu-bench
machines:
  - name: vm0
    memory: 2G
    cpu: EPYC
    accel: tcg
    kernel: "{kernel}"
    viommu: {{model: intel-iommu, options: {{intremap: "on", caching-mode: "on"}}}}
    topology:
      - {{kind: root-port, id: rp0}}
    devices:
      - {{driver: p2p-gpu, id: gpu0, bus: rp0, props: {{vram-size: 4G, bar-size: 256M}}}}
steps:
  - name: load p2pgpu
    exec: modprobe p2pgpu
  - name: p2pgpu-bench
    exec: p2pgpu-bench --size-mib {size} --reps {reps} --migrate-mib {migrate}
    timeout: 900
"""


async def guest_figures(kernel: str, size: int, reps: int, migrate: int,
                        tmp: Path) -> dict[str, Any]:
    text = SCENARIO.format(kernel=kernel, size=size, reps=reps, migrate=migrate)
    res = await run_scenario(parse_scenario(text, "p2pgpu-bench.yaml"), RunOptions(artifacts=tmp))
    if res.status != "passed":
        raise SystemExit(f"guest benchmark failed: {res.message}")
    out = (Path(res.run_dir) / "vm0" / "steps" / "01.stdout").read_text()
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    figures["kernel"] = res.machines["vm0"].kernel.get("booted")
    return figures


def qtest_figures(size: int, reps: int) -> dict[str, Any]:
    """The device alone (no guest, no driver): bench/p2p_gpu_copy.py's numbers."""
    script = Path(__file__).with_name("p2p_gpu_copy.py")
    proc = subprocess.run([sys.executable, str(script), "--size-mib", str(size),
                           "--reps", str(reps)], capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(proc.stdout)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="7.2")
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--migrate-mib", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    setup_logging(quiet=True)  # stdout is the JSON result alone
    with tempfile.TemporaryDirectory(prefix="p2pgpu-bench-") as tmp:
        guest = asyncio.run(guest_figures(args.kernel, args.size_mib, args.reps,
                                          args.migrate_mib, Path(tmp)))
    qtest = qtest_figures(args.size_mib, args.reps)
    memcpy = host_memcpy_gbps(args.size_mib * MiB, args.reps * 2)
    out = {
        "benchmark": "p2pgpu_driver",
        "unit": "GB/s (1e9 bytes per second), best of reps",
        "guest": guest,
        "baselines": {
            "host_memcpy_gbps": round(memcpy, 2),
            "qtest_host_to_vram_gbps": qtest["host_to_vram_gbps"],
            "qtest_vram_to_host_gbps": qtest["vram_to_host_gbps"],
        },
        "fraction": {
            "copy_to_bo_of_qtest": round(guest["copy_to_bo_gbps"] / qtest["host_to_vram_gbps"], 3),
            "copy_from_bo_of_qtest": round(
                guest["copy_from_bo_gbps"] / qtest["vram_to_host_gbps"], 3),
            "copy_to_bo_of_host_memcpy": round(guest["copy_to_bo_gbps"] / memcpy, 3),
            "copy_to_bo_of_guest_memcpy": round(
                guest["copy_to_bo_gbps"] / guest["guest_memcpy_gbps"], 3),
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

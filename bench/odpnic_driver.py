"""ODP through the real odpnic driver, against its baselines, as JSON.

Three measurements in one run, under TCG with intel-iommu translating:

* the page-fault round trip through the kernel driver
  (guest/tools/rdma/odpnic-bench: a 4 KiB RDMA WRITE into a page the notifier
  just fenced out, post to completion, every byte checked), with faults per
  second from a burst;
* the same fault round trip with the device driven from Python over qtest
  (bench/odp_nic_loopback.py), and the real-hardware figure: 215 us p50 per
  4 KiB network page fault on ConnectX (Lesokhin et al., ASPLOS 2017);
* perftest (ib_write_bw, ib_read_lat; pinned and --odp) between two VMs, on
  odpnic over its link and on rxe (the kernel's soft-RoCE, ODP since 6.10)
  over the management LAN, side by side, with rxe's fault round trip from
  the same odpnic-bench in loopback on rxe.

Usage: .venv/bin/python bench/odpnic_driver.py [--kernel 7.2] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.logsetup import setup_logging
from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import parse_scenario

PAPER_P50_US = 215.0    # Lesokhin et al., ASPLOS 2017: 4 KiB network page fault, ConnectX

# Scenario texts fill @NAME@ placeholders (YAML is full of braces).
MACHINE = """\
  - name: @VM@
    memory: 1G
    accel: tcg
    kernel: "@KERNEL@"
    viommu: {model: intel-iommu, options: {intremap: "on", caching-mode: "on"}}
    topology: [{kind: root-port, id: rp0}]
    devices:
      - {driver: odp-nic, id: nic0, bus: rp0,
         props: {mac: "@MAC@", rnr-retry-count: 4000, rnr-delay-us: 500,
                 retry-timeout-us: 100000, retry-count: 50}}
"""

FAULT_SCENARIO = """\
name: odpnic-bench-fault
machines:
@VM0@steps:
  - {name: load odpnic, exec: modprobe odpnic}
  - name: odpnic-bench
    exec: odpnic-bench --samples @SAMPLES@ --burst 512
    timeout: 600
"""

PERF_SCENARIO = """\
name: odpnic-bench-perftest
management_lan: true
machines:
@VM0@@VM1@links:
  - {a: vm0.nic0, b: vm1.nic0}
steps:
  - {name: load odpnic, machine: vm0, exec: modprobe odpnic}
  - {name: load odpnic on vm1, machine: vm1, exec: modprobe odpnic}
@STEPS@  - name: rxe fault round trip
    machine: vm0
    exec: odpnic-bench --dev rxe0 --gid-index 1 --samples @SAMPLES@ --burst 256
    timeout: 600
"""

# perftest's result lines: bandwidth (bytes, iterations, peak, average) and
# latency (bytes, iterations, min, max, typical, average, stdev, 99%).
BW_RE = r"'(?m)^\s*65536\s+\d+\s+[0-9.]+\s+([0-9.]+)'"
P50_RE = r"'(?m)^\s*2\s+\d+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)'"
P99_RE = r"'(?m)^\s*2\s+\d+(?:\s+[0-9.]+){5}\s+([0-9.]+)'"


def fill(text: str, **values: object) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k.upper()}@", str(v))
    return text


def machine(vm: str, kernel: str, mac: str) -> str:
    return fill(MACHINE, vm=vm, kernel=kernel, mac=mac)


def perftest_steps(dev: str, extra: str) -> str:
    """Server in the background on vm1, client on vm0, for every test and mode."""
    out = []
    for tool, args in (("ib_write_bw", "-s 65536 -n 1000"), ("ib_read_lat", "-n 300")):
        for mode, opt in (("pinned", ""), ("odp", " --odp")):
            key = f"{dev}_{tool}_{mode}"
            cmd = f"{tool} -d {dev}{extra} {args}{opt}"
            if tool == "ib_write_bw":
                metrics = f"{{{key}_mib_s: {{pattern: {BW_RE}, type: float}}}}"
            else:
                metrics = (f"{{{key}_p50_us: {{pattern: {P50_RE}, type: float}}, "
                           f"{key}_p99_us: {{pattern: {P99_RE}, type: float}}}}")
            out.append(f"""\
  - {{name: "{key} server", machine: vm1, background: {key}, exec: "{cmd}",
     ready: "sh -c 'netstat -ltn | grep -q :18515'"}}
  - {{name: "{key}", machine: vm0, exec: "{cmd} vm1", timeout: 300, metrics: {metrics}}}
  - {{name: "{key} server done", machine: vm1, join: {key}, timeout: 120}}
""")
    return "".join(out)


def rxe_up(vm: str, peer_addr: str) -> str:
    # `ip route get` names the LAN NIC towards the peer: rxe runs on it.
    return (f"  - {{name: rxe on {vm}, machine: {vm}, exec: \"sh -c 'modprobe rdma_rxe && "
            f"set -- $(ip route get {peer_addr}) && rdma link add rxe0 type rxe netdev $3'\"}}\n")


async def run(text: str, name: str, tmp: Path) -> tuple[Any, Path]:
    res = await run_scenario(parse_scenario(text, f"{name}.yaml"), RunOptions(artifacts=tmp))
    if res.status != "passed":
        raise SystemExit(f"{name} failed: {res.message}")
    return res, Path(res.run_dir)


def last_json(path: Path) -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(path.read_text().strip().splitlines()[-1])
    if "error" in figures:
        raise SystemExit(f"{path}: {figures['error']}")
    return figures


def qtest_fault() -> dict[str, Any]:
    """The device alone, driven over qtest: bench/odp_nic_loopback.py's fault figure."""
    script = Path(__file__).with_name("odp_nic_loopback.py")
    proc = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                          text=True, check=True)
    fault: dict[str, Any] = json.loads(proc.stdout)["fault"]
    return {"round_trip_us": fault["round_trip_us"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="7.2")
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    setup_logging(quiet=True)  # stdout is the JSON result alone
    with tempfile.TemporaryDirectory(prefix="odpnic-bench-") as tmp_s:
        tmp = Path(tmp_s)
        vm0 = machine("vm0", args.kernel, "52:54:00:00:0d:0a")
        vm1 = machine("vm1", args.kernel, "52:54:00:00:0d:0b")
        res, run_dir = asyncio.run(run(
            fill(FAULT_SCENARIO, vm0=vm0, samples=args.samples), "fault", tmp))
        driver = last_json(run_dir / "vm0" / "steps" / "01.stdout")
        booted = res.machines["vm0"].kernel.get("booted")
        perf_text = fill(
            PERF_SCENARIO, vm0=vm0, vm1=vm1, samples=max(10, args.samples // 4),
            steps=rxe_up("vm0", "169.254.100.2") + rxe_up("vm1", "169.254.100.1")
            + perftest_steps("odpnic0", "") + perftest_steps("rxe0", " -x 1"))
        res2, run_dir2 = asyncio.run(run(perf_text, "perftest", tmp))
        steps = sorted((run_dir2 / "vm0" / "steps").glob("*.stdout"))
        rxe_fault = last_json(steps[-1])
    perf = res2.metrics
    qtest = qtest_fault()
    out = {
        "benchmark": "odpnic_driver",
        "kernel": booted,
        "fault_round_trip_us": {
            "odpnic_driver": driver["fault_us"],
            "odpnic_driver_present_page": driver["present_us"],
            "odpnic_qtest": qtest["round_trip_us"],
            "rxe_driver": rxe_fault["fault_us"],
            "connectx_paper_p50": PAPER_P50_US,
        },
        "faults_per_s": {"odpnic_driver": driver["faults_per_s"],
                         "rxe_pages_per_s": rxe_fault["pages_per_s"]},
        "ratio": {
            "odpnic_driver_p50_to_paper": round(driver["fault_us"]["p50"] / PAPER_P50_US, 2),
            "odpnic_driver_p50_to_qtest": round(
                driver["fault_us"]["p50"] / qtest["round_trip_us"]["p50"], 2),
            "odpnic_to_rxe_write_bw_odp": round(
                perf["odpnic0_ib_write_bw_odp_mib_s"] / perf["rxe0_ib_write_bw_odp_mib_s"], 1),
        },
        "perftest": {k: perf[k] for k in sorted(perf) if re.match(r"(odpnic0|rxe0)_ib_", k)},
        "units": {"perftest *_mib_s": "MiB/s, BW average", "*_us": "microseconds"},
        "checks": {"odpnic_faults_counted": driver["faults_counted"],
                   "odpnic_samples": driver["samples"],
                   "data": "every write's bytes compared in the guest"},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

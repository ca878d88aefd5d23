"""Boots under load: N concurrent guests for R rounds on this machine (make stress).

A CI runner boots many guests at once on few cores; none may fail to boot
because the host is busy.  Each round runs N copies of a scenario at once
(default: scenarios/p2p-gpu-rebar.yaml, a boot plus ReBAR work) and records,
per guest, whether it booted, how long it took, and, if not, why (the first
line of the result's message: a panic line, a timeout ...).  Prints one JSON
object; exits 1 if any guest failed to boot or any run failed.

  python -m tests.stress.boot_load [--vms 8] [--rounds 10] [--kernel 7.2] [SCENARIO]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.logsetup import setup_logging
from orchestrator.runner import RunOptions, run_scenario
from orchestrator.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]


async def _round(scenario: Path, vms: int, kernel: str | None, out: Path) -> list[dict[str, Any]]:
    loaded = load_scenario(scenario)
    results = await asyncio.gather(*(run_scenario(loaded, RunOptions(artifacts=out / f"vm{i}",
                                                                       kernel=kernel))
                                     for i in range(vms)))
    rows = []
    for res in results:
        booted = all(m.boot_seconds is not None for m in res.machines.values())
        rows.append({"status": res.status, "booted": booted,
                     "boot_seconds": [m.boot_seconds for m in res.machines.values()],
                     "cause": None if res.status == "passed" else res.message.splitlines()[0],
                     "run_dir": res.run_dir})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", nargs="?", type=Path,
                    default=REPO / "scenarios" / "p2p-gpu-rebar.yaml")
    ap.add_argument("--vms", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--kernel", default=None)
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="keep run directories here (default: a temporary directory)")
    args = ap.parse_args(argv)
    setup_logging("json", quiet=True)
    base = args.artifacts or Path(tempfile.mkdtemp(prefix="p2plab-stress-"))
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for r in range(args.rounds):
        got = asyncio.run(_round(args.scenario, args.vms, args.kernel, base / f"round{r}"))
        rows += got
        bad = sum(not g["booted"] for g in got)
        print(f"round {r + 1}/{args.rounds}: {len(got) - bad}/{len(got)} booted, "
              f"{sum(g['status'] == 'passed' for g in got)} passed", file=sys.stderr)
    boots = [s for row in rows for s in row["boot_seconds"] if s is not None]
    causes = collections.Counter(row["cause"] for row in rows if row["cause"])
    summary = {
        "scenario": str(args.scenario), "vms": args.vms, "rounds": args.rounds,
        "kernel": args.kernel, "guests": len(rows),
        "booted": sum(row["booted"] for row in rows),
        "failed_boots": sum(not row["booted"] for row in rows),
        "failed_runs": sum(row["status"] != "passed" for row in rows),
        "boot_seconds": {"median": statistics.median(boots) if boots else None,
                         "max": max(boots, default=None)},
        "causes": dict(causes), "seconds": round(time.monotonic() - t0, 1),
        "artifacts": str(base),
        "failures": [row for row in rows if row["status"] != "passed"],
    }
    print(json.dumps(summary, indent=1))
    return 0 if summary["failed_runs"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

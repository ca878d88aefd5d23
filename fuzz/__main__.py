"""``python -m fuzz``: run a campaign, replay or minimise a reproducer.

  python -m fuzz run [--target p2p-gpu|odp-nic|all] [--seed N] [--ops N]
                     [--seconds S] [--qemu PATH] [--out DIR]
  python -m fuzz replay TRACE [--qemu PATH]
  python -m fuzz minimize TRACE [--qemu PATH]

``run`` prints one JSON line per target (operations, seconds, crashes) and exits
1 if anything crashed; reproducers land in --out as crash-*.trace, each with its
QEMU log and a minimised copy.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from fuzz.campaign import GENERATORS, minimize_trace, replay, run_campaign
from fuzz.trace import Trace
from tests.support.qtest import QEMU


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--target", choices=[*GENERATORS, "all"], default="all")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--ops", type=int, default=100_000, help="qtest lines per target")
    r.add_argument("--seconds", type=float, default=None, help="stop each target after this")
    r.add_argument("--qemu", type=Path, default=QEMU)
    r.add_argument("--out", type=Path, default=Path("build/fuzz"))
    r.add_argument("--no-minimize", action="store_true")
    for name in ("replay", "minimize"):
        p = sub.add_parser(name)
        p.add_argument("trace", type=Path)
        p.add_argument("--qemu", type=Path, default=QEMU)
    args = ap.parse_args(argv)
    if not args.qemu.exists():
        print(f"error: {args.qemu} is missing: run `make qemu` (or `make fuzz` for the "
              "sanitizer build)", file=sys.stderr)
        return 2
    if args.cmd == "run":
        targets = list(GENERATORS) if args.target == "all" else [args.target]
        crashed = False
        for t in targets:
            rep = run_campaign(t, args.seed, args.ops, args.qemu, args.out, args.seconds,
                               minimize=not args.no_minimize)
            line = asdict(rep)
            line["ops_per_second"] = round(rep.ops / rep.seconds) if rep.seconds else 0
            line["seconds"] = round(rep.seconds, 1)
            line["qemu"] = str(args.qemu)
            print(json.dumps(line), flush=True)
            crashed |= bool(rep.crashes)
        return 1 if crashed else 0
    trace = Trace.load(args.trace)
    if args.cmd == "replay":
        crash = replay(trace, args.qemu)
        print("no crash" if crash is None else f"{crash.signature()}\n{crash.detail[-3000:]}")
        return 0 if crash is None else 1
    crash = replay(trace, args.qemu)
    if crash is None:
        print("the trace does not crash this QEMU: nothing to minimise")
        return 1
    small = minimize_trace(trace, args.qemu, crash.signature())
    out = args.trace.with_suffix(".min.trace")
    small.save(out)
    print(f"{len(trace.ops)} -> {len(small.ops)} lines: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

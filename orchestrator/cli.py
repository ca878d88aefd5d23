"""The ``orchestrator`` command: run, validate, list, schema, shell.

Exit status: 0 success, 1 a scenario failed, 2 a scenario file (or the command
line) is invalid, 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog

from . import paths
from .cluster import run_on_cluster
from .errors import P2PLabError, ScenarioError
from .logsetup import setup_logging
from .progress import Progress
from .results import RunResult, ScenarioResult, axis_table, write_json, write_junit
from .runner import RunOptions, run_scenario
from .scenario import LoadedScenario, load_scenarios
from .schema import Scenario, size_bytes
from .vm import kill_all_now

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def _load_all(files: Sequence[str]) -> list[LoadedScenario]:
    """Load every file, reporting every invalid one, then raise if any was invalid."""
    loaded: list[LoadedScenario] = []
    problems = []
    for f in files:
        try:
            loaded.extend(load_scenarios(Path(f)))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ScenarioError(problems)
    return loaded


async def _run_all(args: argparse.Namespace, loaded: list[LoadedScenario]) -> int:
    progress = Progress(enabled=args.log_format == "auto")
    opts = RunOptions(
        artifacts=Path(args.artifacts) if args.artifacts else paths.default_runs_dir(),
        on_step=progress.step,
        on_phase=progress.phase,
        kernel=args.kernel,
    )
    run = RunResult()
    t0 = time.monotonic()
    if args.cluster:
        try:
            run.scenarios = await run_on_cluster(
                args.cluster, loaded, args.kernel, opts.artifacts,
                kill_worker_once=os.environ.get("P2PLAB_TEST_KILL_WORKER_ONCE"),
                on_done=progress.done)
        except P2PLabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            run.duration = time.monotonic() - t0
            _write_results(args, run)
        return _report(run, opts)
    jobs = args.jobs or auto_jobs(loaded)
    sem = asyncio.Semaphore(max(1, jobs))
    stop = asyncio.Event()
    results: list[ScenarioResult | None] = [None] * len(loaded)

    async def one(i: int, ls: LoadedScenario) -> None:
        async with sem:
            if stop.is_set():
                results[i] = ScenarioResult(ls.name, str(ls.path), status="skipped",
                                            message="not run: an earlier scenario failed")
                return
            res = await run_scenario(ls, opts)
            run_one = RunResult(started=run.started, duration=res.duration, scenarios=[res])
            write_junit(run_one, Path(res.run_dir) / "junit.xml")
            results[i] = res
            progress.done(res)
            if res.status != "passed" and not args.keep_going:
                stop.set()

    ticker = asyncio.create_task(progress.ticker()) if progress.live else None
    try:
        async with asyncio.TaskGroup() as tg:
            for i, ls in enumerate(loaded):
                tg.create_task(one(i, ls))
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        run.scenarios = [r for r in results if r is not None]
        run.duration = time.monotonic() - t0
        _write_results(args, run)
    return _report(run, opts)


def _write_results(args: argparse.Namespace, run: RunResult) -> None:
    """--json and --junit, whatever ended the run."""
    if args.json:
        write_json(run, Path(args.json))
    if args.junit:
        write_junit(run, Path(args.junit))


def auto_jobs(loaded: list[LoadedScenario]) -> int:
    """Scenarios at once when -j is not given: one per core, as memory allows
    (each needs its machines' RAM, plus QEMU's own), and says what it chose."""
    cores = os.cpu_count() or 1
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        avail = 0
    need = max((sum(size_bytes(m.memory) if isinstance(m.memory, str) else m.memory << 20
                    for m in ls.scenario.machines) + len(ls.scenario.machines) * (256 << 20)
                for ls in loaded), default=1 << 30)
    jobs = max(1, min(cores, len(loaded), avail // need if avail else cores))
    if len(loaded) > 1:
        print(f"running {jobs} scenario(s) at once: {cores} cores, "
              f"{avail >> 30} GiB free, up to {need >> 20} MiB each (-j N to choose)",
              file=sys.stderr)
    return jobs


def _report(run: RunResult, opts: RunOptions) -> int:
    for r in run.scenarios:
        for step in r.steps:
            if step.kind == "exec" and step.metrics:
                print(f"{r.name}: {step.name}: " + ", ".join(
                    f"{k}={v}" for k, v in step.metrics.items()))
        print(f"{r.name}: {r.status} - results in {r.run_dir or '(not run)'}")
    if any(r.axes for r in run.scenarios):
        table = axis_table(run.scenarios)
        out = opts.artifacts / f"{time.strftime('%Y%m%d-%H%M%S')}-matrix-summary.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        print(f"\n{table}matrix summary: {out}")
    return EXIT_OK if run.status == "passed" else EXIT_FAILED


def _with_signals(main: Callable[[], Awaitable[int]]) -> int:
    """Run ``main`` so that SIGINT and SIGTERM cancel it (and its teardown runs)."""
    received: list[int] = []

    async def wrapper() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(sig: int) -> None:
            if received:  # a second signal: stop waiting for a graceful teardown
                kill_all_now()
            received.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main()
        except asyncio.CancelledError:
            if received:
                return EXIT_SIGINT if received[0] == signal.SIGINT else EXIT_SIGTERM
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(wrapper())
    except KeyboardInterrupt:
        return EXIT_SIGINT
    finally:
        kill_all_now()


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load_all(args.scenarios)
    return _with_signals(lambda: _run_all(args, loaded))


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load_all(args.scenarios)
    by_file: dict[Path, list[LoadedScenario]] = {}
    for ls in loaded:
        by_file.setdefault(ls.path, []).append(ls)
    for path, cells in by_file.items():
        sc = cells[0].scenario
        if cells[0].axes:
            print(f"{path}: ok ({cells[0].name.split('[')[0]}: a matrix of {len(cells)} cells, "
                  f"{len(sc.machines)} machine(s), {len(sc.steps)} steps each)")
        else:
            print(f"{path}: ok ({cells[0].name}: {len(sc.machines)} machine(s), "
                  f"{len(sc.steps)} steps)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else paths.scenarios_dir()
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    width = max((len(f.stem) for f in files), default=0)
    for f in files:
        try:
            cells = load_scenarios(f)
        except ScenarioError as exc:
            print(f"{f.stem:<{width}}  (invalid: {exc.problems[0]})")
            continue
        lines = cells[0].scenario.description.strip().splitlines()
        desc = lines[0] if lines else ""
        name = cells[0].name.split("[")[0] if cells[0].axes else cells[0].name
        more = f" [matrix: {len(cells)} cells]" if cells[0].axes else ""
        print(f"{name:<{width}}  {desc}{more}")
        if args.expand and cells[0].axes:
            for c in cells:
                print(f"  {c.name}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    schema = Scenario.model_json_schema(by_alias=True)
    schema["title"] = "p2plab scenario"
    print(json.dumps(schema, indent=2))
    return EXIT_OK


def cmd_shell(args: argparse.Namespace) -> int:
    from .shell import run_shell

    loaded = _load_all([args.scenario])[0]
    artifacts = Path(args.artifacts) if args.artifacts else paths.default_runs_dir()
    opts = RunOptions(artifacts=artifacts)
    return run_shell(loaded, opts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrator",
        description="Run p2plab scenarios: QEMU VMs with PCIe P2P devices, guest workloads.",
    )
    p.add_argument("--log-format", choices=["auto", "console", "json"], default="auto",
                   help="stderr: the progress view with warnings (auto), or every log "
                        "event as a readable line (console) or JSON (json); each run "
                        "directory keeps the whole log as JSON lines (orchestrator.log)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run scenarios")
    r.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    r.add_argument("-j", "--jobs", type=int, default=0,
                   help="scenarios (or matrix cells) to run at once; default: one per core "
                        "as memory allows")
    r.add_argument("--cluster", metavar="ADDRESS",
                   help="run every scenario or cell as a task on this Dask scheduler "
                        "(tcp://HOST:8786); workers run them with their own build")
    r.add_argument("--json", metavar="FILE", help="write all results as JSON")
    r.add_argument("--junit", metavar="FILE", help="write all results as JUnit XML")
    r.add_argument("--artifacts", metavar="DIR", help="where run directories go (build/runs)")
    r.add_argument("--kernel", metavar="NAME|PATH",
                   help="boot every machine with this kernel (7.2, 6.12, 7.2-debug, or a path), "
                        "whatever the scenario says")
    r.add_argument("--keep-going", action="store_true",
                   help="start the remaining scenarios after one failed")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="check scenario files")
    v.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    v.set_defaults(func=cmd_validate)

    ls = sub.add_parser("list", help="list scenarios with their descriptions")
    ls.add_argument("--dir", help="directory to list (default: the repo's scenarios/)")
    ls.add_argument("--expand", action="store_true", help="list each matrix's cells")
    ls.set_defaults(func=cmd_list)

    s = sub.add_parser("schema", help="print the scenario JSON Schema")
    s.set_defaults(func=cmd_schema)

    sh = sub.add_parser("shell", help="boot a scenario's machines and open a QMP shell")
    sh.add_argument("scenario", metavar="SCENARIO")
    sh.add_argument("--artifacts", metavar="DIR", help="where the run directory goes")
    sh.set_defaults(func=cmd_shell)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orchestrator`` console script."""
    args = build_parser().parse_args(argv)
    # One view on stderr: the shell's, or the progress view's (auto), with only
    # warnings from the log; or, asked for, the log itself (console, json).
    quiet = args.command == "shell" or (args.command == "run" and args.log_format == "auto")
    setup_logging(args.log_format, args.verbose, quiet=quiet)
    try:
        rc: int = args.func(args)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INVALID
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Matrix cells on a Dask cluster: ``orchestrator run --cluster tcp://HOST:8786``.

The user starts the scheduler and the workers with Dask's own commands
(``dask scheduler``; ``dask worker tcp://HOST:8786 --resources vms=4`` in each
p2plab checkout, after ``make build``).  Every cell is one Dask task that asks
for as many ``vms`` as it boots.  It carries the client's commit and the
hashes of the artifacts the cell boots (QEMU, each kernel image and
initramfs); a worker built from anything else refuses it with an error that
says what differs.  The worker runs the cell with its own build and returns
the cell's results and a bounded archive of its run directory, which the
client unpacks into its own artifacts directory.

A worker that dies mid-cell does not lose the cell: the scheduler gives it to
another worker, and the result lists every worker that took it (a cell runs
at most twice).  Ctrl-C cancels the outstanding cells: a shared Dask Event
tells every running cell to tear its VMs down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import os
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import kernels, paths
from .errors import P2PLabError
from .logsetup import setup_logging
from .results import MachineResult, ScenarioResult, StepResult
from .scenario import LoadedScenario, parse_scenarios

log = structlog.get_logger(__name__)

ARCHIVE_FILE_LIMIT = 4 << 20     # bytes of one file kept (its end: logs grow at the end)
ARCHIVE_LIMIT = 32 << 20         # bytes of all files kept, before compression
SKIP_SUFFIXES = (".img", ".sock")  # scratch disks and sockets stay on the worker
MAX_ATTEMPTS = 2                 # a cell whose worker died runs once more, not again


class CellRefused(P2PLabError):
    """A worker cannot run a cell as the client built it (another commit or build)."""


@dataclass(frozen=True)
class Identity:
    """What a cell was built from: the commit and the artifacts' SHA-256."""

    commit: str
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to run one cell (pickled to it)."""

    run_id: str
    file: str                 # the scenario file, relative to the repository
    text: str                 # its text: the worker validates it again
    cell: str                 # LoadedScenario.name
    kernel: str | None        # run --kernel
    identity: Identity
    kill_worker_once: bool = False  # tests: the first attempt kills its worker mid-run

    @property
    def cancel_event(self) -> str:
        return f"p2plab-cancel-{self.run_id}"

    @property
    def attempts_key(self) -> list[str]:
        return ["p2plab", self.run_id, self.cell, "attempts"]


# ---------------------------------------------------------------- identity

@functools.cache
def _sha256(path: Path, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of a file (cached per size and mtime: QEMU is 100 MB)."""
    st = path.stat()
    return _sha256(path.resolve(), st.st_size, st.st_mtime)


def qemu_binary(wrapper: Path) -> Path:
    """The binary behind build/bin's wrapper script (or the path itself)."""
    try:
        text = wrapper.read_text(errors="replace")
    except OSError:
        return wrapper
    for line in text.splitlines():
        if line.startswith("exec "):
            return Path(line.split()[1])
    return wrapper


def commit_of(repo: Path) -> str:
    """HEAD of a checkout, with ``-dirty`` when tracked files differ from it."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                            "--untracked-files=no"], capture_output=True, text=True,
                           check=False).stdout.strip()
    return head + ("-dirty" if dirty else "")


def identity(cells: list[LoadedScenario], kernel: str | None) -> Identity:
    """This checkout's identity for these cells: commit, QEMU, every kernel they boot."""
    arts = {"qemu": file_hash(qemu_binary(paths.default_qemu()))}
    for ls in cells:
        for m in ls.scenario.machines:
            k = kernels.resolve(kernel or m.kernel)
            arts[f"kernel {k.name}"] = file_hash(k.image)
            arts[f"initramfs {k.name}"] = file_hash(k.initrd)
    return Identity(commit_of(paths.repo_root()), arts)


def check_identity(want: Identity, cells: list[LoadedScenario], kernel: str | None,
                   worker: str) -> None:
    """Raise :class:`CellRefused` unless this worker's build is the client's."""
    have = identity(cells, kernel)
    if have.commit != want.commit:
        raise CellRefused(f"worker {worker} runs commit {have.commit}, the cell was built "
                          f"from {want.commit}: check that commit out there and run make build")
    # The client hashed what all its cells boot; this cell needs only its own.
    for name, digest in have.artifacts.items():
        if want.artifacts.get(name) != digest:
            target = "qemu" if name == "qemu" else "build"
            raise CellRefused(f"worker {worker}: its {name} differs from the client's "
                              f"(same commit, another build): run make {target} there")


# ---------------------------------------------------------------- worker side

def run_cell(task: CellTask) -> dict[str, Any]:
    """Run one cell on this worker (the Dask task): results, archive, where it ran."""
    from distributed import Event, get_client, get_worker

    worker = get_worker()
    _worker_logging()
    where = f"{socket.gethostname()} {worker.address}"
    client = get_client()
    attempts: list[str] = [*client.get_metadata(task.attempts_key, default=[]), where]
    client.set_metadata(task.attempts_key, attempts)
    if len(attempts) > MAX_ATTEMPTS:
        raise CellRefused(f"cell {task.cell}: its workers died {len(attempts) - 1} times "
                          f"({'; '.join(attempts[:-1])}): not run again")
    loaded = [c for c in parse_scenarios(task.text, task.file) if c.name == task.cell]
    if not loaded:
        raise CellRefused(f"worker {where}: no cell {task.cell} in {task.file}")
    check_identity(task.identity, loaded, task.kernel, where)
    cancel = Event(task.cancel_event, client=client)
    kill = task.kill_worker_once and len(attempts) == 1
    with tempfile.TemporaryDirectory(prefix="p2plab-cell-") as tmp:
        result = asyncio.run(_run(loaded[0], task.kernel, Path(tmp), cancel, kill))
        archive = pack(Path(result.run_dir)) if result.run_dir else b""
    return {"result": asdict(result), "archive": archive, "worker": where,
            "attempts": attempts}


@functools.cache
def _worker_logging() -> None:
    """Once per worker process: info and above, readable (the worker's own log)."""
    setup_logging("console")


async def _run(loaded: LoadedScenario, kernel: str | None, artifacts: Path,
               cancel: Any, kill: bool) -> ScenarioResult:
    from .runner import RunOptions, run_scenario

    def on_phase(_scenario: str, text: str) -> None:
        if kill and text.startswith("step 1/"):
            # Tests: this worker dies mid-cell, as a crashed host would; its QEMU
            # goes with it (parent-death signal).
            os.kill(os.getpid(), signal.SIGKILL)

    opts = RunOptions(artifacts=artifacts, kernel=kernel, on_phase=on_phase)
    run = asyncio.create_task(run_scenario(loaded, opts))
    while not run.done():
        await asyncio.wait({run}, timeout=0.5)
        if not run.done() and await asyncio.to_thread(cancel.is_set):
            run.cancel()    # run_scenario tears its VMs down, then re-raises
    try:
        return run.result()
    except asyncio.CancelledError:
        raise CellRefused(f"cell {loaded.name}: cancelled by the client") from None


def pack(run_dir: Path) -> bytes:
    """A bounded tar.gz of a run directory: each file's last ARCHIVE_FILE_LIMIT
    bytes, at most ARCHIVE_LIMIT in all, no scratch disks or sockets."""
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in sorted(run_dir.rglob("*")):
            if not f.is_file() or f.name.endswith(SKIP_SUFFIXES):
                continue
            size = f.stat().st_size
            if total >= ARCHIVE_LIMIT:
                break
            keep = min(size, ARCHIVE_FILE_LIMIT, ARCHIVE_LIMIT - total)
            with f.open("rb") as src:
                src.seek(size - keep)
                data = src.read(keep)
            info = tarfile.TarInfo(str(f.relative_to(run_dir)))
            info.size = len(data)
            info.mtime = int(f.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
            total += keep
    return buf.getvalue()


def unpack(archive: bytes, dest: Path) -> None:
    """Unpack a cell's archive (member names are checked: no absolute paths, no ..)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")


# ---------------------------------------------------------------- client side

def result_from(data: dict[str, Any]) -> ScenarioResult:
    """A ScenarioResult back from its JSON form."""
    data = dict(data)
    machines = {k: MachineResult(**v) for k, v in data.pop("machines", {}).items()}
    steps = [StepResult(**s) for s in data.pop("steps", [])]
    return ScenarioResult(**data, machines=machines, steps=steps)


async def run_on_cluster(address: str, cells: list[LoadedScenario], kernel: str | None,
                         artifacts: Path, kill_worker_once: str | None = None,
                         on_done: Any = None) -> list[ScenarioResult]:
    """Submit every cell to the scheduler at ``address``; collect and unpack the results."""
    from distributed import Client, Event, as_completed

    ident = identity(cells, kernel)
    run_id = uuid.uuid4().hex[:12]
    texts: dict[Path, str] = {}
    try:
        client = await Client(address, asynchronous=True, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise P2PLabError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    async with client:
        workers = (await client.scheduler.identity()).get("workers", {})
        if not any("vms" in w.get("resources", {}) for w in workers.values()):
            raise P2PLabError(f"no worker at {address} offers the 'vms' resource: start "
                              "workers with `dask worker ADDRESS --resources vms=N`")
        cancel = Event(f"p2plab-cancel-{run_id}", client=client)
        futures = {}
        for ls in cells:
            text = texts.setdefault(ls.path, ls.path.read_text(encoding="utf-8"))
            rel = os.path.relpath(ls.path, paths.repo_root())
            task = CellTask(run_id, rel, text, ls.name, kernel, ident,
                            kill_worker_once=ls.name == kill_worker_once)
            fut = client.submit(run_cell, task, key=f"p2plab-{run_id}-{ls.name}", pure=False,
                                resources={"vms": len(ls.scenario.machines)})
            futures[fut] = ls
        log.info("cells submitted", cluster=address, cells=len(futures), run=run_id)
        results: list[ScenarioResult] = []
        try:
            async for fut in as_completed(list(futures)):
                ls = futures[fut]
                results.append(await _collect(fut, ls, artifacts))
                if on_done is not None:
                    on_done(results[-1])
        except asyncio.CancelledError:
            # Ctrl-C: every running cell tears down (it polls the event), the rest never start.
            await cancel.set()
            await client.cancel(list(futures))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_drained(client, list(futures)), 60)
            raise
    order = {ls.name: i for i, ls in enumerate(cells)}
    return sorted(results, key=lambda r: order.get(r.name, 0))


async def _drained(client: Any, futures: list[Any]) -> None:
    while any(f.status == "pending" for f in futures):
        await asyncio.sleep(0.5)


async def _collect(fut: Any, ls: LoadedScenario, artifacts: Path) -> ScenarioResult:
    t0 = time.monotonic()
    try:
        out = await fut
    except CellRefused as exc:
        return ScenarioResult(ls.name, str(ls.path), "error", message=str(exc),
                              axes=dict(ls.axes))
    except Exception as exc:  # KilledWorker and the like: say what Dask said
        return ScenarioResult(ls.name, str(ls.path), "error",
                              message=f"{type(exc).__name__}: {exc}", axes=dict(ls.axes))
    res = result_from(out["result"])
    remote = res.run_dir
    local = artifacts / Path(remote).name
    if out["archive"]:
        try:
            unpack(out["archive"], local)
            res.run_dir = str(local)
        except (tarfile.TarError, OSError) as exc:
            # The results stand; only the logs are missing here.
            log.warning("cell archive not unpacked", cell=ls.name, error=str(exc))
            res.message = (res.message + "; " if res.message else "") + \
                f"its run directory could not be unpacked here: {exc}"
    res.worker = out["worker"]
    res.attempts = out["attempts"]
    log.info("cell done", cell=ls.name, status=res.status, worker=res.worker,
             attempts=len(res.attempts), seconds=round(time.monotonic() - t0, 1))
    return res

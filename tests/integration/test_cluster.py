"""Matrix cells on a real Dask cluster (distributed.LocalCluster, two worker
processes, each offering one 'vms'): every cell reported, a worker killed
mid-cell does not lose its cell (the retry is recorded, with where), no QEMU
is left, and a worker built from another commit refuses a cell clearly."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import LocalCluster

from orchestrator import cluster as cl
from orchestrator.scenario import load_scenarios

from .conftest import REPO, pid_alive

MATRIX = "scenarios/p2p-gpu-rebar-matrix.yaml"
KILLED = "p2p-gpu-rebar-matrix[cpu=max,bar=512M]"


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    work = tmp_path / "workers"          # the workers' temporary directories
    work.mkdir()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      resources={"vms": 1}, dashboard_address=None, scheduler_port=0,
                      env={"TMPDIR": str(work)},
                      silence_logs=40) as c:
        yield c, work


def test_a_matrix_on_two_workers_survives_a_dying_worker(
        local_cluster: tuple[LocalCluster, Path], no_leftovers: Path) -> None:
    cluster, work = local_cluster
    out, junit = no_leftovers / "r.json", no_leftovers / "r.xml"
    env = {**os.environ, "P2PLAB_TEST_KILL_WORKER_ONCE": KILLED}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "--cluster",
         cluster.scheduler_address, MATRIX, "--artifacts", str(no_leftovers),
         "--json", str(out), "--junit", str(junit)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    cells = {s["name"]: s for s in data["scenarios"]}
    assert len(cells) == 4 and all(s["status"] == "passed" for s in cells.values())
    # Every cell ran on a worker of this cluster; the killed one twice, on record.
    for name, s in cells.items():
        assert s["worker"] and s["worker"] == s["attempts"][-1]
        assert len(s["attempts"]) == (2 if name == KILLED else 1), s["attempts"]
    # Each cell's artifacts came back from its worker into the client's run directory.
    for s in cells.values():
        run_dir = Path(s["run_dir"])
        assert run_dir.parent == no_leftovers
        assert "Linux version" in (run_dir / "vm0" / "dmesg.log").read_text()
        assert "reboot: Power down" in (run_dir / "vm0" / "console.log").read_text()
        assert (run_dir / "results.json").exists()
    assert "worker" in junit.read_text()
    # No QEMU outlived its worker, the killed one's included.
    pids = [int(p.read_text()) for p in work.rglob("qemu.pid")]
    assert pids, "the killed worker's run directory (and its qemu.pid) should remain"
    assert not [p for p in pids if pid_alive(p)]


def test_a_worker_of_another_commit_refuses_the_cell(
        local_cluster: tuple[LocalCluster, Path], no_leftovers: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, _ = local_cluster
    cells = load_scenarios(REPO / MATRIX)[:1]
    real = cl.identity(cells, None)
    # The client claims another commit; the workers check their own checkout.
    monkeypatch.setattr(cl, "identity",
                        lambda *_: cl.Identity("0" * 40, real.artifacts))
    (res,) = asyncio.run(cl.run_on_cluster(cluster.scheduler_address, cells, None,
                                           no_leftovers))
    assert res.status == "error"
    assert f"runs commit {real.commit}, the cell was built from {'0' * 40}" in res.message
    assert "check that commit out there and run make build" in res.message

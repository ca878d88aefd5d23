"""Every scenario shipped in scenarios/ runs green: a scenario that rots fails CI.

hmm-selftest, two-vms, management-lan, client-server, the p2pgpu scenarios, the
odpnic ones, rdma-userspace and the ReBAR matrix have dedicated tests that look
deeper (on every kernel, or every release kernel); the rest run here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO, run_cli

COVERED_ELSEWHERE = {"hmm-selftest.yaml", "two-vms.yaml", "management-lan.yaml",
                     "client-server.yaml",
                     # tests/integration/test_odpnic.py
                     "rdma-devinfo.yaml", "rdma-pingpong.yaml", "perftest-odp.yaml",
                     "odp-invalidate.yaml", "dmabuf-mr.yaml",
                     # tests/integration/test_rdma_userspace.py
                     "rdma-userspace.yaml",
                     # tests/integration/test_matrix.py
                     "p2p-gpu-rebar-matrix.yaml",
                     # Not in make test: its four hmm-selftest runs take ~10 min of TCG;
                     # test_hmm_selftest.py covers both kernels with intel-iommu.
                     "hmm-selftest-matrix.yaml"}
SCENARIOS = sorted(p.name for p in (REPO / "scenarios").glob("*.yaml")
                   if p.name not in COVERED_ELSEWHERE and not p.name.startswith("p2pgpu-"))


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes(name: str, no_leftovers: Path) -> None:
    out = no_leftovers / "r.json"
    proc = run_cli("run", f"scenarios/{name}", "--artifacts", str(no_leftovers),
                   "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (sc,) = json.loads(out.read_text())["scenarios"]
    assert sc["status"] == "passed"
    assert all(step["status"] == "passed" for step in sc["steps"])

"""The guest's RDMA userspace on every release kernel ``make test`` builds.

``scenarios/rdma-userspace.yaml``: every program and provider in the
initramfs resolves its shared libraries, the tools run with no RDMA device,
then over soft-RoCE ibv_rc_pingpong and the five perftest tests move data on
one VM. The userspace is the same in every initramfs; the kernels differ in
their uverbs and rxe. The debug kernel is left out: rxe under KASAN makes the
scenario four minutes long and tests nothing of ours.

One CLI run per kernel, started together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BackgroundRun, stop_runs

TEST_KERNELS = os.environ.get("P2PLAB_TEST_KERNELS", "7.2 6.12 7.2-debug").split()
# The Makefile names the debug flavour SERIES-debug.
RELEASE_KERNELS = [k for k in TEST_KERNELS if not k.endswith("-debug")]
RUN_TIMEOUT = 900
PERFTEST = ("ib_write_bw", "ib_read_bw", "ib_send_bw", "ib_write_lat", "ib_read_lat")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BackgroundRun]]:
    started: dict[str, BackgroundRun] = {}
    for kernel in RELEASE_KERNELS:
        d = tmp_path_factory.mktemp(f"rdma-{kernel}")
        started[kernel] = BackgroundRun.run_scenarios(kernel, d, RUN_TIMEOUT,
                                                      ["scenarios/rdma-userspace.yaml"])
    yield started
    stop_runs(started.values())


@pytest.mark.parametrize("kernel", RELEASE_KERNELS)
def test_rdma_userspace(kernel: str, runs: dict[str, BackgroundRun]) -> None:
    run = runs[kernel]
    status, out = run.wait()
    assert status == 0, out[-4000:]
    (sc,) = json.loads((run.dir / "results.json").read_text())["scenarios"]
    steps = {step["name"]: step for step in sc["steps"]}
    assert all(step["status"] == "passed" for step in sc["steps"]), sc["message"]
    # Every test really ran: a renamed or dropped step would pass unnoticed.
    for tool in PERFTEST:
        assert f"perftest {tool} loopback over rxe" in steps
    assert sc["metrics"]["pingpong_mbit"] > 0
    # The provider of the odp-nic is in the image and was listed next to rxe's.
    listing = Path(steps["every RDMA program and provider resolves its libraries"]
                   ["artifacts"]["stdout"]).read_text()
    assert "libodpnic-rdmav" in listing and "librxe-rdmav" in listing

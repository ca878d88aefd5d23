"""The odpnic RDMA provider's scenarios on every guest kernel ``make test`` builds.

- On the release kernels (7.2, 6.12), all five, with intel-iommu translating:
  ``rdma-devinfo`` (ibv_devinfo, rdma dev/link), ``rdma-pingpong``
  (ibv_rc_pingpong pinned, ODP, prefetch, events), ``perftest-odp``
  (ib_write_bw and ib_read_lat, pinned and --odp), ``odp-invalidate``
  (odpnic-test: invalidation under traffic, checked by content) and
  ``dmabuf-mr`` (a p2pgpu BO as a dma-buf MR, written from the other VM).
- On the debug kernel, ``odp-invalidate`` and ``dmabuf-mr``: every MR kind,
  the notifier and move_notify under lockdep, KASAN and kmemleak, with the
  modules unloaded before kmemleak's scan.

Every scenario ends by unloading the modules: a WARN or an oops there fails
it, and on the debug kernel so does a leak.  One CLI run per kernel, all
started together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from orchestrator import kernels

from .conftest import BackgroundRun, stop_runs

TEST_KERNELS = os.environ.get("P2PLAB_TEST_KERNELS", "7.2 6.12 7.2-debug").split()
RUN_TIMEOUT = 1800
RELEASE = ("rdma-devinfo", "rdma-pingpong", "perftest-odp", "odp-invalidate", "dmabuf-mr")
DEBUG = ("odp-invalidate", "dmabuf-mr")


def _names(kernel: str) -> tuple[str, ...]:
    return DEBUG if kernels.resolve(kernel).debug else RELEASE


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BackgroundRun]]:
    started: dict[str, BackgroundRun] = {}
    for kernel in TEST_KERNELS:
        d = tmp_path_factory.mktemp(f"odpnic-{kernel}")
        started[kernel] = BackgroundRun.run_scenarios(
            kernel, d, RUN_TIMEOUT, (f"scenarios/{n}.yaml" for n in _names(kernel)),
            "--keep-going")
    yield started
    stop_runs(started.values())


@pytest.mark.parametrize(("kernel", "name"),
                         [(k, n) for k in TEST_KERNELS for n in _names(k)])
def test_odpnic_scenario(kernel: str, name: str, runs: dict[str, BackgroundRun],
                         capsys: pytest.CaptureFixture[str]) -> None:
    sc = runs[kernel].passed_scenario(name)
    built = kernels.resolve(kernel)
    for vm, m in sc["machines"].items():
        assert m["kernel"]["booted"] == built.info["release"], (vm, m["kernel"])
        assert m["kernel_reports"] == [], (vm, m["kernel_reports"])
        if built.debug:
            # kmemleak scanned after the modules' unload and found nothing.
            assert m["kmemleak_leaks"] == 0, vm
    metrics = sc["metrics"]
    shown = {k: metrics[k] for k in sorted(metrics)
             if k.endswith(("_mib_s", "_p50_us", "_p99_us", "usec_per_iter"))
             or k in ("passed", "moves", "drv_fences", "vm0_faults", "vm1_faults")}
    boots = ", ".join(f"{vm} {m['boot_seconds']:.1f} s" for vm, m in sc["machines"].items())
    with capsys.disabled():
        print(f"\n{name} on {kernel}: passed in {sc['duration']:.0f} s (boot {boots})"
              + (f"; {json.dumps(shown)}" if shown else ""))

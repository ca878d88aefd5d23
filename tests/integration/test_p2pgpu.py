"""The p2pgpu driver's scenarios on every guest kernel ``make test`` builds.

- ``p2pgpu-driver`` (BAR resized to 4 GiB, direct aperture) and
  ``p2pgpu-small-bar`` (BAR kept at 256 MiB, windowed) on every kernel, under
  intel-iommu with DMA translated; on the debug kernel they also prove that
  lockdep, KASAN and kmemleak stay quiet through ten unload/load cycles.
- ``p2pgpu-p2p-refused`` (P2PDMA refuses the path; a resize that falls back)
  and ``p2pgpu-small-bar`` under virtio-iommu, on the release kernels.
- ``p2pgpu-dmabuf-helper-bug``, the pin of a 7.2 kernel bug, on the release
  kernels that have the helper (6.19 and later).

One CLI run per kernel, all started together: the release kernels' VMs are
short, and the debug kernel's pair is the long pole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator import kernels

from .conftest import REPO, BackgroundRun, stop_runs

TEST_KERNELS = os.environ.get("P2PLAB_TEST_KERNELS", "7.2 6.12 7.2-debug").split()
RUN_TIMEOUT = 1800
EVERYWHERE = ("p2pgpu-driver", "p2pgpu-small-bar")
RELEASE_ONLY = ("p2pgpu-p2p-refused", "p2pgpu-small-bar-virtio-iommu")
HELPER_BUG = "p2pgpu-dmabuf-helper-bug"


def _names(kernel: str) -> tuple[str, ...]:
    """The scenarios this kernel runs."""
    built = kernels.resolve(kernel)
    if built.debug:
        return EVERYWHERE
    major, minor = (int(x) for x in built.info["release"].split(".")[:2])
    return EVERYWHERE + RELEASE_ONLY + ((HELPER_BUG,) if (major, minor) >= (6, 19) else ())


def _virtio_variant(dest: Path) -> Path:
    """p2pgpu-small-bar with virtio-iommu instead of intel-iommu."""
    data = yaml.safe_load((REPO / "scenarios" / "p2pgpu-small-bar.yaml").read_text())
    data["name"] = "p2pgpu-small-bar-virtio-iommu"
    data["description"] += ", under virtio-iommu"
    for machine in data["machines"]:
        machine["viommu"] = {"model": "virtio-iommu"}
    path = dest / "p2pgpu-small-bar-virtio-iommu.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BackgroundRun]]:
    virtio = _virtio_variant(tmp_path_factory.mktemp("p2pgpu-scenarios"))
    started: dict[str, BackgroundRun] = {}
    for kernel in TEST_KERNELS:
        files = [str(virtio) if n.endswith("virtio-iommu") else f"scenarios/{n}.yaml"
                 for n in _names(kernel)]
        d = tmp_path_factory.mktemp(f"p2pgpu-{kernel}")
        started[kernel] = BackgroundRun.run_scenarios(kernel, d, RUN_TIMEOUT, files,
                                                      "--keep-going")
    yield started
    stop_runs(started.values())


def _cases() -> list[tuple[str, str]]:
    return [(kernel, name) for kernel in TEST_KERNELS for name in _names(kernel)]


@pytest.mark.parametrize(("kernel", "name"), _cases())
def test_p2pgpu_scenario(kernel: str, name: str, runs: dict[str, BackgroundRun],
                         capsys: pytest.CaptureFixture[str]) -> None:
    sc = runs[kernel].passed_scenario(name)
    vm0 = sc["machines"]["vm0"]
    built = kernels.resolve(kernel)
    assert vm0["kernel"]["booted"] == built.info["release"], vm0["kernel"]
    assert vm0["kernel_reports"] == []
    if built.debug:
        # kmemleak scanned after the module's last unload and found nothing.
        assert vm0["kmemleak_leaks"] == 0
    viommu = "virtio-iommu" if name.endswith("virtio-iommu") else "intel-iommu"
    cmdline = json.loads((Path(sc["run_dir"]) / "vm0" / "cmdline.json").read_text())
    assert any(a.startswith(viommu if viommu == "intel-iommu" else "virtio-iommu-pci")
               for a in cmdline), cmdline
    tool = sc["metrics"].get("passed")
    with capsys.disabled():
        print(f"\n{name} on {kernel} ({vm0['kernel']['booted']}, {viommu}): passed"
              + (f", p2pgpu-test pass={tool}" if tool is not None else "")
              + f"; boot {vm0['boot_seconds']:.2f} s, scenario {sc['duration']:.0f} s")

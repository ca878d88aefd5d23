"""scripts/hook-rdma-core.sh and the odpnic provider's constants, without rdma-core.

The hook runs against a stand-in tree holding just what it reads: the top
CMakeLists.txt with upstream's provider lines. The real tree is exercised by
scripts/build-rdma.sh and the rdma-userspace scenario.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "scripts" / "hook-rdma-core.sh"
OURS = REPO / "guest" / "rdma-core" / "providers"
TOP = """\
project(rdma-core C)
add_subdirectory(libibverbs)
if (HAVE_COHERENT_DMA)
add_subdirectory(providers/mlx5)
endif()
add_subdirectory(providers/rxe)
add_subdirectory(providers/siw)
add_subdirectory(libibmad)
"""


def hook(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOOK), str(tree)], capture_output=True, text=True, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "providers" / "siw").mkdir(parents=True)
    (tmp_path / "CMakeLists.txt").write_text(TOP)
    return tmp_path


def test_hook_adds_one_line_per_provider_after_siw(tree: Path) -> None:
    assert hook(tree).returncode == 0
    lines = (tree / "CMakeLists.txt").read_text().splitlines()
    siw = lines.index("add_subdirectory(providers/siw)")
    ours = sorted(p.name for p in OURS.iterdir() if (p / "CMakeLists.txt").is_file())
    assert ours, "no provider under guest/rdma-core/providers"
    assert lines[siw + 1: siw + 1 + len(ours)] == [
        f"add_subdirectory(providers/{n}) # p2plab" for n in ours]
    assert [ln for ln in lines if "# p2plab" not in ln] == TOP.splitlines()
    for name in ours:
        for f in (OURS / name).rglob("*"):
            if f.is_file():
                copy = tree / "providers" / name / f.relative_to(OURS / name)
                assert copy.read_bytes() == f.read_bytes()


def test_hook_is_idempotent_and_rewrites_nothing(tree: Path) -> None:
    assert hook(tree).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()}
    text = (tree / "CMakeLists.txt").read_text()
    again = hook(tree)
    assert again.returncode == 0 and again.stdout == ""
    assert (tree / "CMakeLists.txt").read_text() == text
    # An unchanged mtime is what keeps ninja from re-running cmake and recompiling.
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()} == before


def test_hook_drops_lines_of_providers_we_no_longer_have(tree: Path) -> None:
    top = tree / "CMakeLists.txt"
    top.write_text(TOP.replace("add_subdirectory(providers/siw)\n",
                               "add_subdirectory(providers/siw)\n"
                               "add_subdirectory(providers/gone) # p2plab\n"))
    assert hook(tree).returncode == 0
    assert "providers/gone" not in top.read_text()


def test_hook_refuses_a_tree_that_is_not_rdma_core(tmp_path: Path) -> None:
    (tmp_path / "CMakeLists.txt").write_text("project(qemu C)\n")
    res = hook(tmp_path)
    assert res.returncode != 0 and "not an rdma-core source tree" in res.stderr


def test_hook_refuses_a_tree_without_its_anchor(tree: Path) -> None:
    (tree / "CMakeLists.txt").write_text(TOP.replace("add_subdirectory(providers/siw)\n", ""))
    res = hook(tree)
    assert res.returncode != 0 and "add_subdirectory(providers/siw)" in res.stderr


def _define(text: str, name: str) -> int:
    m = re.search(rf"^#define\s+{name}\s+(0x[0-9a-fA-F]+|\d+)", text, re.M)
    assert m, f"{name} not defined"
    return int(m.group(1), 0)


def test_provider_matches_the_device_the_spec_defines() -> None:
    ours = (OURS / "odpnic" / "odpnic.h").read_text()
    hw = (REPO / "qemu-devices" / "include" / "p2plab" / "odp_nic_hw.h").read_text()
    assert _define(ours, "PCI_VENDOR_ID_ODPNIC") == _define(hw, "ODP_NIC_VENDOR_ID")
    assert _define(ours, "PCI_DEVICE_ID_ODPNIC") == _define(hw, "ODP_NIC_DEVICE_ID")
    src = (OURS / "odpnic" / "odpnic.c").read_text()
    assert "VERBS_PCI_MATCH(PCI_VENDOR_ID_ODPNIC, PCI_DEVICE_ID_ODPNIC" in src
    assert "PROVIDER_DRIVER(odpnic, " in src

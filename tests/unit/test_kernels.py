"""Choosing a guest kernel: names under build/guest/, paths, and what errors say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import kernels
from orchestrator.errors import SetupError
from orchestrator.scenario import parse_scenario


@pytest.fixture
def guest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo root with 7.2 (default) and 6.12 built, the way make kernel guest leaves them."""
    monkeypatch.setenv("P2PLAB_ROOT", str(tmp_path))
    g = tmp_path / "build" / "guest"
    for name, release in (("7.2", "7.2.13"), ("6.12", "6.12.117")):
        d = g / name
        d.mkdir(parents=True)
        for f in ("bzImage", "vmlinux", "initramfs.cpio"):
            (d / f).write_text(f)
        (d / "kernel.json").write_text(json.dumps(
            {"name": name, "flavour": "release", "series": name, "release": release,
             "notice": ""}))
    (g / "default").symlink_to("7.2")
    return g


def test_default_is_the_default_symlink_and_vmlinux_is_preferred(guest: Path) -> None:
    k = kernels.resolve(None)
    assert k.name == "7.2" and k.requested == "default"
    assert k.image == guest / "7.2" / "vmlinux"
    assert k.initrd == guest / "7.2" / "initramfs.cpio"
    assert not k.debug
    assert k.describe("7.2.13")["booted"] == "7.2.13"


def test_a_debug_kernel_stretches_timeouts(guest: Path) -> None:
    d = guest / "7.2-debug"
    d.mkdir()
    for f in ("vmlinux", "initramfs.cpio"):
        (d / f).write_text(f)
    (d / "kernel.json").write_text(json.dumps({"name": "7.2-debug", "flavour": "debug"}))
    k = kernels.resolve("7.2-debug")
    assert k.debug and k.timeout_scale == kernels.DEBUG_TIMEOUT_SCALE > 1
    assert kernels.resolve("7.2").timeout_scale == 1


def test_a_name_picks_its_directory(guest: Path) -> None:
    k = kernels.resolve("6.12")
    assert k.image.parent == guest / "6.12" and k.info["release"] == "6.12.117"


def test_an_unbuilt_name_says_what_is_built_and_what_to_run(guest: Path) -> None:
    with pytest.raises(SetupError, match=r"'7.2-debug' is not built \(built: 6.12, 7.2; "
                                         r"run: make kernel-debug guest-debug\)"):
        kernels.resolve("7.2-debug")


def test_a_path_to_an_image_takes_the_initramfs_beside_it(guest: Path, tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "bzImage").write_text("x")
    (own / "initramfs.cpio").write_text("x")
    k = kernels.resolve(str(own / "bzImage"))
    assert k.image == own / "bzImage" and k.initrd == own / "initramfs.cpio"
    bare = tmp_path / "bare-bzImage"
    bare.write_text("x")
    assert kernels.resolve(str(bare)).initrd == guest / "7.2" / "initramfs.cpio"


def test_a_missing_path_is_an_error(guest: Path) -> None:
    with pytest.raises(SetupError, match="no such file or directory"):
        kernels.resolve("/nonexistent/bzImage")


@pytest.mark.parametrize(("written", "kept"), [("7.2", "7.2"), ("6.10", "6.10"),
                                                ("'6.12'", "6.12"), ("7", "7"),
                                                ("7.2-debug", "7.2-debug")])
def test_kernel_series_are_kept_as_written(written: str, kept: str) -> None:
    text = (f"name: k\nmachines:\n  - name: vm0\n    kernel: {written}\n"
            "steps:\n  - {name: x, exec: 'true'}\n")
    assert parse_scenario(text, "k.yaml").scenario.machines[0].kernel == kept

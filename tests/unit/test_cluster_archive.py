"""The archive a worker sends back: bounded, without scratch disks or sockets,
and unpacked only inside its destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from orchestrator import cluster as cl


def test_pack_keeps_the_end_of_big_files_and_leaves_disks_behind(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setattr(cl, "ARCHIVE_FILE_LIMIT", 1000)
    run = tmp_path / "run"
    (run / "vm0").mkdir(parents=True)
    (run / "vm0" / "console.log").write_bytes(b"a" * 5000 + b"THE END")
    (run / "vm0" / "disk0.img").write_bytes(b"\0" * 4096)
    (run / "vm0" / "empty.log").write_bytes(b"")
    (run / "results.json").write_text("{}")
    out = tmp_path / "out"
    cl.unpack(cl.pack(run), out)
    console = (out / "vm0" / "console.log").read_bytes()
    assert len(console) == 1000 and console.endswith(b"THE END")
    assert not (out / "vm0" / "disk0.img").exists()
    assert (out / "vm0" / "empty.log").read_bytes() == b""
    assert (out / "results.json").read_text() == "{}"


def test_pack_stops_at_the_total_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl, "ARCHIVE_LIMIT", 2500)
    for i in range(5):
        (tmp_path / f"f{i}.log").write_bytes(b"x" * 1000)
    with tarfile.open(fileobj=io.BytesIO(cl.pack(tmp_path)), mode="r:gz") as tar:
        assert sum(m.size for m in tar.getmembers()) == 2500


def test_unpack_refuses_members_outside_the_destination(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.OutsideDestinationError):
        cl.unpack(buf.getvalue(), tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()

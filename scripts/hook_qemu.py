#!/usr/bin/env python3
"""Hook qemu-devices/ into a QEMU source tree, idempotently.

The devices live in hw/p2plab/ of the tree (a content-synced copy, so that an
unchanged file keeps its mtime and ninja rebuilds only what changed).  Three
one-line entries connect them: hw/meson.build, hw/Kconfig and the top-level
trace_events_subdirs list.  Files are rewritten only when their text changes,
so a second run does not trigger a meson reconfigure.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

MARK = "# p2plab"


def write_if_changed(path: Path, text: str) -> None:
    if path.read_text() != text:
        path.write_text(text)
        print(f"hook_qemu: updated {path}")


def sync_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(src) for p in src.rglob("*") if p.is_file()}
    for rel in sorted(wanted):
        s, d = src / rel, dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        if not d.exists() or not filecmp.cmp(s, d, shallow=False):
            shutil.copyfile(s, d)
            print(f"hook_qemu: synced {rel}")
    for p in sorted(dst.rglob("*"), reverse=True):
        rel = p.relative_to(dst)
        if p.is_file() and rel not in wanted:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()


def append_line(path: Path, line: str) -> None:
    text = path.read_text()
    if line not in text.splitlines():
        write_if_changed(path, text.rstrip("\n") + "\n" + line + "\n")


def hook_trace_subdirs(meson: Path, subdirs: list[str]) -> None:
    lines = [ln for ln in meson.read_text().splitlines() if MARK not in ln]
    anchor = next(i for i, ln in enumerate(lines) if ln.strip() == "'hw/misc',")
    indent = lines[anchor][: len(lines[anchor]) - len(lines[anchor].lstrip())]
    new = [f"{indent}'{d}',  {MARK}" for d in subdirs]
    write_if_changed(meson, "\n".join(lines[: anchor + 1] + new + lines[anchor + 1 :]) + "\n")


def main() -> int:
    devices, tree = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    sync_tree(devices, tree / "hw" / "p2plab")
    append_line(tree / "hw" / "meson.build", "subdir('p2plab')")
    append_line(tree / "hw" / "Kconfig", "source p2plab/Kconfig")
    subdirs = sorted(
        "hw/p2plab/" + str(p.parent.relative_to(devices))
        for p in devices.rglob("trace-events")
    )
    hook_trace_subdirs(tree / "meson.build", subdirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

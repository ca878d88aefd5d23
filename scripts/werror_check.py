#!/usr/bin/env python3
"""Recompile the objects under one source directory of a meson build with -Werror.

QEMU is configured with --disable-werror because the rest of its tree is not
ours to keep warning-free on Debian's compiler; our device models are.  Meson
cannot give one source set its own flags, so this replays each matching entry
of compile_commands.json with -Werror added and the output sent to a scratch
file.  A stamp keyed by the commands and the sources' contents skips the
replay when nothing changed.

Usage: werror_check.py BUILD_DIR SUBDIR     (SUBDIR relative to the source root)
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def strip_outputs(argv: list[str]) -> list[str]:
    """Drop -o FILE and the dependency-file options: the replay writes nothing of ninja's."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        if arg in ("-o", "-MF", "-MQ", "-MT"):
            skip = 1
            continue
        if arg in ("-MD", "-MMD"):
            continue
        out.append(arg)
    return out


def main() -> int:
    build, subdir = Path(sys.argv[1]), sys.argv[2].strip("/") + "/"
    entries = [
        e for e in json.loads((build / "compile_commands.json").read_text())
        if subdir in str(Path(e["directory"], e["file"]).resolve())
    ]
    if not entries:
        print(f"werror_check: no compile commands for {subdir} in {build}", file=sys.stderr)
        return 1
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e["file"]):
        digest.update(e["command"].encode())
        src = Path(e["directory"], e["file"])
        digest.update(src.read_bytes())
        # Headers of ours can carry the warning too: include them in the key.
        for hdr in sorted(src.parent.glob("*.h")):
            digest.update(hdr.read_bytes())
    stamp = build / f".werror-{subdir.strip('/').replace('/', '_')}"
    key = digest.hexdigest()
    if stamp.exists() and stamp.read_text() == key:
        return 0
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for e in entries:
            argv = strip_outputs(shlex.split(e["command"])) + ["-Werror", "-o", f"{tmp}/o.o"]
            r = subprocess.run(argv, cwd=e["directory"], capture_output=True, text=True)
            if r.returncode != 0:
                failed += 1
                print(f"werror_check: {e['file']} does not build with -Werror:\n{r.stderr}", file=sys.stderr)
    if failed:
        return 1
    stamp.write_text(key)
    print(f"werror_check: {len(entries)} objects under {subdir} build with -Werror")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading kmemleak's report file: one entry per unreferenced object."""

from __future__ import annotations

from orchestrator.kmemleak import parse_leaks

REPORT = """\
unreferenced object 0xffff888005a1c000 (size 64):
  comm "modprobe", pid 91, jiffies 4294937296
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 5d2c1b0e):
    __kmalloc_cache_noprof+0x2b1/0x3d0
    p2pgpu_probe+0x52/0x410 [p2pgpu]
unreferenced object 0xffff888005a1c400 (size 128):
  comm "modprobe", pid 91, jiffies 4294937297
  backtrace (crc 0):
    p2pgpu_probe+0x99/0x410 [p2pgpu]
"""


def test_each_object_is_one_leak_with_its_backtrace() -> None:
    first, second = parse_leaks(REPORT)
    assert first.startswith("unreferenced object 0xffff888005a1c000 (size 64):")
    assert first.endswith("p2pgpu_probe+0x52/0x410 [p2pgpu]")
    assert second.startswith("unreferenced object 0xffff888005a1c400")


def test_no_leaks_is_an_empty_list() -> None:
    assert parse_leaks("") == []

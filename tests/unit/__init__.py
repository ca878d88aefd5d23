"""Unit tests: no QEMU, no guest."""

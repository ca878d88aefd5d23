"""Tests that run the built QEMU (QMP) and boot the guest."""

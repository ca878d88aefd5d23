"""p2plab orchestrator: run PCIe P2P lab scenarios in QEMU."""

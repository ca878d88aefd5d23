"""Test utilities shared by the device and orchestrator tests."""

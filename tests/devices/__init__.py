"""Device-model tests under qtest."""

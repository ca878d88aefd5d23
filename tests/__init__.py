"""p2plab tests: a package so that tests.support resolves the same everywhere."""

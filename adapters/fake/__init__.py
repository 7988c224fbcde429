"""An in-memory platform: the core's own test double, used by tests and benchmarks."""

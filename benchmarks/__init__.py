"""statefleet's benchmarks: ``python -m benchmarks NAME``; each prints a table and writes JSON."""

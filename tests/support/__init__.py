"""What tests and benchmarks share that is neither a fixture nor product code."""

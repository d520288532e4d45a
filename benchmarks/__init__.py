"""Speed and memory benchmarks; targets live here, never in unit tests."""

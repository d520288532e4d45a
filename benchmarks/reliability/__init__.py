"""Load, overload, fault and fuzz tests of the DIAL services, on 127.0.0.1 only.

    python -m benchmarks.reliability all --markdown deploy/RELIABILITY.md --json benchmarks/results/reliability.json
    python -m benchmarks.reliability load faults --train-tiny

Every service under test is a separate ``dial serve`` process.
"""

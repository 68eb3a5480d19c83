"""reelgen's benchmark suite: ``python -m benchmarks`` (see benchmarks/README.md).

Not part of the test run (pytest collects ``tests/`` only).
"""

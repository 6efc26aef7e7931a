"""The benchmarks of ``tools/benchmark.py``, one module each; each prints its figures side by side
with its peer in one run."""

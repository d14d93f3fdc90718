"""kernelflow's benchmark suite: each workload run by kernelflow and by every installed peer, side by side.

Run it as `python -m bench` (see `python -m bench --help`). Results go to `bench/results/` (git-ignored);
`docs/benchmarks.md` holds the figures of a full run with the machine description.

This package imports nothing heavy at import time, so `bench/__main__.py` can set the thread-count environment
variables before numpy, numba, torch or jax load their thread pools.
"""

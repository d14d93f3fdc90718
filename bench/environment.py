"""Settings that must be in the environment before numpy, numba, torch or jax start their thread pools."""
from __future__ import annotations

import os


def configure(threads: int, cache_dir: str | None) -> None:
    """Use `threads` threads in every library (BLAS, OpenMP, numba, XLA) and, if given, the kernelflow
    persistent cache in `cache_dir` (and torch.compile's in a folder inside it). Must run before those libraries are imported; torch's intra-op pool is
    set again with torch.set_num_threads when torch is imported (bench.peers.import_torch)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if cache_dir is not None:
        os.environ["KERNELFLOW_CACHE_DIR"] = cache_dir
        # torch.compile keeps its own persistent cache (FX graphs, AOTAutograd, kernels): an empty one per run,
        # or its "first call" would be a warm one after the first run on a machine.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache_dir, "torchinductor")

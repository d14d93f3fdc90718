"""Limit the BLAS threads of small GEMMs (numpy's OpenBLAS, through ctypes).

On our 2-core machines a small GEMM (LeNet's convolutions, an MLP layer) split over two OpenBLAS
threads gains little when the machine is quiet and, when another process holds a core, stalls for
milliseconds (one 16x6400x150 GEMM measured 1.7 ms on one thread, 10-120 ms on two under load).
``matmul(a, b, out, macs)`` runs such calls on one thread: it uses OpenBLAS's thread-local setting
(``openblas_set_num_threads_local``), so other threads of the user's program are not affected. Where
the symbol is missing (another BLAS), it does nothing.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# GEMMs with fewer multiply-adds than this run on one BLAS thread. MLP step (largest GEMM 128x784x256,
# 26M MACs), measured with another process busy: one thread 1.6 ms median and steady; two threads
# 1.4 ms median in one run, 36 ms in the next (stalls).
SMALL_GEMM_MACS = 1 << 26


def _load_setter():
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            fn = lib.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    return None


_SET_LOCAL = _load_setter()


def set_threads(n: int) -> int:
    """Set this thread's BLAS thread count; returns the previous one (0 when unknown/unsupported)."""
    if _SET_LOCAL is None or n <= 0:
        return 0
    return _SET_LOCAL(n)


def matmul(a, b, out, macs: int) -> None:
    """``numpy.matmul(a, b, out=out)``, on one BLAS thread when ``macs`` (multiply-adds) is small."""
    if macs < SMALL_GEMM_MACS and _SET_LOCAL is not None:
        old = _SET_LOCAL(1)
        try:
            np.matmul(a, b, out=out)
        finally:
            _SET_LOCAL(old)
    else:
        np.matmul(a, b, out=out)

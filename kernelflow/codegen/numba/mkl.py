"""GEMMs through Intel MKL's CBLAS (the ``mkl`` wheel's ``libmkl_rt``), called by ctypes.

Opt-in: ``KERNELFLOW_BLAS=mkl`` (with ``pip install kernelflow[mkl]``); the default is numpy's OpenBLAS.

Why it is there: alone, MKL runs the small GEMMs of training steps 1.2-1.5x faster than the OpenBLAS
that numpy bundles on our 2-core AVX-512 machines (two threads: 128x784x256 192 against 231 us,
32x256x1024 70 against 103 us, 32x1024x256 84 against 112 us; torch, on MKL too, measures the same).
Probably not a fair fight: those machines' environment likely pinned OpenBLAS to its AVX2 kernels
(OPENBLAS_CORETYPE=Haswell, as on our Zen 5 machines, where its AVX-512 kernels are 1.6x faster on these
GEMMs; see blas.kernel_advice and docs/benchmarks.md).
Why it is not the default: inside a training step it is fast only some of the time. In some processes
W7 (LSTM step) took 25.8-28.6 ms on MKL against 30.6-32 on OpenBLAS, and W5 1.02 against 1.15 ms; in
others, on the same machine and the same code, W7 took 36-53 ms on MKL while OpenBLAS stayed at 31-33,
because every recurrence GEMM ran at 127 us on two threads (70 alone, in the same process, right after
the step). We did not find what decides between the two.

Threads: MKL runs on its GNU threading layer, i.e. on libgomp, the OpenMP runtime of numba's ``omp``
threading layer, so GEMMs and parallel kernels share ONE pool of threads. Two pools on two cores fight:
OpenBLAS's threads with libgomp's spinning threads made W7 38-39 ms, and MKL on its own Intel OpenMP
runtime stalled 100 us per call waking threads that passive waiting had put to sleep. For the same
reason libgomp's threads must spin a little between parallel regions (its default), not sleep at once
(``OMP_WAIT_POLICY=PASSIVE``, which kernelflow sets only when it runs on OpenBLAS; see runtime/__init__):
with passive waiting, W7 on MKL took 39-42 ms.

``load()`` returns None, and blas.py stays on numpy's OpenBLAS, unless ``KERNELFLOW_BLAS=mkl``; then it
raises when no ``libmkl_rt`` is installed or libgomp cannot be loaded.
"""
from __future__ import annotations

import ctypes
import glob
import os
import site
import sys

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
MKL_THREADING_GNU = 3
MKL_INTERFACE_LP64 = 0


def _candidates() -> list[str]:
    """Where pip puts ``libmkl_rt``: ``<prefix>/lib`` of the environment (a venv, the user's site, the
    system), then the loader's own search path."""
    dirs = [os.path.join(p, "lib") for p in (sys.prefix, sys.base_prefix, site.getuserbase())]
    found = [path for d in dirs for path in sorted(glob.glob(os.path.join(d, "libmkl_rt.so*")))]
    return found + ["libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"]


class Mkl:
    """The CBLAS entry points kernelflow uses, typed for ctypes."""

    def __init__(self, lib: ctypes.CDLL):
        P, I, F, D = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_double
        self._gemm, self._batched = {}, {}
        for dtype, letter, scalar in ((np.dtype(np.float32), "s", F), (np.dtype(np.float64), "d", D)):
            fn = getattr(lib, f"cblas_{letter}gemm")
            fn.argtypes = [I, I, I, I, I, I, scalar, P, I, P, I, scalar, P, I]
            fn.restype = None
            self._gemm[dtype] = fn
            fn = getattr(lib, f"cblas_{letter}gemm_batch_strided")
            fn.argtypes = [I, I, I, I, I, I, scalar, P, I, I, P, I, I, scalar, P, I, I, I]
            fn.restype = None
            self._batched[dtype] = fn
        self._set_local = lib.MKL_Set_Num_Threads_Local
        self._set_local.argtypes = [I]
        self._set_local.restype = I
        lib.MKL_Get_Max_Threads.restype = I
        self.max_threads = lib.MKL_Get_Max_Threads()

    def set_threads_local(self, n: int) -> int:
        """This thread's MKL thread count (0: back to the global setting); returns the previous one."""
        return self._set_local(n)

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
        """``out[...] = a @ b`` (numpy.matmul semantics, batch dims broadcast) when MKL can take the
        operands as they are: float32/float64, one dtype, every matrix with a unit stride along one of its
        dims, and batch dims that flatten to one uniform stride. False: nothing was done (the caller
        falls back to numpy)."""
        dtype = out.dtype
        fn = self._gemm.get(dtype)
        if fn is None or a.dtype != dtype or b.dtype != dtype or a.ndim < 2 or b.ndim < 2 or out.size == 0 \
                or a.shape[-1] == 0:
            return False
        m, k = a.shape[-2:]
        n = b.shape[-1]
        if out.ndim == 2 and a.ndim == 2 and b.ndim == 2:
            return self._one(fn, a, b, out)
        batch = out.shape[:-2]
        flat = [_one_batch_dim(np.broadcast_to(x, batch + x.shape[-2:])) for x in (a, b)] + [_one_batch_dim(out)]
        if any(f is None for f in flat) or not batch:
            return False
        (xa, sa), (xb, sb), (xc, sc) = flat
        if xc.shape[0] == 1:       # MKL rejects a batch stride of 0 for the output (and prints, no more)
            return self._one(fn, xa[0], xb[0], xc[0])
        la, lb, lc = _layout(xa[0]), _layout(xb[0]), _layout(xc[0])
        if la is None or lb is None or lc is None or lc[0] != NO_TRANS:
            return False
        size = dtype.itemsize
        # MKL checks that each batch stride is 0 (inputs only) or clears one matrix; when one does not,
        # it prints an error and computes NOTHING, so those are declined here
        for x, (trans, ld), stride, may_repeat in ((xa, la, sa, True), (xb, lb, sb, True), (xc, lc, sc, False)):
            if (stride or not may_repeat) and stride < ld * x.shape[1 if trans == NO_TRANS else 2] * size:
                return False
        self._batched[dtype](ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, xa.ctypes.data, la[1], sa // size,
                             xb.ctypes.data, lb[1], sb // size, 0.0, xc.ctypes.data, lc[1], sc // size,
                             xc.shape[0])
        return True

    @staticmethod
    def _one(fn, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
        la, lb, lc = _layout(a), _layout(b), _layout(out)
        if la is None or lb is None or lc is None or lc[0] != NO_TRANS:
            return False
        (m, k), n = a.shape, b.shape[1]
        fn(ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1], 0.0,
           out.ctypes.data, lc[1])
        return True


def _layout(x: np.ndarray):
    """(NO_TRANS or TRANS, leading dimension) of a 2-D array for row-major CBLAS, or None when neither
    dim has a unit stride (a size-1 dim may have any stride)."""
    rows, cols = x.shape
    size = x.itemsize
    s0, s1 = x.strides
    if (s1 == size or cols == 1) and (rows == 1 or (s0 % size == 0 and s0 >= size * cols)):
        return NO_TRANS, max(s0 // size if rows > 1 else cols, 1)
    if (s0 == size or rows == 1) and (cols == 1 or (s1 % size == 0 and s1 >= size * rows)):
        return TRANS, max(s1 // size if cols > 1 else rows, 1)
    return None


def _one_batch_dim(x: np.ndarray):
    """(x viewed as (batch, rows, cols), the stride in bytes between its matrices), or None when its batch
    dims do not flatten to one stride without a copy. A broadcast operand has stride 0."""
    batch = x.shape[:-2]
    strides = [s for d, s in zip(batch, x.strides[:-2]) if d != 1]
    dims = [d for d in batch if d != 1]
    for i in range(len(dims) - 1):
        if strides[i] != strides[i + 1] * dims[i + 1]:
            return None
    stride = strides[-1] if strides else 0
    if stride < 0 or stride % x.itemsize:
        return None
    count = int(np.prod(batch, dtype=np.int64))
    view = np.lib.stride_tricks.as_strided(x, (count,) + x.shape[-2:], (stride,) + x.strides[-2:])
    return view, stride


CHOICES = ("openblas", "mkl")


def load(choice: str | None = None) -> Mkl | None:
    """MKL set up on libgomp (see the module docstring) when ``choice`` (default: the environment's
    ``KERNELFLOW_BLAS``, else "openblas") is "mkl"; None for "openblas"."""
    choice = (os.environ.get("KERNELFLOW_BLAS") or "openblas") if choice is None else choice
    if choice.lower() not in CHOICES:
        raise ValueError(f"KERNELFLOW_BLAS={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice.lower() == "openblas":
        return None
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        try:
            ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)   # the runtime of the GNU layer
        except OSError as exc:
            raise RuntimeError(f"KERNELFLOW_BLAS=mkl: MKL runs on libgomp, which does not load ({exc})") from None
        if lib.MKL_Set_Threading_Layer(MKL_THREADING_GNU) != MKL_THREADING_GNU:
            raise RuntimeError("KERNELFLOW_BLAS=mkl: MKL was set up in this process before kernelflow, "
                               "on another threading layer than GNU (libgomp)")
        lib.MKL_Set_Interface_Layer(MKL_INTERFACE_LP64)
        return Mkl(lib)
    raise RuntimeError("KERNELFLOW_BLAS=mkl: no libmkl_rt found (pip install 'kernelflow[mkl]')")

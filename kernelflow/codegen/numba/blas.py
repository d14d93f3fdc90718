"""GEMMs on numpy's OpenBLAS (or on Intel MKL with ``KERNELFLOW_BLAS=mkl``: mkl.py says why it is not the
default), on one thread or on all of them, whichever has been faster lately. ``LIBRARY`` names the one
in use.

Two threads make a mid-sized GEMM ~1.6x faster on our quiet 2-core machines (128x784x256: 0.34 -> 0.21 ms;
32x256x1024: 0.15 -> 0.09 ms), but when another process holds a core the same call on two threads stalls,
3-40x SLOWER than on one (measured with one other busy process: 0.15 -> 1.0 ms, 0.40 -> 4.6 ms), because
each call waits for the descheduled helper thread. No fixed rule is right for both, so ``matmul`` measures.

The choice is ONE mode for the whole process, not one per GEMM shape: OpenBLAS's helper thread sleeps when
calls run on one thread, and waking it costs about as much as a small GEMM, so a training step that mixes
one-thread and two-thread calls pays that on every switch (W5: 1.1-1.3 ms mixed, 1.0 ms all on two
threads, 1.4 ms all on one). ``ThreadMode`` keeps, per GEMM shape, a running average of the call time in
each mode, measured only on calls that follow a call in the same mode (the pool is then in its steady
state); it starts on one thread (safe under load), and now and then it runs a burst of ``BURST_CALLS``
calls in the other mode and afterwards keeps the mode whose averages, summed over the shapes measured in
both, are smaller (on a quiet machine the first burst, after ``FIRST_BURST`` calls, moves to all threads). A burst that loses doubles
the wait until the next (up to ``MAX_BURST_EVERY`` calls), so a loaded machine pays for few stalled
bursts; one that wins switches the mode. A GEMM shape not seen before brings the next burst back to
within ``FIRST_BURST`` calls (a decision backed off on one model's GEMMs says little about the next
model's: in the bench suite, W7's LSTM inherited W5's one-thread decision and ran 1.5x slower). GEMMs under ``MIN_THREADED_MACS`` multiply-adds always run
on one thread (threads never pay there).

The thread count is set with the library's thread-local setting (``MKL_Set_Num_Threads_Local``,
``openblas_set_num_threads_local``), so other threads of the user's program are not affected. Where the
symbol is missing (another BLAS), calls go straight to ``numpy.matmul``. ``OPENBLAS_NUM_THREADS=1`` (or
``MKL_NUM_THREADS=1``) keeps everything on one thread.
"""
from __future__ import annotations

import ctypes
import glob
import os
import time

import numpy as np

from .mkl import load as load_mkl

MIN_THREADED_MACS = 1 << 21   # below: one thread (a 128x128x128 GEMM is 2M multiply-adds)
BURST_CALLS = 6               # calls per burst in the other mode (the first is not measured)
FIRST_BURST = 16              # calls on one thread before the first burst on all threads
BURST_EVERY = 64              # calls between bursts, doubling while bursts lose,
MAX_BURST_EVERY = 8192        # up to this
SMOOTHING = 0.25              # weight of a new time in a running average


def _openblas_libraries() -> list:
    """The OpenBLAS libraries bundled with numpy (numpy.libs), loaded."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    found = []
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        try:
            found.append(ctypes.CDLL(path))
        except OSError:
            continue
    return found


_OPENBLAS = _openblas_libraries()


def _load_setter():
    for lib in _OPENBLAS:
        fn = getattr(lib, "openblas_set_num_threads_local", None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            return fn
    return None


_SET_LOCAL = _load_setter()
MKL = load_mkl()
LIBRARY = "mkl" if MKL is not None else "openblas"
if MKL is not None:
    _SET_LOCAL = MKL.set_threads_local


def _max_threads() -> int:
    """The library's thread count for this thread (setting 1 returns the previous value, set back)."""
    if MKL is not None:
        return MKL.max_threads
    if _SET_LOCAL is None:
        return 1
    n = _SET_LOCAL(1)
    _SET_LOCAL(n)
    return n


MAX_THREADS = _max_threads()


AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")   # OpenBLAS's kernel names, lower case


def openblas_corename() -> str | None:
    """The kernels numpy's OpenBLAS runs ("Haswell", "SkylakeX", ...); None when it does not say."""
    for lib in _OPENBLAS:
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


def host_has_avx512() -> bool:
    """AVX-512 F/BW/DQ/VL as LLVM sees them (which includes the operating system saving the registers)."""
    import llvmlite.binding as llvm
    features = llvm.get_host_cpu_features()
    return all(features.get(name, False) for name in ("avx512f", "avx512bw", "avx512dq", "avx512vl"))


def kernel_advice(core: str | None, host_avx512: bool) -> str | None:
    """A line for the profile table when OpenBLAS runs kernels without AVX-512 on a CPU that has it.

    OpenBLAS picks its kernels when it loads, from the CPU or from ``OPENBLAS_CORETYPE``; our Zen 5
    machines' environment pins "Haswell" (AVX2), and there the AVX-512 kernels run the training steps'
    GEMMs 1.6x faster (128x784x256 on two threads: 250 -> 150 us; W5 0.98-1.10 -> 0.66-0.76 ms). It is the
    user's setting, so kernelflow does not override it; it says what it costs."""
    if LIBRARY != "openblas" or core is None or not host_avx512 or core.lower() in AVX512_CORES:
        return None
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    why = f" because OPENBLAS_CORETYPE={pinned}" if pinned else ""
    return (f"note: GEMMs run on numpy's OpenBLAS with its {core} kernels{why}, though this CPU has AVX-512; "
            f"its SkylakeX kernels can be much faster (OPENBLAS_CORETYPE=SkylakeX, set before numpy is imported)")


class ThreadMode:
    """The process-wide BLAS mode (0: one thread, 1: all threads) and the measurements behind it."""

    def __init__(self):
        # Start on one thread: on a loaded machine two-thread calls stall, and a first call (a warm
        # start from the compile cache, W7: 133 GEMMs) took 1.1 s there instead of 0.24 s. On a quiet
        # machine the first burst, after FIRST_BURST calls, moves to all threads.
        self.mode = 0
        self.average: dict = {}     # GEMM shape -> [seconds on one thread, on all threads] (0.0: none)
        self.calls = 0
        self.burst_left = 0
        self.every = BURST_EVERY
        self.next_burst = FIRST_BURST
        self.last = -1              # the mode of the previous call
        self.recent = (set(), set())  # shapes measured in each mode since the last decision

    def pick(self) -> int:
        self.calls += 1
        if self.burst_left == 0 and self.calls >= self.next_burst:
            self.burst_left = BURST_CALLS
        if self.burst_left:
            self.burst_left -= 1
            return 1 - self.mode
        return self.mode

    def record(self, shape, mode: int, seconds: float) -> None:
        if shape not in self.average:
            # A GEMM not seen before (another model, another phase of the program): the backed-off
            # decision was made on other shapes, so measure again soon.
            self.average[shape] = [0.0, 0.0]
            self.every = BURST_EVERY
            self.next_burst = min(self.next_burst, self.calls + FIRST_BURST)
        steady, self.last = self.last == mode, mode
        if steady:
            pair = self.average.setdefault(shape, [0.0, 0.0])
            old = pair[mode]
            pair[mode] = seconds if not old else old + SMOOTHING * (seconds - old)
            self.recent[mode].add(shape)
        if self.burst_left == 0 and self.calls >= self.next_burst:
            self._decide()

    def _decide(self) -> None:
        """After a burst: keep the mode whose summed averages are smaller over the shapes measured in both
        modes since the last decision (shapes of an earlier phase of the program do not vote)."""
        both = [self.average[k] for k in self.recent[0] & self.recent[1]]
        self.recent = (set(), set())
        totals = [sum(p[0] for p in both), sum(p[1] for p in both)]
        if both and totals[1 - self.mode] < totals[self.mode]:
            self.mode = 1 - self.mode
            self.every = BURST_EVERY
        else:
            self.every = min(2 * self.every, MAX_BURST_EVERY)
        self.next_burst = self.calls + self.every


MODE = ThreadMode()


def gemm(a, b, out) -> None:
    """``numpy.matmul(a, b, out=out)``, on MKL when it is loaded and takes the operands."""
    if MKL is None or not MKL.matmul(a, b, out):
        np.matmul(a, b, out=out)


def matmul(a, b, out, macs: int) -> None:
    """``numpy.matmul(a, b, out=out)`` in the process's current BLAS mode (``ThreadMode``)."""
    if _SET_LOCAL is None or MAX_THREADS < 2:
        gemm(a, b, out)
        return
    if macs < MIN_THREADED_MACS:
        old = _SET_LOCAL(1)
        try:
            gemm(a, b, out)
        finally:
            _SET_LOCAL(old)
        return
    mode = MODE.pick()
    old = _SET_LOCAL(MAX_THREADS if mode else 1)
    try:
        start = time.perf_counter()
        gemm(a, b, out)
        MODE.record((a.shape, b.shape, a.strides, b.strides), mode, time.perf_counter() - start)
    finally:
        _SET_LOCAL(old)


def _load_omatcopy() -> dict:
    """OpenBLAS's out-of-place transposes (``cblas_somatcopy``/``cblas_domatcopy``) by dtype, under the names
    numpy's bundled OpenBLAS gives them (``scipy_`` prefix, ``64_`` suffix and 64-bit ints for ILP64)."""
    found = {}
    for lib in _OPENBLAS:
        for dtype, letter in ((np.dtype(np.float32), "s"), (np.dtype(np.float64), "d")):
            for name, index in ((f"scipy_cblas_{letter}omatcopy64_", ctypes.c_int64),
                                (f"cblas_{letter}omatcopy64_", ctypes.c_int64),
                                (f"cblas_{letter}omatcopy", ctypes.c_int)):
                fn = getattr(lib, name, None)
                if fn is None or dtype in found:
                    continue
                scalar = ctypes.c_float if letter == "s" else ctypes.c_double
                fn.argtypes = [ctypes.c_int, ctypes.c_int, index, index, scalar, ctypes.c_void_p, index,
                               ctypes.c_void_p, index]
                fn.restype = None
                found[dtype] = fn
    return found


_OMATCOPY = _load_omatcopy()
_ROW_MAJOR, _TRANS = 101, 112


def transpose_copy(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = src.T`` for 2-D arrays. OpenBLAS's omatcopy does it ~3.5x faster than numpy's strided
    copy (a 256x1024 float32 matrix: 62 against 217 us)."""
    fn = _OMATCOPY.get(src.dtype)
    if fn is not None and src.flags.c_contiguous and dst.flags.c_contiguous and dst.dtype == src.dtype \
            and dst.shape == src.shape[::-1] and src.size:
        rows, cols = src.shape
        fn(_ROW_MAJOR, _TRANS, rows, cols, 1.0, src.ctypes.data, cols, dst.ctypes.data, rows)
        return
    np.copyto(dst, src.T)

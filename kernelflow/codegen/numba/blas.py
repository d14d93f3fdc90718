"""GEMMs on numpy's OpenBLAS, with the BLAS thread count chosen per GEMM shape by measurement.

Two threads make a mid-sized GEMM ~1.6x faster on our quiet 2-core machines (128x784x256: 0.34 -> 0.21 ms;
32x256x1024: 0.15 -> 0.09 ms), but when another process holds a core the same call on two threads stalls,
3-10x SLOWER than on one (measured with one other busy process: 0.15 -> 1.0 ms, 0.40 -> 1.1 ms), because
each call waits for the descheduled helper thread. No fixed size threshold is right for both, so
``matmul(a, b, out, macs)`` measures: per GEMM shape it keeps a running average of the call time with one
thread and with all of OpenBLAS's threads, uses the faster, and retries the other now and then
(``ThreadChoice``) so that it follows the machine's load as it changes. GEMMs under
``MIN_THREADED_MACS`` multiply-adds always run on one thread (threads never pay there).

The thread count is set with OpenBLAS's thread-local setting (``openblas_set_num_threads_local``), so other
threads of the user's program are not affected. Where the symbol is missing (another BLAS), calls go
straight to ``numpy.matmul``. ``OPENBLAS_NUM_THREADS=1`` keeps everything on one thread.
"""
from __future__ import annotations

import ctypes
import glob
import os
import time

import numpy as np

MIN_THREADED_MACS = 1 << 21   # below: one thread (a 128x128x128 GEMM is 2M multiply-adds)
WARMUP_CALLS = 4              # per shape: the first calls alternate 1 / all threads
RETRY_EVERY = 32              # then the slower choice is tried again once per this many calls,
MAX_RETRY_EVERY = 1024        # backing off to this while it keeps losing
SMOOTHING = 0.25              # weight of a new time in the running average


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


def _max_threads() -> int:
    if _SET_LOCAL is None:
        return 1
    n = _SET_LOCAL(1)
    _SET_LOCAL(n)
    return n


MAX_THREADS = _max_threads()


class ThreadChoice:
    """For one GEMM shape: running average call times with one thread and with ``MAX_THREADS``, and
    when to retry the slower choice (every ``RETRY_EVERY`` calls, backing off to ``MAX_RETRY_EVERY`` while
    the retries keep losing: under load a retry on all threads is itself a stall)."""

    __slots__ = ("average", "calls", "interval", "next_retry")

    def __init__(self):
        self.average = [0.0, 0.0]   # [one thread, all threads]; 0.0 = not measured yet
        self.calls = 0
        self.interval = RETRY_EVERY
        self.next_retry = WARMUP_CALLS + RETRY_EVERY

    def best(self) -> int:
        one, many = self.average
        return 0 if one <= many else 1

    def pick(self) -> int:
        """0: one thread, 1: all threads."""
        self.calls += 1
        if self.calls <= WARMUP_CALLS or not all(self.average):
            return self.calls % 2
        if self.calls >= self.next_retry:
            return 1 - self.best()
        return self.best()

    def record(self, choice: int, seconds: float) -> None:
        was_best = self.best() if all(self.average) else choice
        old = self.average[choice]
        self.average[choice] = seconds if not old else old + SMOOTHING * (seconds - old)
        if self.calls > WARMUP_CALLS and self.calls >= self.next_retry:  # this was a retry
            lost = self.best() == was_best
            self.interval = min(2 * self.interval, MAX_RETRY_EVERY) if lost else RETRY_EVERY
            self.next_retry = self.calls + self.interval


_CHOICES: dict[tuple, ThreadChoice] = {}


def thread_choice(a, b) -> ThreadChoice:
    key = (a.shape, b.shape, a.strides, b.strides)
    choice = _CHOICES.get(key)
    if choice is None:
        choice = _CHOICES[key] = ThreadChoice()
    return choice


def matmul(a, b, out, macs: int) -> None:
    """``numpy.matmul(a, b, out=out)`` on the thread count that has been faster for this shape."""
    if _SET_LOCAL is None or MAX_THREADS < 2:
        np.matmul(a, b, out=out)
        return
    if macs < MIN_THREADED_MACS:
        old = _SET_LOCAL(1)
        try:
            np.matmul(a, b, out=out)
        finally:
            _SET_LOCAL(old)
        return
    choice = thread_choice(a, b)
    pick = choice.pick()
    old = _SET_LOCAL(MAX_THREADS if pick else 1)
    try:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        choice.record(pick, time.perf_counter() - start)
    finally:
        _SET_LOCAL(old)

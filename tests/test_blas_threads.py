"""The per-shape BLAS thread choice (codegen/numba/blas.py): the policy on given call times, and results."""
import numpy as np

from kernelflow.codegen.numba import blas


def run_calls(choice, seconds_for, n):
    picks = []
    for _ in range(n):
        p = choice.pick()
        picks.append(p)
        choice.record(p, seconds_for(p))
    return picks


def quiet(p):
    return 0.5 if p else 1.0    # all threads twice as fast


def loaded(p):
    return 5.0 if p else 1.0    # another process holds a core: all threads stall


def test_warmup_tries_both_then_keeps_the_faster_and_retries_the_other_less_and_less_while_it_loses():
    choice = blas.ThreadChoice()
    picks = run_calls(choice, quiet, 64 * blas.RETRY_EVERY)
    assert set(picks[:blas.WARMUP_CALLS]) == {0, 1}
    retries = [i for i, p in enumerate(picks) if p == 0 and i >= blas.WARMUP_CALLS]
    gaps = np.diff(retries)
    assert gaps[0] == 2 * blas.RETRY_EVERY and all(g2 >= g1 for g1, g2 in zip(gaps, gaps[1:]))
    assert max(gaps) == blas.MAX_RETRY_EVERY


def test_the_choice_follows_the_load_both_ways():
    choice = blas.ThreadChoice()
    run_calls(choice, quiet, 4 * blas.RETRY_EVERY)
    under_load = run_calls(choice, loaded, 16 * blas.RETRY_EVERY)
    assert under_load[-8 * blas.RETRY_EVERY:].count(1) <= 1        # one thread, an occasional retry
    quiet_again = run_calls(choice, quiet, 8 * blas.MAX_RETRY_EVERY)
    assert quiet_again[-blas.MAX_RETRY_EVERY:].count(0) <= 1       # back on all threads


def test_matmul_is_right_on_either_thread_count():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((96, 300), dtype=np.float32)
    b = rng.standard_normal((300, 200), dtype=np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for macs in (1, 96 * 300 * 200, 1 << 40):   # below the threshold, its own size, forced to measure
        for _ in range(blas.WARMUP_CALLS + 2):  # both choices of the measured path
            out = np.full((96, 200), np.nan, np.float32)
            blas.matmul(a, b, out, macs)
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)

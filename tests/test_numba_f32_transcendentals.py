"""The float32 exp, tanh and logistic helpers of the numba backend (kernelflow/codegen/numba/helpers.py) at
their edges, and the shape of the code they compile to.

The bulk accuracy check (max ulp against a float64 oracle on random bit patterns, numpy's validation
table for tanh) is ``test_f32_transcendentals_within_one_ulp`` in test_codegen_numba.py. Here: the
regions that random inputs rarely reach (tiny arguments where tanh(x) rounds to x, the logistic's
subnormal results, the saturation points), the IEEE special values, and that a loop over the helpers
is vectorized (a scalar fallback would still be correct, and 8-16x slower).
"""
from __future__ import annotations

import re

import numpy as np
from numba import njit

from kernelflow.codegen.numba.helpers import kf_exp, kf_logistic, kf_tanh
from kernelflow.ir import GraphBuilder, TensorType, float32
from kernelflow.runtime import compile_graph


def _run(op, x):
    b = GraphBuilder(f"edge_{op}")
    v = b.add_input(TensorType(float32, x.shape))
    return compile_graph(b.finish([b.emit(op, v)]))(x)[0]


def _ulp_error(got, x, oracle):
    """|got - exact| in units of the spacing of the correctly rounded float32 result."""
    exact = oracle(x.astype(np.float64))
    want = exact.astype(np.float32)
    return np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(want)).astype(np.float64)


def _logistic64(d):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-d))


def test_tanh_of_tiny_arguments_is_the_argument():
    # |x| < 2^-12: tanh(x) = x (1 - x^2/3 ...) rounds to x itself, subnormals included
    rng = np.random.default_rng(3)
    mag = np.exp2(rng.uniform(-149, -12, 20_000)).astype(np.float32)
    x = np.concatenate([mag, -mag, np.float32([1e-45, -1e-45, 2.0**-126, -(2.0**-126)])])
    want = np.tanh(x.astype(np.float64)).astype(np.float32)
    assert np.array_equal(want, x)  # the oracle agrees that these are fixed points
    got = _run("tanh", x)
    assert np.array_equal(got, x)


def test_tanh_near_saturation():
    # tanh rounds to 1 - 2^-24 on [8.46, 9.01] and to 1 above: the clamp (9.1) must not cut in early
    x = np.linspace(7.5, 10.0, 20_001, dtype=np.float32)
    x = np.concatenate([x, -x])
    err = _ulp_error(_run("tanh", x), x, np.tanh)
    assert err.max() <= 1.0
    got = _run("tanh", np.float32([9.0, 9.05, 20.0, -20.0]))
    np.testing.assert_array_equal(got, np.tanh(np.float64([9.0, 9.05, 20.0, -20.0])).astype(np.float32))


def test_logistic_subnormal_and_saturating_results():
    # x in [-104, -87.3]: 1/(1+e^-x) ~ e^x is subnormal (0 below ~ -103.97); x in [15, 18]: 1 - e^-x
    # with e^-x below one ulp of 1
    lo = np.linspace(-106.0, -80.0, 40_001, dtype=np.float32)
    hi = np.linspace(15.0, 18.0, 20_001, dtype=np.float32)
    x = np.concatenate([lo, hi])
    got = _run("logistic", x)
    err = _ulp_error(got, x, _logistic64)
    assert err.max() <= 1.0, (x[err.argmax()], err.max())
    want = _logistic64(x.astype(np.float64)).astype(np.float32)
    assert np.array_equal(got == 0, want == 0)  # underflows to 0 exactly where the rounding does


def test_exp_subnormal_results_and_overflow_edge():
    # x in [-106, -87.3]: e^x is subnormal, the 2^n scaling rounds once (0 below ~ -103.97);
    # x in [88, 90]: e^x overflows to inf from 88.7228 on, where the float64 value rounds to inf
    x = np.concatenate([np.linspace(-106.0, -80.0, 40_001, dtype=np.float32),
                        np.linspace(88.0, 90.0, 20_001, dtype=np.float32)])
    got = _run("exp", x)
    exact = np.exp(x.astype(np.float64))
    with np.errstate(over="ignore"):
        want = exact.astype(np.float32)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    err = np.abs(got[finite] - exact[finite]) / np.spacing(np.abs(want[finite])).astype(np.float64)
    assert err.max() <= 1.0, (x[finite][err.argmax()], err.max())
    assert np.array_equal(got == 0, want == 0)


def test_ieee_special_values():
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan])
    t = _run("tanh", x)
    np.testing.assert_array_equal(t, np.float32([0.0, -0.0, 1.0, -1.0, np.nan, np.nan]))
    assert list(np.signbit(t[:2])) == [False, True]
    s = _run("logistic", x)
    np.testing.assert_array_equal(s, np.float32([0.5, 0.5, 1.0, 0.0, np.nan, np.nan]))
    e = _run("exp", x)
    np.testing.assert_array_equal(e, np.float32([1.0, 1.0, np.inf, 0.0, np.nan, np.nan]))


def test_tanh_is_odd_bit_for_bit():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 0x7F800000, 100_000, dtype=np.uint32).view(np.float32)
    np.testing.assert_array_equal(_run("tanh", -x), -_run("tanh", x))


@njit(error_model="numpy", boundscheck=False)
def _w1_loop(x, out):
    for i in range(x.size):
        v = x[i]
        out[i] = kf_tanh(v * np.float32(0.5) + np.float32(1.0)) * kf_logistic(v) - v * v


def test_loop_over_tanh_and_logistic_is_vectorized():
    """The helpers are branch-free and inlined, so LLVM vectorizes the loop: packed divisions (divps,
    one per helper) and no call into libm. They also mark the kernel for 512-bit vectors."""
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    out = np.empty_like(x)
    _w1_loop(x, out)
    want = np.tanh(x.astype(np.float64) * 0.5 + 1) * _logistic64(x.astype(np.float64)) - x.astype(np.float64) ** 2
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    asm = next(iter(_w1_loop.inspect_asm().values()))
    assert "divps" in asm, "the loop over kf_tanh/kf_logistic no longer vectorizes"
    assert not re.search(r"[$@]_?(tanh|exp)f?\b", asm), "the loop calls into libm"
    llvm = next(iter(_w1_loop.inspect_llvm().values()))
    assert '"prefer-vector-width"="512"' in llvm


@njit(error_model="numpy", boundscheck=False)
def _exp_loop(x, out):
    for i in range(x.size):
        out[i] = kf_exp(x[i])


def test_loop_over_exp_is_vectorized_at_512_bits():
    """softmax's inner loop: exp must vectorize (no libm call, packed FMAs on zmm registers) with its
    integer part kept in int32 (int64 would split every vector into two halves: vpmovsxdq)."""
    x = np.linspace(-20, 20, 64, dtype=np.float32)
    out = np.empty_like(x)
    _exp_loop(x, out)
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64)), rtol=2 ** -23)
    asm = next(iter(_exp_loop.inspect_asm().values()))
    assert re.search(r"vfmadd\d+ps\s+%zmm", asm), "the loop over kf_exp no longer vectorizes on zmm"
    assert not re.search(r"[$@]_?expf?\b", asm), "the loop calls into libm"
    assert "vpmovsxdq" not in asm

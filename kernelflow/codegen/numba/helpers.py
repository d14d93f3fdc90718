"""Scalar helpers the generated numba kernels call (``from kernelflow.codegen.numba.helpers import *``).

Each one gives numpy's semantics for a scalar op where Python's or numba's differ:

* ``kf_div``: true division for floats (IEEE: x/0 is inf or nan), floor division for integers with
  numpy's x // 0 == 0.
* ``kf_maximum`` / ``kf_minimum``: NaN propagates (numpy.maximum), unlike Python's max.
* ``kf_sign``: numpy.sign (NaN stays NaN, unsigned ints are 0 or 1).
* ``kf_cast_<dtype>``: numpy ``astype`` of one scalar (to bool: ``x != 0``).

They are typed per argument type with ``numba.extending.overload``, so the kernel that calls them is
compiled as one unit and numba's disk cache of the kernel holds them too. This module's source text
is part of the kernel cache key, so editing a helper invalidates every cached kernel.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from numba import types
from numba.core.errors import NumbaIRAssumptionWarning
from llvmlite import ir as _ir_early
from numba.core import cgutils
from numba.extending import intrinsic as _intrinsic_early
from numba.extending import overload

# numba's SSA pass runs an internal "pedantic" check that warns about phi variables of IR-inlined
# helpers (inline="always") being out of scope; the generated code is right (the helpers are tested
# against float64 on every float32) and the warning, printed once per kernel, tells a user nothing.
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning, module=r"numba\.core\.ssa")


class quiet_numba_ssa(warnings.catch_warnings):
    """The same filter around one compilation, for callers that reset the process's filters after
    kernelflow was imported (pytest restores them after each test; so can a notebook)."""
    def __enter__(self):
        entered = super().__enter__()
        warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning, module=r"numba\.core\.ssa")
        return entered

__all__ = ["RO_f32", "RO_f64", "RO_i8", "RO_i32", "RO_i64", "RO_u8", "RO_u32", "RO_bool",
           "kf_div", "kf_maximum", "kf_minimum", "kf_sign", "kf_max_acc", "kf_min_acc",
           "kf_cast_f32", "kf_cast_f64", "kf_cast_i8", "kf_cast_i32", "kf_cast_i64",
           "kf_cast_u8", "kf_cast_u32", "kf_cast_bool"]

_JIT = {"error_model": "numpy"}

# Kernel inputs are typed read-only: constants and read-only caller arrays are passed without a copy
# (numba accepts a writable array for a read-only parameter, not the other way round).
RO_f32 = types.Array(types.float32, 1, "C", readonly=True)
RO_f64 = types.Array(types.float64, 1, "C", readonly=True)
RO_i8 = types.Array(types.int8, 1, "C", readonly=True)
RO_i32 = types.Array(types.int32, 1, "C", readonly=True)
RO_i64 = types.Array(types.int64, 1, "C", readonly=True)
RO_u8 = types.Array(types.uint8, 1, "C", readonly=True)
RO_u32 = types.Array(types.uint32, 1, "C", readonly=True)
RO_bool = types.Array(types.boolean, 1, "C", readonly=True)


def kf_div(x, y):  # pragma: no cover - the numba overload below is what runs
    raise NotImplementedError


def kf_maximum(x, y):  # pragma: no cover
    raise NotImplementedError


def kf_minimum(x, y):  # pragma: no cover
    raise NotImplementedError


def kf_sign(x):  # pragma: no cover
    raise NotImplementedError


@overload(kf_div, jit_options=_JIT)
def _div(x, y):
    if isinstance(x, types.Integer):
        def impl(x, y):
            if y == 0:
                return x - x
            return x // y
        return impl

    def impl(x, y):
        return x / y
    return impl


@overload(kf_maximum, jit_options=_JIT)
def _maximum(x, y):
    def impl(x, y):
        return x if (x > y or x != x) else y
    return impl


@overload(kf_minimum, jit_options=_JIT)
def _minimum(x, y):
    def impl(x, y):
        return x if (x < y or x != x) else y
    return impl


def kf_max_acc(acc, x):  # pragma: no cover - the numba overload below is what runs
    raise NotImplementedError


def kf_min_acc(acc, x):  # pragma: no cover
    raise NotImplementedError


def _llvm_extremum(name: str):
    """``llvm.maximum``/``llvm.minimum`` of two floats: NaN propagates, like numpy. Reductions use it
    instead of the select in ``kf_maximum``: LLVM vectorizes a max/min reduction (with ``reassoc``)
    only when it is this intrinsic (a select-based NaN-propagating max runs 6x slower, scalar).
    Signed zeros: -0 < +0 here, while numpy keeps the first of two equal zeros; a reduction's order
    is unspecified anyway."""
    @_intrinsic_early
    def extremum(typingctx, a, b):
        def codegen(context, builder, signature, args):
            ty = args[0].type
            fn = cgutils.get_or_insert_function(builder.module, _ir_early.FunctionType(ty, [ty, ty]),
                                                f"llvm.{name}.f{a.bitwidth}")
            return builder.call(fn, args)
        return a(a, a), codegen
    return extremum


def _make_acc(fallback, name):
    intrinsic = _llvm_extremum(name)

    def typer(acc, x):
        if isinstance(acc, types.Float) and acc == x:
            return lambda acc, x: intrinsic(acc, x)
        return lambda acc, x: fallback(acc, x)
    return typer


@overload(kf_sign, jit_options=_JIT)
def _sign(x):
    if isinstance(x, types.Float):
        def impl(x):  # +-0 and NaN are their own sign; the caller converts to the dtype
            if x > 0:
                return 1.0
            if x < 0:
                return -1.0
            return x + 0.0
        return impl
    if isinstance(x, types.Integer) and not x.signed:
        def impl(x):
            return (x > 0) + x * 0
        return impl

    def impl(x):
        return (x > 0) - (x < 0) + x * 0
    return impl


overload(kf_max_acc, jit_options=_JIT)(_make_acc(kf_maximum, "maximum"))
overload(kf_min_acc, jit_options=_JIT)(_make_acc(kf_minimum, "minimum"))


def _make_cast(name: str, np_type):
    def cast(x):  # pragma: no cover - the numba overload below is what runs
        raise NotImplementedError
    cast.__name__ = cast.__qualname__ = f"kf_cast_{name}"

    if np_type is np.bool_:
        @overload(cast, jit_options=_JIT)
        def _cast(x):
            def impl(x):
                return x != 0
            return impl
    else:
        @overload(cast, jit_options=_JIT)
        def _cast(x):
            def impl(x):
                return np_type(x)
            return impl
    return cast


kf_cast_f32 = _make_cast("f32", np.float32)
kf_cast_f64 = _make_cast("f64", np.float64)
kf_cast_i8 = _make_cast("i8", np.int8)
kf_cast_i32 = _make_cast("i32", np.int32)
kf_cast_i64 = _make_cast("i64", np.int64)
kf_cast_u8 = _make_cast("u8", np.uint8)
kf_cast_u32 = _make_cast("u32", np.uint32)
kf_cast_bool = _make_cast("bool", np.bool_)


# -- vectorizable transcendentals ---------------------------------------------------------------------
# numba's math.exp/log/tanh are calls into libm that LLVM cannot vectorize (the PyPI llvmlite has no
# SVML). For float32 arguments the kernels call these instead: straight-line double-precision code
# (range reduction + polynomial, as XLA does), no branches (selects only), so a loop over them
# vectorizes. The argument is widened to double (exactly: f32 subnormals are normal doubles) and the
# caller rounds the double result to float32 once. The double-precision core is accurate to a few
# 1e-16 relative, so the float32 results are correctly rounded except when the exact value lies within
# ~1e-15 relative of a rounding boundary: max error 1 ulp (0.5 ulp + 2^-29 ulp), checked against
# numpy's validation tables (numpy/_core/tests/data/umath-validation-set-*.csv) in
# tests/test_codegen_numba.py. float64 arguments keep libm (math.*), accurate to < 1 ulp.
# Exceptions: float32 exp (softmax's inner loop), tanh and logistic (W1) are computed in float32
# arithmetic (``_exp_f32``, ``_tanh_f32``, ``_logistic_f32``; twice the vector lanes, ~2.5x faster),
# not correctly rounded: max error against the float64 value: exp 0.79 ulp (every float32 in
# [-104, 89]); tanh 0.93 ulp and
# logistic 0.80 ulp (every float32, both signs); on numpy's tanh validation table <= 1 ulp from its
# correctly rounded values. Their overloads are inlined at numba IR level (``inline="always"``): as
# calls, LLVM's inliner keeps the bigger ones out of line and the loop does not vectorize, and a
# function attribute set inside them would not reach the kernel. All three ask for 512-bit vectors
# in the kernel that calls them (``_wide_vectors``).
__all__ += ["kf_exp", "kf_log", "kf_log1p", "kf_expm1", "kf_tanh", "kf_logistic"]

from llvmlite import ir as _ir  # noqa: E402
from numba import njit as _njit  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402

_LN2 = 0.6931471805599453
_LOG2E = 1.4426950408889634
_SQRT2 = 1.4142135623730951
_EXP_COEFFS = tuple(1.0 / __import__("math").factorial(k) for k in range(14))  # Taylor of exp, |r| <= ln2/2


@_intrinsic
def _f64_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(64))
    return types.int64(types.float64), codegen


@_intrinsic
def _bits_f64(typingctx, n):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.DoubleType())
    return types.float64(types.int64), codegen


_C = _EXP_COEFFS


@_njit(inline="always", error_model="numpy")
def _exp_core(x):
    """exp of a double already clamped to [-700, 700]: x = n ln2 + r, exp(r) by its Taylor series to
    r^13 (|r| <= 0.347: truncation < 1e-17), 2^n built from its exponent bits."""
    n = math.floor(x * _LOG2E + 0.5)
    r = x - n * _LN2
    p = _C[13]
    p = p * r + _C[12]
    p = p * r + _C[11]
    p = p * r + _C[10]
    p = p * r + _C[9]
    p = p * r + _C[8]
    p = p * r + _C[7]
    p = p * r + _C[6]
    p = p * r + _C[5]
    p = p * r + _C[4]
    p = p * r + _C[3]
    p = p * r + _C[2]
    p = p * r + _C[1]
    p = p * r + _C[0]
    return p * _bits_f64((np.int64(n) + 1023) << 52)


@_njit(inline="always", error_model="numpy")
def _clamp(x, lo, hi):
    y = x if x > lo else lo
    return y if y < hi else hi


@_njit(inline="always", error_model="numpy")
def _log_core(x):
    """log of a positive finite normal double: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
    log m = 2 atanh(s), s = (m-1)/(m+1) (|s| <= 0.172), series to s^25 (truncation < 1e-19)."""
    bits = _f64_bits(x)
    e = ((bits >> 52) & 0x7FF) - 1023
    m = _bits_f64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 25.0
    p = p * z + 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return e * _LN2 + 2.0 * s * p


@_njit(inline="always", error_model="numpy")
def _log_any(x):
    """log with the special cases (x < 0: nan, 0: -inf, inf: inf, nan: nan) as selects."""
    safe = x if (x > 0.0 and x < math.inf) else 1.0
    y = _log_core(safe)
    y = y if x > 0.0 else (-math.inf if x == 0.0 else math.nan)
    return y if x < math.inf else x + 0.0 if x == x else x


def kf_exp(x):  # pragma: no cover - the numba overloads below are what run
    raise NotImplementedError


def kf_log(x):  # pragma: no cover
    raise NotImplementedError


def kf_log1p(x):  # pragma: no cover
    raise NotImplementedError


def kf_expm1(x):  # pragma: no cover
    raise NotImplementedError


def kf_tanh(x):  # pragma: no cover
    raise NotImplementedError


def kf_logistic(x):  # pragma: no cover
    raise NotImplementedError


def _is_f32(x) -> bool:
    return isinstance(x, types.Float) and x.bitwidth == 32


@_intrinsic
def _bits_f32(typingctx, n):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.FloatType())
    return types.float32(types.int32), codegen


@_intrinsic
def _fma(typingctx, a, b, c):
    """llvm.fma: a * b + c with one rounding (vfmadd), whatever the kernel's fastmath flags."""
    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = cgutils.get_or_insert_function(builder.module, _ir.FunctionType(ty, [ty, ty, ty]),
                                            f"llvm.fma.f{a.bitwidth}")
        return builder.call(fn, args)
    return a(a, a, a), codegen


_F32 = np.float32
_LOG2E_F, _LN2_HI_F, _LN2_LO_F = _F32(_LOG2E), _F32(0.693145751953125), _F32(1.428606765330187e-06)
_EXP_F = tuple(_F32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                                 1.6666665459e-1, 5.0000001201e-1))  # Cephes expf: exp(r) - 1 - r ~ r^2 p(r)
_EXP_LO_F, _EXP_HI_F, _ONE_F = _F32(-104.0), _F32(89.0), _F32(1.0)
# k = c log2e + 1.5 2^23 rounds c log2e to an integer n held in k's low mantissa bits (the 1.5 keeps
# k's exponent fixed for either sign): n = bits(k) - bits(1.5 2^23).
_EXP_MAGIC_F = _F32(12582912.0)
_EXP_MAGIC_BITS = np.int32(np.array(12582912.0, np.float32).view(np.int32))
_I23, _I127, _IM125 = np.int32(23), np.int32(127), np.int32(-125)


@_njit(inline="always", error_model="numpy")
def _reduce_ln2(c, magic):
    """c = n ln2 + r, |r| <= ln2/2, for exp's float32 cores: (k, r) with k = c log2e + magic, whose low
    mantissa bits hold n (plus the magic's bias), and r to ~2^-48 by FMA Cody-Waite."""
    k = _fma(c, _LOG2E_F, magic)
    n = k - magic
    r = _fma(n, -_LN2_HI_F, c)  # exact: n ln2_hi has <= 24 bits and cancels against c
    return k, _fma(n, -_LN2_LO_F, r)


@_njit(inline="always", error_model="numpy")
def _exp_f32(x):
    """float32 exp in float32 arithmetic (twice the vector lanes of the double core), about 25
    vector instructions, no branches: x clamped to [-104, 89] (NaN passes through), x = n ln2 + r by
    FMA Cody-Waite (r to ~2^-48), exp(r) = (1 + r) + r^2 p(r) with 1 + r split exactly (Fast2Sum) so
    that only the last addition rounds at full size, then times 2^n in two exact-or-once-rounded
    factors: 2^m with m = n clamped to [-125, 127] (the product stays normal, so it is exact), then
    2^(n - m), which rounds subnormal results once and overflows to inf (multiplications, not
    exponent-field additions, so that NaN propagates without a select). Max error against the float64
    value, measured on every float32 in [-104, 89] (outside, the results are 0 and inf, correctly
    rounded): 0.79 ulp; NOT correctly rounded (about 4% of results are above 0.5 ulp). Integer parts
    stay int32 (an int64 intermediate would split each vector in two). Asks for 512-bit vectors in
    the calling kernel (``_wide_vectors``). One core, in L1: 0.26 ns per element, against 0.51 for
    the previous formulation (three-FMA reduction, 2^n built from shifted halves, 256-bit)."""
    a = _EXP_LO_F if x < _EXP_LO_F else _wide_vectors(x)  # NaN < lo is false: NaN stays NaN
    a = _EXP_HI_F if a > _EXP_HI_F else a
    k, r = _reduce_ln2(a, _EXP_MAGIC_F)
    p = _fma(_EXP_F[0], r, _EXP_F[1])
    p = _fma(p, r, _EXP_F[2])
    p = _fma(p, r, _EXP_F[3])
    p = _fma(p, r, _EXP_F[4])
    p = _fma(p, r, _EXP_F[5])
    hi = _ONE_F + r
    lo = (_ONE_F - hi) + r
    y = hi + _fma(r * r, p, lo)  # in [0.7, 1.42]
    ni = _f32_bits(k) - _EXP_MAGIC_BITS
    m = _IM125 if ni < _IM125 else ni
    m = _I127 if m > _I127 else m
    y = y * _bits_f32((m + _I127) << _I23)  # exact: y 2^m is normal
    return y * _bits_f32((ni - m + _I127) << _I23)


@overload(kf_exp, jit_options=_JIT, inline="always")
def _exp(x):
    if _is_f32(x):
        return lambda x: _exp_f32(x)
    return lambda x: math.exp(x)


@overload(kf_log, jit_options=_JIT)
def _log(x):
    if _is_f32(x):
        return lambda x: _log_any(np.float64(x))
    return lambda x: math.log(x)


@overload(kf_log1p, jit_options=_JIT)
def _log1p(x):
    if _is_f32(x):
        def impl(x):
            d = np.float64(x)
            u = 1.0 + d
            # log(u) * d / (u - 1) cancels the rounding of 1 + d; u == 1 only when |d| < 2^-53
            den = u - 1.0
            ratio = d / (den if den != 0.0 else 1.0)
            y = _log_any(u) * (ratio if den != 0.0 else 1.0)
            y = y if den != 0.0 else d
            return y if u < math.inf else _log_any(u)
        return impl
    return lambda x: math.log1p(x)


@overload(kf_expm1, jit_options=_JIT)
def _expm1(x):
    if _is_f32(x):
        def impl(x):
            d = np.float64(x)
            small = d * (1.0 + d * (0.5 + d * (1.0 / 6.0 + d * (1.0 / 24.0 + d * (1.0 / 120.0)))))
            y = _exp_core(_clamp(d, -700.0, 700.0)) - 1.0
            y = small if d * d < 1e-6 else y
            return y if d == d else d
        return impl
    return lambda x: math.expm1(x)


@_intrinsic
def _f32_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.IntType(32))
    return types.int32(types.float32), codegen


def _call_llvm_float_intrinsic(builder, name, args):
    ty = args[0].type
    fn = cgutils.get_or_insert_function(builder.module, _ir.FunctionType(ty, [ty] * len(args)),
                                        f"llvm.{name}.{'f32' if ty == _ir.FloatType() else 'f64'}")
    return builder.call(fn, args)


@_intrinsic
def _fabs(typingctx, a):
    """llvm.fabs: clears the sign bit (one vandps)."""
    def codegen(context, builder, signature, args):
        return _call_llvm_float_intrinsic(builder, "fabs", args)
    return a(a), codegen


@_intrinsic
def _copysign(typingctx, a, b):
    """llvm.copysign: |a| with b's sign bit (one vpternlogd)."""
    def codegen(context, builder, signature, args):
        return _call_llvm_float_intrinsic(builder, "copysign", args)
    return a(a, a), codegen


@_intrinsic
def _wide_vectors(typingctx, x):
    """Identity on x that asks LLVM for 512-bit vectors in the function being compiled (the kernel
    whose loop calls the helper), through the function attribute "prefer-vector-width"="512".
    LLVM's x86 tuning prefers 256-bit vectors by default (some CPUs lower their clock on 512-bit
    instructions), which is right for most loops, but a loop of float32 tanh/logistic is bound by
    vector instruction throughput: with zmm registers W1's loop runs ~1.25x faster here (one thread,
    28 -> 22.5 ms CPU time on 2^24 floats, AVX-512 Xeon; the two divisions per element do not limit
    it, vdivps has its own unit). Per
    function, so other numba code in the process keeps the default; a CPU without AVX-512 ignores
    it. llvmlite's attribute set has no API for string attributes (it validates names against a
    list), hence the plain ``set.add``; should that ever fail, the helper just keeps 256-bit vectors."""
    def codegen(context, builder, signature, args):
        try:
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        except Exception:  # pragma: no cover - a future llvmlite with another attribute set
            pass
        return args[0]
    return x(x), codegen


# exp(c) for the tanh/logistic cores: c = n ln2 + r (|r| <= ln2/2, FMA Cody-Waite, r_hi exact), and
# expm1(r) ~ r + r^2 p(r) with p of degree 4 fitted (weighted least squares, then Lawson's
# iterations) to the absolute error of e^r: 2^-27.9 with these float32 coefficients.
_EXPM1_P = tuple(_F32(c) for c in (0.4999999701976776, 0.16666513681411743, 0.04166741669178009,
                                   0.00836950447410345, 0.0013871093979105353))
# k = c log2e + 1.5 2^23 + bias rounds c log2e to an integer n in k's low mantissa bits (the 1.5 keeps
# the exponent fixed for either sign), so k's bits << 23 are those of 2^(n + bias - 127).
_ROUND_MAGIC = 12582912.0  # 1.5 * 2^23
_MAGIC_TANH = _F32(_ROUND_MAGIC + 127.0)        # 2^n
_MAGIC_LOGISTIC = _F32(_ROUND_MAGIC + 127.0 + 64.0)  # 2^(n + 64): normal down to n = -190
_TANH_CLAMP_F, _LOGISTIC_CLAMP_F, _TANH_TINY_F = _F32(9.1), _F32(104.0), _F32(2.0 ** -13)
_TWO64_F, _TWO_M64_F, _ZERO_F = _F32(2.0 ** 64), _F32(2.0 ** -64), _F32(0.0)


@_njit(inline="always", error_model="numpy")
def _exp_reduced(c, magic):
    """For c <= 0 (-18.2 for tanh, -104 for the logistic): (k, v, v_lo) with exp(c) =
    2^n (1 + v + v_lo), the bracket to ~2^-27.9 absolute, n = k - magic (k's bits << 23 are those of
    2^n times the magic's bias); v + v_lo = r + r^2 p(r) split exactly (Fast2Sum: |r| >= |r^2 p|),
    v_lo is dead code for callers that do not use it."""
    k, r = _reduce_ln2(c, magic)
    p = _fma(_EXPM1_P[4], r, _EXPM1_P[3])
    p = _fma(p, r, _EXPM1_P[2])
    p = _fma(p, r, _EXPM1_P[1])
    p = _fma(p, r, _EXPM1_P[0])
    t = r * r * p
    v = r + t
    return k, v, (r - v) + t


@_njit(inline="always", error_model="numpy")
def _tanh_f32(x):
    """float32 tanh in float32 arithmetic, branch-free (so loops vectorize): with a = |x| clamped
    to 9.1 (tanh rounds to 1 from 9.02) and e = exp(-2a) = 2^n (1 + v + v_lo) (n >= -26, 2^n
    normal), tanh(a) = (1 - e) / (1 + e): no cancellation for small a as long as 1 - e is kept as an
    unrounded pair, so e, 1 - e and 1 + e are float32 pairs (exact Fast2Sum/FMA error terms) and
    the quotient is one division plus an FMA residual correction, rounded once at the end; the sign
    of x is copied back (odd bit for bit). Max error 0.93 ulp against the float64 value, measured on
    every float32 (above 0.6 ulp only for 2^-6 < |x| < 1); |x| < 2^-13 gives x itself, +-0 keep
    their sign, NaN -> NaN, +-inf -> +-1. About 40 vector instructions."""
    a = _fabs(_wide_vectors(x))
    c = _TANH_CLAMP_F if a > _TANH_CLAMP_F else a  # NaN stays NaN
    k, v, v_lo = _exp_reduced(-(c + c), _MAGIC_TANH)
    s = _bits_f32(_f32_bits(k) << _I23)
    e = _fma(s, v, s)
    e_lo = _fma(s, v_lo, _fma(s, v, s - e))  # s - e exact (Sterbenz), the inner FMA is e's error
    num = _ONE_F - e
    num_lo = ((_ONE_F - num) - e) - e_lo  # Fast2Sum: e <= 1
    den = _ONE_F + e
    den_lo = ((_ONE_F - den) + e) + e_lo
    rcp = _ONE_F / den
    q = num * rcp
    res = _fma(-q, den, num) + _fma(-q, den_lo, num_lo)  # (num + num_lo) - q (den + den_lo)
    y = _copysign(_fma(res, rcp, q), x)
    # |x| < 2^-13: tanh(x) rounds to x. Below ~2^-22, 1 - e is all in e_lo, whose own rounding
    # (2^-49) is then up to 1 ulp of the result.
    return x if a < _TANH_TINY_F else y


@_njit(inline="always", error_model="numpy")
def _logistic_f32(x):
    """float32 1 / (1 + exp(-x)) in float32 arithmetic, branch-free (selects only). With a = |x|
    clamped to 104 and e = exp(-a) <= 1 (never overflows): x >= 0: 1 / (1 + e), x < 0: e / (1 + e).
    e's mantissa part m = 2^64 e is kept as a float32 pair (the 2^64 keeps it normal down to the
    subnormal results of x ~ -87.3 .. -103.9, which then round once, in the final scaling), 1 + e
    too (Fast2Sum), and the quotient is one division plus an FMA residual correction. Max error
    against the float64 value, measured on every float32: 0.80 ulp (x < 0; 0.55 ulp for x >= 0),
    subnormal results included; -inf -> 0, +inf -> 1, NaN -> NaN. About 40 vector instructions."""
    a = _fabs(_wide_vectors(x))
    c = _LOGISTIC_CLAMP_F if a > _LOGISTIC_CLAMP_F else a
    k, v, v_lo = _exp_reduced(-c, _MAGIC_LOGISTIC)
    sb = _bits_f32(_f32_bits(k) << _I23)  # 2^(n + 64)
    m = _fma(sb, v, sb)
    m_lo = _fma(sb, v_lo, _fma(sb, v, sb - m))
    e = m * _TWO_M64_F
    e_lo = m_lo * _TWO_M64_F
    den = _ONE_F + e
    den_lo = ((_ONE_F - den) + e) + e_lo
    neg = x < _ZERO_F
    num = m if neg else _TWO64_F
    num_lo = m_lo if neg else _ZERO_F
    rcp = _ONE_F / den
    q = num * rcp
    res = _fma(-q, den, num) + _fma(-q, den_lo, num_lo)
    return _fma(res, rcp, q) * _TWO_M64_F


@overload(kf_tanh, jit_options=_JIT, inline="always")
def _tanh(x):
    if _is_f32(x):
        return lambda x: _tanh_f32(x)
    return lambda x: math.tanh(x)


@overload(kf_logistic, jit_options=_JIT, inline="always")
def _logistic(x):
    if _is_f32(x):
        return lambda x: _logistic_f32(x)
    return lambda x: 1.0 / (1.0 + math.exp(-x))

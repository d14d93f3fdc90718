"""Device functions the generated Triton kernels call (``from kernelflow.codegen.triton.device import *``).

Each helper gives numpy's semantics for one scalar op where Triton's own differs:

* ``kf_div``: floats divide IEEE-exactly (``tl.div_rn``; Triton's ``/`` may be approximate), integers
  floor-divide with numpy's ``x // 0 == 0`` (Triton's ``//`` truncates toward zero).
* ``kf_maximum`` / ``kf_minimum``: NaN propagates (numpy.maximum), unlike ``tl.maximum``'s default;
  ``kf_reduce_max`` / ``kf_reduce_min`` are the row reductions with the same rule.
* ``kf_sign``: numpy.sign (NaN stays NaN).
* ``kf_sqrt``: correctly rounded (``tl.sqrt_rn`` for fp32, whose ``tl.sqrt`` is approximate; fp64's is exact).
* ``kf_cast_<dtype>``: numpy ``astype`` (to bool: ``x != 0``).
* ``libdevice``: CUDA's libdevice (log1p, expm1, tanh, pow). Triton's CPU interpreter cannot call
  libdevice (its functions are declarations that only the GPU compiler resolves), so under
  ``TRITON_INTERPRET=1`` the name is bound to ``NumpyLibdevice``, which applies the numpy function to
  the interpreter's arrays. The AOT compile for sm_90 checks the real libdevice calls.

Whether the helpers are interpreter functions or GPU JIT functions is decided when this module is
imported, from ``TRITON_INTERPRET`` (that is when ``@triton.jit`` reads it); a process uses one mode.
"""
from __future__ import annotations

import numpy as np
import triton
import triton.language as tl

from . import interpreting

__all__ = ["libdevice", "kf_div", "kf_maximum", "kf_minimum", "kf_reduce_max", "kf_reduce_min",
           "kf_reduce_sum", "kf_sign", "kf_sqrt", "kf_cast_f16", "kf_cast_bf16", "kf_cast_f32", "kf_cast_f64",
           "kf_cast_i8", "kf_cast_i32", "kf_cast_i64", "kf_cast_u8", "kf_cast_u32", "kf_cast_bool",
           "kf_threefry2x32", "interpreting"]


class NumpyLibdevice:
    """The libdevice functions the primitives use, computed with numpy inside Triton's interpreter."""

    @staticmethod
    def _apply(fn, *xs):
        from triton.runtime.interpreter import TensorHandle  # noqa: PLC0415 - interpreter only
        shaped = max(xs, key=lambda x: len(x.shape))  # the block operand, if any, gives the type
        with np.errstate(all="ignore"):
            data = np.asarray(fn(*[x.handle.data for x in xs])).astype(shaped.handle.data.dtype)
        return tl.tensor(TensorHandle(data, shaped.handle.dtype.scalar), shaped.type)

    @staticmethod
    def log1p(x):
        return NumpyLibdevice._apply(np.log1p, x)

    @staticmethod
    def expm1(x):
        return NumpyLibdevice._apply(np.expm1, x)

    @staticmethod
    def tanh(x):
        return NumpyLibdevice._apply(np.tanh, x)

    @staticmethod
    def pow(x, y):
        return NumpyLibdevice._apply(np.power, x, y)


if interpreting():
    libdevice = NumpyLibdevice()
else:
    from triton.language.extra import libdevice  # noqa: E402


@triton.jit
def kf_div(x, y):
    if x.dtype.is_floating():
        return tl.div_rn(x, y)
    else:
        safe = tl.where(y == 0, 1, y)
        q = x // safe
        r = x - q * safe
        # floor: step down when the remainder's sign differs from the divisor's
        q = tl.where((r != 0) & ((r < 0) != (safe < 0)), q - 1, q)
        return tl.where(y == 0, 0, q)


@triton.jit
def kf_maximum(x, y):
    return tl.where((x > y) | (x != x), x, y)


@triton.jit
def kf_minimum(x, y):
    return tl.where((x < y) | (x != x), x, y)


@triton.jit
def kf_reduce_max(x):
    return tl.reduce(x, 0, kf_maximum)


@triton.jit
def kf_reduce_min(x):
    return tl.reduce(x, 0, kf_minimum)


@triton.jit
def kf_reduce_sum(x):
    return tl.sum(x, axis=0)


@triton.jit
def kf_sign(x):
    s = tl.where(x > 0, 1, tl.where(x < 0, -1, 0)).to(x.dtype)
    return tl.where(x != x, x, s)


@triton.jit
def kf_sqrt(x):
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def kf_cast_f16(x):
    if x.dtype.is_floating() and x.dtype.primitive_bitwidth > 16:
        return x.to(tl.float16, fp_downcast_rounding="rtne")  # round to nearest even, as numpy
    else:
        return x.to(tl.float16)


@triton.jit
def kf_cast_bf16(x):
    if x.dtype.is_floating() and x.dtype.primitive_bitwidth > 16:
        return x.to(tl.bfloat16, fp_downcast_rounding="rtne")  # round to nearest even, as ml_dtypes
    else:
        return x.to(tl.bfloat16)


@triton.jit
def kf_cast_f32(x):
    return x.to(tl.float32)


@triton.jit
def kf_cast_f64(x):
    return x.to(tl.float64)


@triton.jit
def kf_cast_i8(x):
    return x.to(tl.int8)


@triton.jit
def kf_cast_i32(x):
    return x.to(tl.int32)


@triton.jit
def kf_cast_i64(x):
    return x.to(tl.int64)


@triton.jit
def kf_cast_u8(x):
    return x.to(tl.uint8)


@triton.jit
def kf_cast_u32(x):
    return x.to(tl.uint32)


@triton.jit
def kf_cast_bool(x):
    return x != 0


@triton.jit
def _rotl32(x, r: tl.constexpr):
    return (x << r) | (x >> (32 - r))


@triton.jit
def _threefry_group(x0, x1, r0: tl.constexpr, r1: tl.constexpr, r2: tl.constexpr, r3: tl.constexpr):
    x0 = x0 + x1
    x1 = _rotl32(x1, r0) ^ x0
    x0 = x0 + x1
    x1 = _rotl32(x1, r1) ^ x0
    x0 = x0 + x1
    x1 = _rotl32(x1, r2) ^ x0
    x0 = x0 + x1
    x1 = _rotl32(x1, r3) ^ x0
    return x0, x1


@triton.jit
def kf_threefry2x32(k0, k1, x0, x1):
    """threefry2x32-20, exactly as kernelflow/ir/primitives/sources.py (all u32, wrapping)."""
    k2 = k0 ^ k1 ^ 0x1BD11BDA
    x0 = x0 + k0
    x1 = x1 + k1
    x0, x1 = _threefry_group(x0, x1, 13, 15, 26, 6)
    x0 = x0 + k1
    x1 = x1 + k2 + 1
    x0, x1 = _threefry_group(x0, x1, 17, 29, 16, 24)
    x0 = x0 + k2
    x1 = x1 + k0 + 2
    x0, x1 = _threefry_group(x0, x1, 13, 15, 26, 6)
    x0 = x0 + k0
    x1 = x1 + k1 + 3
    x0, x1 = _threefry_group(x0, x1, 17, 29, 16, 24)
    x0 = x0 + k1
    x1 = x1 + k2 + 4
    x0, x1 = _threefry_group(x0, x1, 13, 15, 26, 6)
    x0 = x0 + k2
    x1 = x1 + k0 + 5
    return x0, x1

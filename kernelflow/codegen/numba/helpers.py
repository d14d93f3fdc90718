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

import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["RO_f32", "RO_f64", "RO_i8", "RO_i32", "RO_i64", "RO_u8", "RO_u32", "RO_bool",
           "kf_div", "kf_maximum", "kf_minimum", "kf_sign",
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

"""Reductions: sum, mean, var, max/min, argmax/argmin, any/all, with axes and keepdims."""
from __future__ import annotations

import math

import numpy as np

from ...ir import Value, as_dtype
from ..tracer import Tracer, where_str, wrap


def _keep(trace, v: Value, axes, in_shape, keepdims: bool) -> Tracer:
    if keepdims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(in_shape))
        if v.shape != shape:
            v = trace.emit("reshape", v, shape=shape)
    return wrap(trace, v)


def _sum_dtype(dt: np.dtype) -> np.dtype:
    return np.sum(np.zeros((0,), dt)).dtype  # numpy's accumulator: small ints and bools sum in int64


def reduce_sum(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _reject("sum", out=out, initial=initial, where=where)
    x = _as_operand(x)
    trace = _trace_of(x)
    axes = normalize_axes(axis, ndim_of(x), "sum")
    dt = np.dtype(dtype) if dtype is not None else _sum_dtype(np.dtype(dtype_spec(x)))
    v = value_of(trace, x, dt)
    if axes:
        v = trace.emit("reduce_sum", v, axes=axes)
    return _keep(trace, v, axes, shape_of(x), keepdims)


def mean(x, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _reject("mean", out=out, where=where)
    x = _as_operand(x)
    axes = normalize_axes(axis, ndim_of(x), "mean")
    in_dt = np.dtype(dtype_spec(x))
    dt = np.dtype(dtype) if dtype is not None else (
        in_dt if np.issubdtype(in_dt, np.floating) else np.dtype(np.float64))
    count = math.prod(shape_of(x)[a] for a in axes)
    total = reduce_sum(x, axes, dtype=dt, keepdims=keepdims)
    return _elementwise(np.true_divide, "div", total, np.asarray(count, dt))


def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    _reject("var", out=out, where=where, mean=mean)
    if correction is not None:
        ddof = correction
    x = _as_operand(x)
    axes = normalize_axes(axis, ndim_of(x), "var")
    in_dt = np.dtype(dtype_spec(x))
    dt = np.dtype(dtype) if dtype is not None else (
        in_dt if np.issubdtype(in_dt, np.floating) else np.dtype(np.float64))
    mu = globals()["mean"](x, axes, dtype=dt, keepdims=True)
    centered = ufunc(np.subtract, astype(x, dt), mu)
    count = math.prod(shape_of(x)[a] for a in axes) - ddof
    total = reduce_sum(ufunc(np.multiply, centered, centered), axes, keepdims=keepdims)
    return _elementwise(np.true_divide, "div", total, np.asarray(max(count, 0), dt))


def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    return ufunc(np.sqrt, var(x, axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, where=where,
                              mean=mean, correction=correction))


def _reduce_extremum(op, what):
    def f(x, axis=None, out=None, keepdims=False, initial=None, where=None):
        _reject(what, out=out, initial=initial, where=where)
        x = _as_operand(x)
        trace = _trace_of(x)
        axes = normalize_axes(axis, ndim_of(x), what)
        for a in axes:
            if shape_of(x)[a] == 0:
                raise ValueError(f"zero-size array to reduction operation {what} which has no identity"
                                 f"{where_str()}")
        v = value_of(trace, x)
        if axes:
            v = trace.emit(op, v, axes=axes)
        return _keep(trace, v, axes, shape_of(x), keepdims)
    return f


reduce_max = _reduce_extremum("reduce_max", "max")
reduce_min = _reduce_extremum("reduce_min", "min")


def argmax(x, axis=None, out=None, keepdims=False):
    _reject("argmax", out=out)
    x = _as_operand(x)
    trace = _trace_of(x)
    in_shape = shape_of(x)
    if axis is None:
        x = reshape(x, (-1,))
        ax = 0
    else:
        ax = normalize_axis(axis, len(in_shape), "argmax")
    if shape_of(x)[ax] == 0:
        raise ValueError(f"attempt to get argmax of an empty sequence{where_str()}")
    v = trace.emit("argmax", value_of(trace, x), axis=ax, dtype=as_dtype(np.int64))
    if keepdims:
        shape = (1,) * len(in_shape) if axis is None else tuple(
            1 if i == ax else d for i, d in enumerate(in_shape))
        v = trace.emit("reshape", v, shape=shape)
    return wrap(trace, v)


def argmin(x, axis=None, out=None, keepdims=False):
    """argmax of an order-reversing map that cannot overflow (so ties still pick the first index)."""
    x = _as_operand(x)
    dt = np.dtype(dtype_spec(x))
    if dt == np.dtype(bool):
        flipped = logical_not(x)
    elif np.issubdtype(dt, np.unsignedinteger):
        flipped = ufunc(np.subtract, np.asarray(np.iinfo(dt).max, dt), x)
    elif np.issubdtype(dt, np.integer):
        flipped = ufunc(np.subtract, np.asarray(-1, dt), x)  # -1 - x == ~x, no overflow
    else:
        flipped = ufunc(np.negative, x)
    return argmax(flipped, axis, out=out, keepdims=keepdims)


def _any_all(op, what):
    def f(x, axis=None, out=None, keepdims=False, where=None):
        _reject(what, out=out, where=where)
        as_int = astype(_to_bool(x), np.int32)
        r = _reduce_extremum(op, what)(as_int, axis, keepdims=keepdims)
        return astype(r, np.bool_)
    return f


any_ = _any_all("reduce_max", "any")
all_ = _any_all("reduce_min", "all")


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .operands import (  # noqa: E402
    _as_operand, _reject, _trace_of, dtype_spec, ndim_of, normalize_axes, normalize_axis, shape_of,
    value_of)
from .elementwise import _elementwise, _to_bool, logical_not, ufunc  # noqa: E402
from .shape import astype, reshape  # noqa: E402

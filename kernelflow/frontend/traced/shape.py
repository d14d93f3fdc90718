"""dtype and shape manipulation: astype, reshape, transpose, concatenate, where, pad, ..."""
from __future__ import annotations

import math

import numpy as np

from ...ir import DTypeError, ShapeError, as_dtype
from ..tracer import Tracer, where_str, wrap


def astype(x, dtype):
    x = _as_operand(x)
    trace = _trace_of(x)
    try:
        target = as_dtype(dtype)
    except DTypeError as e:
        raise DTypeError(f"astype: {e}{where_str()}") from None
    return wrap(trace, value_of(trace, x, target.np_dtype))


def reshape(x, shape, order="C"):
    if order != "C":
        raise NotImplementedError(f"reshape: only order='C' is supported on traced arrays{where_str()}")
    x = _as_operand(x)
    trace = _trace_of(x)
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = [int(d) for d in shape]
    size = math.prod(shape_of(x))
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: can only specify one unknown dimension, got {tuple(shape)}{where_str()}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"reshape: cannot reshape array of shape {list(shape_of(x))} into "
                             f"{tuple(shape)}{where_str()}")
        shape[shape.index(-1)] = size // known
    if math.prod(shape) != size or any(d < 0 for d in shape):
        raise ShapeError(f"reshape: cannot reshape array of shape {list(shape_of(x))} (size {size}) into "
                         f"{tuple(shape)}{where_str()}")
    v = value_of(trace, x)
    if v.shape == tuple(shape):
        return wrap(trace, v)
    return wrap(trace, trace.emit("reshape", v, shape=tuple(shape)))


def transpose(x, axes=None):
    x = _as_operand(x)
    trace = _trace_of(x)
    n = ndim_of(x)
    if axes is None:
        perm = tuple(range(n))[::-1]
    else:
        perm = tuple(normalize_axis(a, n, "transpose") for a in axes)
        if sorted(perm) != list(range(n)):
            raise ShapeError(f"transpose: axes {tuple(axes)} are not a permutation of the {n} dimensions"
                             f"{where_str()}")
    v = value_of(trace, x)
    if perm == tuple(range(n)):
        return wrap(trace, v)
    return wrap(trace, trace.emit("transpose", v, perm=perm))


def swapaxes(x, a, b):
    n = ndim_of(x)
    a, b = normalize_axis(a, n, "swapaxes"), normalize_axis(b, n, "swapaxes")
    perm = list(range(n))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def moveaxis(x, source, destination):
    n = ndim_of(x)
    src = [source] if isinstance(source, (int, np.integer)) else list(source)
    dst = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
    src = [normalize_axis(a, n, "moveaxis") for a in src]
    dst = [normalize_axis(a, n, "moveaxis") for a in dst]
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, order)


def expand_dims(x, axis):
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    n = ndim_of(x) + len(axes)
    axes = normalize_axes(axes, n, "expand_dims")
    shape = list(shape_of(x))
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    shape = shape_of(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    else:
        axes = normalize_axes(axis, len(shape), "squeeze")
        bad = [a for a in axes if shape[a] != 1]
        if bad:
            raise ShapeError(f"squeeze: cannot select an axis to squeeze out which has size not equal to one "
                             f"(axis {bad[0]} of shape {list(shape)}){where_str()}")
    return reshape(x, [d for i, d in enumerate(shape) if i not in axes])


def ravel(x, order="C"):
    return reshape(x, (-1,), order=order)


def broadcast_to(x, shape):
    x = _as_operand(x)
    trace = _trace_of(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    target = broadcast_shapes("broadcast_to", shape_of(x), shape)
    if target != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {list(shape_of(x))} to {list(shape)}{where_str()}")
    return wrap(trace, prepare(trace, x, None, shape))


def broadcast_arrays(*xs):
    shape = broadcast_shapes("broadcast_arrays", *(shape_of(x) for x in xs))
    return [broadcast_to(x, shape) if isinstance(x, Tracer) else np.broadcast_to(x, shape) for x in xs]


def _common_dtype(xs, what):
    specs = [dtype_spec(x) for x in xs]
    try:
        return np.result_type(*[s if isinstance(s, np.dtype) else s(0) for s in specs])
    except (TypeError, np.exceptions.DTypePromotionError) as e:
        raise DTypeError(f"{what}: cannot promote dtypes {specs}{where_str()}: {e}") from None


def concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    _reject("concatenate", out=out, casting=casting)
    xs = [_as_operand(a) for a in arrays]
    if not xs:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        xs = [ravel(x) if isinstance(x, Tracer) else np.ravel(x) for x in xs]
        axis = 0
    trace = _trace_of(*xs)
    dt = np.dtype(dtype) if dtype is not None else _common_dtype(xs, "concatenate")
    n = ndim_of(xs[0])
    if n == 0:
        raise ShapeError(f"concatenate: zero-dimensional arrays cannot be concatenated{where_str()}")
    ax = normalize_axis(axis, n, "concatenate")
    vals = [value_of(trace, x, dt) for x in xs]
    if len(vals) == 1:
        return wrap(trace, vals[0])
    return wrap(trace, trace.emit("concatenate", *vals, axis=ax))


def stack(arrays, axis=0, out=None, dtype=None, casting=None):
    _reject("stack", out=out, casting=casting)
    xs = [_as_operand(a) for a in arrays]
    if not xs:
        raise ValueError("need at least one array to stack")
    shapes = {tuple(shape_of(x)) for x in xs}
    if len(shapes) != 1:
        raise ShapeError(f"stack: all input arrays must have the same shape, got "
                         f"{[list(shape_of(x)) for x in xs]}{where_str()}")
    ax = normalize_axis(axis, ndim_of(xs[0]) + 1, "stack")
    trace = _trace_of(*xs)
    expanded = [expand_dims(to_tracer(trace, x), ax) for x in xs]
    return concatenate(expanded, axis=ax, dtype=dtype)


def flip(x, axis=None):
    x = _as_operand(x)
    trace = _trace_of(x)
    axes = normalize_axes(axis, ndim_of(x), "flip")
    v = value_of(trace, x)
    if not axes:
        return wrap(trace, v)
    return wrap(trace, trace.emit("rev", v, axes=axes))


def split(x, indices_or_sections, axis=0):
    """np.split / np.array_split: equal sections (array_split allows unequal) or split points, as slices."""
    return _split(x, indices_or_sections, axis, equal=True)


def array_split(x, indices_or_sections, axis=0):
    return _split(x, indices_or_sections, axis, equal=False)


def _split(x, sections, axis, equal):
    x = _as_operand(x)
    n = ndim_of(x)
    ax = normalize_axis(axis, n, "split")
    size = shape_of(x)[ax]
    if isinstance(sections, (int, np.integer)):
        k = int(sections)
        if k <= 0 or (equal and size % k):
            raise ValueError(f"array split does not result in an equal division: {size} into {k}{where_str()}")
        base, extra = divmod(size, k)
        bounds = [0]
        for i in range(k):
            bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    else:
        bounds = [0] + [min(max(int(i) + (size if int(i) < 0 else 0), 0), size) for i in sections] + [size]
    trace = _trace_of(x)
    tracer = to_tracer(trace, x)
    pieces = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        key = [slice(None)] * n
        key[ax] = slice(lo, max(lo, hi))
        pieces.append(getitem(tracer, tuple(key)))
    return pieces


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm for the 2-norm of vectors and the Frobenius norm (ord None, 2 on vectors, 'fro')."""
    n = ndim_of(x)
    if not (ord is None or ord == "fro" or (ord == 2 and (n == 1 or isinstance(axis, (int, np.integer))))):
        raise NotImplementedError(f"np.linalg.norm: only the 2-norm of vectors and the Frobenius norm "
                                  f"(ord=None/'fro') are supported on traced arrays, got ord={ord!r}{where_str()}")
    x = _as_operand(x)
    if not np.issubdtype(np.dtype(dtype_spec(x)), np.floating):
        x = astype(x, np.float64)
    return ufunc(np.sqrt, reduce_sum(ufunc(np.multiply, x, x), axis, keepdims=keepdims))


def where(cond, x=None, y=None):
    if x is None or y is None:
        raise NotImplementedError(
            f"np.where(cond) with one argument returns data-dependent indices and cannot be traced; use "
            f"np.where(cond, x, y) / kf.where{where_str()}")
    cond, x, y = _as_operand(cond), _as_operand(x), _as_operand(y)
    trace = _trace_of(cond, x, y)
    shape = broadcast_shapes("where", shape_of(cond), shape_of(x), shape_of(y))
    dt = _common_dtype([x, y], "where")
    pred = prepare(trace, _to_bool(cond), np.dtype(bool), shape)
    return wrap(trace, trace.emit("select", pred, prepare(trace, x, dt, shape), prepare(trace, y, dt, shape)))


def clip(a, a_min=None, a_max=None, out=None, **kwargs):
    _reject("clip", out=out)
    a_min = kwargs.pop("min", a_min)
    a_max = kwargs.pop("max", a_max)
    if kwargs:
        raise TypeError(f"clip: unexpected arguments {sorted(kwargs)}")
    r = a
    if a_min is not None:
        r = ufunc(np.maximum, r, a_min)
    if a_max is not None:
        r = ufunc(np.minimum, r, a_max)
    return r


def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, device=None):
    trace = _trace_of(_as_operand(a))
    dt = np.dtype(dtype) if dtype is not None else np.dtype(dtype_spec(a))
    shape = tuple(shape_of(a)) if shape is None else (
        (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape))
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dt), shape)
    with trace.builder.at(_loc()):
        return wrap(trace, trace.builder.full(shape, np.asarray(fill_value).astype(dt), as_dtype(dt)))


def zeros_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 0, dtype=dtype, shape=shape)


def ones_like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    return full_like(a, 1, dtype=dtype, shape=shape)


def pad(array, pad_width, mode="constant", constant_values=0, **kwargs):
    if mode != "constant" or kwargs:
        raise NotImplementedError(f"np.pad: only mode='constant' is supported on traced arrays, got "
                                  f"mode={mode!r}{where_str()}")
    x = _as_operand(array)
    trace = _trace_of(x)
    n = ndim_of(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (n, 2))
    if (widths < 0).any():
        raise ValueError(f"np.pad: pad widths must be non-negative{where_str()}")
    values = np.asarray(constant_values)
    if values.size != 1 and not (values == values.flat[0]).all():
        raise NotImplementedError(f"np.pad: one constant value for all sides is supported on traced arrays"
                                  f"{where_str()}")
    dt = np.dtype(dtype_spec(x))
    value = np.asarray(values.flat[0]).astype(dt).item()
    v = value_of(trace, x)
    if not widths.any():
        return wrap(trace, v)
    return wrap(trace, trace.emit("pad", v, low=tuple(int(w) for w in widths[:, 0]),
                                  high=tuple(int(w) for w in widths[:, 1]), interior=(0,) * n, value=value))


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .operands import (  # noqa: E402
    _as_operand, _loc, _reject, _trace_of, broadcast_shapes, dtype_spec, ndim_of, normalize_axes,
    normalize_axis, prepare, shape_of, to_tracer, value_of)
from .elementwise import _to_bool, ufunc  # noqa: E402
from .reductions import reduce_sum  # noqa: E402
from .indexing import getitem  # noqa: E402

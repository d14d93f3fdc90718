"""Operands: Python scalars, numpy arrays and tracers as IR values; shapes, axes, broadcasting."""
from __future__ import annotations

import numpy as np

from ...ir import ShapeError, Value, as_dtype
from ..tracer import Tracer, Trace, top_trace, where_str, wrap


def _is_python_scalar(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def _as_operand(x):
    """Tracers and Python scalars stay; lists of tracers are stacked; anything else becomes an ndarray."""
    if isinstance(x, Tracer) or _is_python_scalar(x):
        return x
    if isinstance(x, (list, tuple)) and top_trace(*x) is not None:
        return stack(list(x))
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report what could not be converted
        raise TypeError(f"cannot use a {type(x).__name__} as an array operand{where_str()}") from e


def dtype_spec(x):
    """What ``ufunc.resolve_dtypes`` needs: the dtype, or the Python type of a weak scalar."""
    if isinstance(x, Tracer):
        return x.dtype
    if isinstance(x, bool):
        return np.dtype(bool)
    if isinstance(x, (int, float)) and not isinstance(x, np.generic):
        return type(x)
    return np.asarray(x).dtype


def shape_of(x) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def ndim_of(x) -> int:
    return len(shape_of(x))


def value_of(trace: Trace, x, dtype=None) -> Value:
    """The Value of ``x`` in ``trace``: a tracer is lifted, anything else becomes a constant; then cast."""
    if isinstance(x, Tracer):
        v = trace.lift(x)
        if dtype is not None and v.dtype != as_dtype(dtype):
            v = trace.emit("cast", v, dtype=as_dtype(dtype))
        return v
    if isinstance(x, (list, tuple)) and top_trace(*x) is not None:
        return value_of(trace, stack(list(x)), dtype)
    return trace.constant(x, dtype)


def prepare(trace: Trace, x, dtype, shape) -> Value:
    """``x`` as a Value of ``dtype`` broadcast to ``shape``."""
    v = value_of(trace, x, dtype)
    if v.shape != tuple(shape):
        with trace.builder.at(_loc()):
            v = trace.builder.broadcast_to(v, shape)
    return v


def _loc():
    from ..tracer import user_location
    return user_location()


def to_tracer(trace: Trace, x) -> Tracer:
    return wrap(trace, value_of(trace, x))


def _trace_of(*xs) -> Trace:
    t = top_trace(*xs)
    if t is None:  # pragma: no cover - dispatch only reaches here with a tracer
        raise TypeError("internal: no traced operand")
    return t


def broadcast_shapes(what: str, *shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(f"{what}: operands could not be broadcast together with shapes "
                         f"{', '.join(str(list(s)) for s in shapes)}{where_str()}") from None


def normalize_axis(axis, ndim: int, what: str) -> int:
    a = int(axis)
    if not -ndim <= a < ndim:
        raise ShapeError(f"{what}: axis {axis} is out of bounds for an array of dimension {ndim}{where_str()}")
    return a % ndim if ndim else 0


def normalize_axes(axis, ndim: int, what: str) -> tuple[int, ...]:
    """None -> all axes; an int or a sequence -> sorted non-negative axes (duplicates rejected)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        return (normalize_axis(axis, ndim, what),)
    axes = tuple(normalize_axis(a, ndim, what) for a in axis)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"{what}: repeated axis in {tuple(axis)}{where_str()}")
    return tuple(sorted(axes))


def _reject(what: str, **kwargs):
    """numpy keyword arguments that have no traced meaning must be left at their defaults."""
    for name, value in kwargs.items():
        if value is not None and value is not np._NoValue:
            raise NotImplementedError(f"{what}: the argument {name}= is not supported on traced arrays"
                                      f"{where_str()}")


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .shape import stack  # noqa: E402

"""numpy semantics on traced arrays, expressed with IR primitives.

Every function here takes any mix of Tracers, numpy arrays and Python scalars (at least one Tracer) and
returns a Tracer. They follow numpy exactly where the IR can express it: ufunc type resolution (NEP 50:
Python scalars are weak, so ``f32 * 2.0`` stays f32 and ``i32 / i32`` is f64), broadcasting, axis
normalisation with ``keepdims``, basic and integer-array indexing. What cannot be traced raises a clear
error naming the user's line.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import DTypeError, ShapeError, Value, as_dtype
from .tracer import Tracer, Trace, top_trace, where_str, wrap

# ---------------------------------------------------------------------------------------------------
# operands
# ---------------------------------------------------------------------------------------------------


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
    from .tracer import user_location
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


# ---------------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------------


def resolve(ufunc, *xs):
    """numpy's loop dtypes for ``ufunc`` on these operands: (input dtypes..., output dtype)."""
    specs = tuple(dtype_spec(x) for x in xs)
    try:
        return ufunc.resolve_dtypes(specs + (None,) * ufunc.nout)
    except (TypeError, np.exceptions.DTypePromotionError) as e:
        names = ", ".join(s.__name__ if isinstance(s, type) else str(s) for s in specs)
        raise DTypeError(f"{ufunc.__name__}: no implementation for operand dtypes ({names}){where_str()}: "
                         f"{e}") from None


def _elementwise(ufunc, ir_op: str, *xs, bool_op: str | None = None) -> Tracer:
    """Apply IR op ``ir_op`` with numpy's dtype resolution and broadcasting of ``ufunc``."""
    xs = tuple(_as_operand(x) for x in xs)
    trace = _trace_of(*xs)
    dts = resolve(ufunc, *xs)
    in_dts, out_dt = dts[:len(xs)], dts[-1]
    shape = broadcast_shapes(ufunc.__name__, *(shape_of(x) for x in xs)) if len(xs) > 1 else shape_of(xs[0])
    vals = [prepare(trace, x, dt, shape) for x, dt in zip(xs, in_dts)]
    op = bool_op if (bool_op is not None and in_dts[0] == np.dtype(bool)) else ir_op
    if op in _BOOL_HELPERS:
        return _BOOL_HELPERS[op](trace, *vals)
    out = trace.emit(op, *vals)
    if out.dtype != as_dtype(out_dt):
        out = trace.emit("cast", out, dtype=as_dtype(out_dt))
    return wrap(trace, out)


def _const_like(trace: Trace, v: Value, value) -> Value:
    with trace.builder.at(_loc()):
        return trace.builder.full_like(v, value)


def _logical_and(trace, a, b):
    return wrap(trace, trace.emit("select", a, b, _const_like(trace, a, False)))


def _logical_or(trace, a, b):
    return wrap(trace, trace.emit("select", a, _const_like(trace, a, True), b))


def _logical_xor(trace, a, b):
    return wrap(trace, trace.emit("ne", a, b))


def _logical_not(trace, a):
    return wrap(trace, trace.emit("eq", a, _const_like(trace, a, False)))


_BOOL_HELPERS = {"@and": _logical_and, "@or": _logical_or, "@xor": _logical_xor, "@not": _logical_not}


def _to_bool(x):
    """numpy truthiness of each element: x != 0 (bools unchanged)."""
    x = _as_operand(x)
    if not isinstance(x, Tracer):
        return np.asarray(x) != 0
    if dtype_spec(x) == np.dtype(bool):
        return x
    return _elementwise(np.not_equal, "ne", x, 0)


def logical_and(a, b): return _elementwise(np.logical_and, "@and", _to_bool(a), _to_bool(b))
def logical_or(a, b): return _elementwise(np.logical_or, "@or", _to_bool(a), _to_bool(b))
def logical_xor(a, b): return _elementwise(np.logical_xor, "@xor", _to_bool(a), _to_bool(b))
def logical_not(a): return _elementwise(np.logical_not, "@not", _to_bool(a))


def _bitwise(ufunc, bool_op):
    def f(*xs):
        if any(dtype_spec(_as_operand(x)) != np.dtype(bool) for x in xs):
            raise NotImplementedError(f"np.{ufunc.__name__} on integer traced arrays is not supported (no "
                                      f"bitwise primitives); on bool arrays it is the logical op{where_str()}")
        return _elementwise(ufunc, bool_op, *xs)
    return f


def square(x):
    return _elementwise(np.multiply, "mul", x, x)


def reciprocal(x):
    x = _as_operand(x)
    (dt, _) = resolve(np.reciprocal, x)
    if not np.issubdtype(dt, np.floating):
        raise NotImplementedError(f"np.reciprocal of integers is not supported{where_str()}")
    return _elementwise(np.true_divide, "div", np.asarray(1, dt), x)


def floor_divide(x, y):
    x, y = _as_operand(x), _as_operand(y)
    dt = resolve(np.floor_divide, x, y)[0]
    if np.issubdtype(dt, np.integer):
        return _elementwise(np.floor_divide, "div", x, y)  # the IR div floors for integers
    return ufunc(np.floor, _elementwise(np.true_divide, "div", x, y))


def remainder(x, y):
    """numpy's mod: x - floor(x / y) * y (the result has the sign of y)."""
    q = floor_divide(x, y)
    return ufunc(np.subtract, x, ufunc(np.multiply, q, y))


def isnan(x):
    return _elementwise(np.not_equal, "ne", x, x)


def isinf(x):
    return _elementwise(np.equal, "eq", ufunc(np.absolute, x), np.inf)


def isfinite(x):
    return _elementwise(np.less, "lt", ufunc(np.absolute, x), np.inf)


def logaddexp(x, y):
    """log(exp(x) + exp(y)) without overflow."""
    m = ufunc(np.maximum, x, y)
    m = where(isfinite(m), m, 0)
    s = ufunc(np.add, ufunc(np.exp, ufunc(np.subtract, x, m)), ufunc(np.exp, ufunc(np.subtract, y, m)))
    return ufunc(np.add, ufunc(np.log, s), m)


def power(x, y):
    """x ** y. Small constant exponents become multiplications (as numpy's own fast path does)."""
    x, y = _as_operand(x), _as_operand(y)
    dt_x, dt_y, out_dt = resolve(np.power, x, y)
    exponent = None
    if not isinstance(y, Tracer) and np.ndim(y) == 0:
        exponent = float(np.asarray(y))
    if exponent is not None and isinstance(x, Tracer):
        xx = astype(x, out_dt)
        if exponent == 1:
            return xx
        if exponent == 2:
            return _elementwise(np.multiply, "mul", xx, xx)
        if exponent == 0.5 and np.issubdtype(out_dt, np.floating):
            return ufunc(np.sqrt, xx)
        if exponent == -1 and np.issubdtype(out_dt, np.floating):
            return _elementwise(np.true_divide, "div", np.asarray(1, out_dt), xx)
        if exponent == 0:
            return full_like(xx, 1)
        if exponent.is_integer() and 3 <= exponent <= 16:
            return _integer_power(xx, int(exponent))
    if not np.issubdtype(out_dt, np.floating):
        raise DTypeError(f"power: integer powers need a constant exponent between 0 and 16 on traced arrays, "
                         f"got dtypes {dt_x} ** {dt_y}{where_str()}")
    return _elementwise(np.power, "pow", x, y)


def _integer_power(x, n: int):
    """x ** n by repeated squaring (n >= 1)."""
    result = None
    base = x
    while n:
        if n & 1:
            result = base if result is None else _elementwise(np.multiply, "mul", result, base)
        n >>= 1
        if n:
            base = _elementwise(np.multiply, "mul", base, base)
    return result


# ufunc -> implementation on operands. Plain entries map to one IR op.
_SIMPLE_UFUNCS = {
    np.add: ("add", "@or"), np.subtract: ("sub", None), np.multiply: ("mul", "@and"),
    np.true_divide: ("div", None), np.negative: ("neg", None),
    np.exp: ("exp", None), np.log: ("log", None), np.log1p: ("log1p", None), np.expm1: ("expm1", None),
    np.tanh: ("tanh", None), np.sqrt: ("sqrt", None), np.absolute: ("abs", None), np.sign: ("sign", None),
    np.sin: ("sin", None), np.cos: ("cos", None), np.floor: ("floor", None),
    np.maximum: ("maximum", "@or"), np.minimum: ("minimum", "@and"),
    np.equal: ("eq", None), np.not_equal: ("ne", None), np.less: ("lt", None),
    np.less_equal: ("le", None), np.greater: ("gt", None), np.greater_equal: ("ge", None),
}


def _scipy_ufuncs():
    try:
        import scipy.special as sp  # noqa: PLC0415 - optional: scipy.special.erf/expit trace too
    except ImportError:  # pragma: no cover
        return {}
    return {sp.erf: "erf", sp.expit: "logistic"}


def _float_unary(op):
    def f(x):
        x = _as_operand(x)
        dt = dtype_spec(x)
        if not (isinstance(dt, np.dtype) and np.issubdtype(dt, np.floating)):
            x = astype(x, np.float64)
        trace = _trace_of(x)
        return wrap(trace, trace.emit(op, value_of(trace, x)))
    return f


UFUNCS = {
    np.power: power, np.floor_divide: floor_divide, np.remainder: remainder,
    np.square: square, np.reciprocal: reciprocal, np.positive: lambda x: x,
    np.logical_and: logical_and, np.logical_or: logical_or, np.logical_xor: logical_xor,
    np.logical_not: logical_not,
    np.bitwise_and: _bitwise(np.bitwise_and, "@and"), np.bitwise_or: _bitwise(np.bitwise_or, "@or"),
    np.bitwise_xor: _bitwise(np.bitwise_xor, "@xor"), np.invert: _bitwise(np.invert, "@not"),
    np.isnan: isnan, np.isinf: isinf, np.isfinite: isfinite, np.logaddexp: logaddexp,
    np.matmul: lambda a, b: matmul(a, b),
}
for _uf, (_op, _bool_op) in _SIMPLE_UFUNCS.items():
    UFUNCS[_uf] = (lambda uf, op, bop: lambda *xs: _elementwise(uf, op, *xs, bool_op=bop))(_uf, _op, _bool_op)
for _uf, _op in _scipy_ufuncs().items():
    UFUNCS[_uf] = _float_unary(_op)


def ufunc(uf, *xs):
    """Apply numpy ufunc ``uf`` to operands of which at least one is traced."""
    impl = UFUNCS.get(uf)
    if impl is None:
        from .dispatch import unsupported_ufunc  # noqa: PLC0415
        raise unsupported_ufunc(uf)
    return impl(*xs)


# ---------------------------------------------------------------------------------------------------
# dtype and shape manipulation
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# contractions
# ---------------------------------------------------------------------------------------------------


def _dot_general(trace, a: Value, b: Value, contract, batch=((), ())) -> Value:
    return trace.emit("dot_general", a, b, contract=(tuple(contract[0]), tuple(contract[1])),
                      batch=(tuple(batch[0]), tuple(batch[1])))


def _contraction_operands(a, b, what):
    a, b = _as_operand(a), _as_operand(b)
    trace = _trace_of(a, b)
    dt = _common_dtype([a, b], what)
    return trace, value_of(trace, a, dt), value_of(trace, b, dt)


def matmul(a, b, out=None, **kwargs):
    _reject("matmul", out=out)
    trace, va, vb = _contraction_operands(a, b, "matmul")
    if va.ndim == 0 or vb.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {list(va.shape)} and "
                         f"{list(vb.shape)} (use * to multiply by a scalar){where_str()}")
    a_vec, b_vec = va.ndim == 1, vb.ndim == 1
    if a_vec:
        va = trace.emit("reshape", va, shape=(1,) + va.shape)
    if b_vec:
        vb = trace.emit("reshape", vb, shape=vb.shape + (1,))
    if va.shape[-1] != vb.shape[-2]:
        raise ShapeError(f"matmul: contracted dimensions differ: {list(shape_of(a))} @ {list(shape_of(b))} "
                         f"({va.shape[-1]} != {vb.shape[-2]}){where_str()}")
    if vb.ndim == 2:  # (..., n, k) @ (k, m): one contraction, no batch broadcasting needed
        out = _dot_general(trace, va, vb, ((va.ndim - 1,), (0,)))
    else:
        batch = broadcast_shapes("matmul", va.shape[:-2], vb.shape[:-2])
        with trace.builder.at(_loc()):
            va = trace.builder.broadcast_to(va, batch + va.shape[-2:])
            vb = trace.builder.broadcast_to(vb, batch + vb.shape[-2:])
        nb = len(batch)
        out = _dot_general(trace, va, vb, ((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb))))
    shape = list(out.shape)
    if b_vec:
        shape.pop(-1)
    if a_vec:
        shape.pop(-2 if not b_vec else -1)
    if tuple(shape) != out.shape:
        out = trace.emit("reshape", out, shape=tuple(shape))
    return wrap(trace, out)


def dot(a, b, out=None):
    _reject("dot", out=out)
    if ndim_of(a) == 0 or ndim_of(b) == 0:  # np.dot makes Python scalars arrays (not weak)
        a = a if isinstance(a, Tracer) else np.asarray(a)
        b = b if isinstance(b, Tracer) else np.asarray(b)
        return ufunc(np.multiply, a, b)
    trace, va, vb = _contraction_operands(a, b, "dot")
    ca, cb = va.ndim - 1, max(vb.ndim - 2, 0)
    if va.shape[ca] != vb.shape[cb]:
        raise ShapeError(f"dot: shapes {list(va.shape)} and {list(vb.shape)} not aligned: {va.shape[ca]} "
                         f"(dim {ca}) != {vb.shape[cb]} (dim {cb}){where_str()}")
    return wrap(trace, _dot_general(trace, va, vb, ((ca,), (cb,))))


def vdot_inner(a, b):
    """np.inner: contraction over the last axes of both."""
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return ufunc(np.multiply, a, b)
    trace, va, vb = _contraction_operands(a, b, "inner")
    if va.shape[-1] != vb.shape[-1]:
        raise ShapeError(f"inner: last dimensions differ: {list(va.shape)} and {list(vb.shape)}{where_str()}")
    return wrap(trace, _dot_general(trace, va, vb, ((va.ndim - 1,), (vb.ndim - 1,))))


def tensordot(a, b, axes=2):
    trace, va, vb = _contraction_operands(a, b, "tensordot")
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        ax_a, ax_b = tuple(range(va.ndim - n, va.ndim)), tuple(range(n))
    else:
        ax_a, ax_b = axes
        ax_a = (ax_a,) if isinstance(ax_a, (int, np.integer)) else tuple(ax_a)
        ax_b = (ax_b,) if isinstance(ax_b, (int, np.integer)) else tuple(ax_b)
    ax_a = tuple(normalize_axis(x, va.ndim, "tensordot") for x in ax_a)
    ax_b = tuple(normalize_axis(x, vb.ndim, "tensordot") for x in ax_b)
    if len(ax_a) != len(ax_b) or any(va.shape[i] != vb.shape[j] for i, j in zip(ax_a, ax_b)):
        raise ShapeError(f"tensordot: shape mismatch for sum over axes {ax_a} of {list(va.shape)} and {ax_b} "
                         f"of {list(vb.shape)}{where_str()}")
    return wrap(trace, _dot_general(trace, va, vb, (ax_a, ax_b)))


def outer(a, b, out=None):
    _reject("outer", out=out)
    a = reshape(a, (-1, 1)) if isinstance(a, Tracer) else np.reshape(a, (-1, 1))
    b = reshape(b, (1, -1)) if isinstance(b, Tracer) else np.reshape(b, (1, -1))
    return ufunc(np.multiply, a, b)


def einsum(subscripts, *operands, out=None, optimize=False, **kwargs):
    """einsum for one operand (transpose / sum) and two operands (any contraction without repeated
    labels inside an operand, without '...')."""
    _reject("einsum", out=out)
    if not isinstance(subscripts, str):
        raise NotImplementedError("einsum: only the subscripts-string form is supported on traced arrays")
    spec = subscripts.replace(" ", "")
    if "." in spec:
        raise NotImplementedError(f"einsum: '...' is not supported on traced arrays ({subscripts!r}){where_str()}")
    if "->" in spec:
        ins, out_labels = spec.split("->")
    else:
        ins = spec
        letters = ins.replace(",", "")
        out_labels = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    in_labels = ins.split(",")
    if len(in_labels) != len(operands):
        raise ValueError(f"einsum: {len(in_labels)} operand subscripts for {len(operands)} operands")
    for labels, op in zip(in_labels, operands):
        if len(set(labels)) != len(labels):
            raise NotImplementedError(f"einsum: repeated labels within one operand ({labels!r}, a diagonal) "
                                      f"are not supported on traced arrays{where_str()}")
        if len(labels) != ndim_of(op):
            raise ShapeError(f"einsum: subscripts {labels!r} do not match operand shape {list(shape_of(op))}"
                             f"{where_str()}")
    if len(operands) == 1:
        (labels,) = in_labels
        summed = tuple(i for i, c in enumerate(labels) if c not in out_labels)
        r = reduce_sum(operands[0], summed) if summed else to_tracer(_trace_of(operands[0]), operands[0])
        kept = [c for c in labels if c in out_labels]
        return transpose(r, [kept.index(c) for c in out_labels])
    if len(operands) != 2:
        raise NotImplementedError(f"einsum: at most two operands are supported on traced arrays; chain "
                                  f"two-operand einsums{where_str()}")
    la, lb = in_labels
    a, b = operands
    # labels found in one operand only and not in the output are summed out first
    a_only = tuple(i for i, c in enumerate(la) if c not in lb and c not in out_labels)
    b_only = tuple(i for i, c in enumerate(lb) if c not in la and c not in out_labels)
    if a_only:
        a = reduce_sum(a, a_only)
        la = "".join(c for i, c in enumerate(la) if i not in a_only)
    if b_only:
        b = reduce_sum(b, b_only)
        lb = "".join(c for i, c in enumerate(lb) if i not in b_only)
    batch = [c for c in la if c in lb and c in out_labels]
    contract = [c for c in la if c in lb and c not in out_labels]
    trace, va, vb = _contraction_operands(a, b, "einsum")
    for c in batch + contract:
        if va.shape[la.index(c)] != vb.shape[lb.index(c)]:
            raise ShapeError(f"einsum: label {c!r} has size {va.shape[la.index(c)]} in {subscripts.split(',')[0]!r} "
                             f"but {vb.shape[lb.index(c)]} in the second operand{where_str()}")
    out = _dot_general(trace, va, vb, (tuple(la.index(c) for c in contract), tuple(lb.index(c) for c in contract)),
                       (tuple(la.index(c) for c in batch), tuple(lb.index(c) for c in batch)))
    produced = batch + [c for c in la if c not in lb] + [c for c in lb if c not in la]
    return transpose(wrap(trace, out), [produced.index(c) for c in out_labels])


# ---------------------------------------------------------------------------------------------------
# indexing
# ---------------------------------------------------------------------------------------------------


def _normalize_index_items(key, ndim: int):
    """Expand a numpy index into a list of items, one per consumed dimension plus None for new ones."""
    if not isinstance(key, tuple):
        key = (key,)
    items = []
    for k in key:
        if isinstance(k, Tracer):
            if k.dtype == np.dtype(bool):
                raise NotImplementedError(
                    f"indexing with a traced boolean mask has a data-dependent shape and cannot be traced; use "
                    f"kf.where(mask, x, 0) (or a sum with the mask as weights) instead{where_str()}")
            if not np.issubdtype(k.dtype, np.integer):
                raise IndexError(f"arrays used as indices must be of integer type, got {k.dtype}{where_str()}")
            items.append(k)
        elif k is None or k is Ellipsis or isinstance(k, slice):
            items.append(k)
        elif isinstance(k, (bool, np.bool_)):
            raise NotImplementedError(f"indexing with a Python bool is not supported on traced arrays{where_str()}")
        elif isinstance(k, (int, np.integer)):
            items.append(int(k))
        else:
            a = np.asarray(k)
            if a.dtype == np.dtype(bool):
                items.extend(np.nonzero(a))  # a constant mask is a set of integer index arrays
            elif np.issubdtype(a.dtype, np.integer) or a.size == 0:
                items.append(a.astype(np.int64))
            else:
                raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
                                 f"integer or boolean arrays are valid indices, got {a.dtype}{where_str()}")
    consumed = sum(1 for k in items if k is not None and k is not Ellipsis)
    if consumed > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
                         f"{where_str()}")
    n_ellipsis = sum(1 for k in items if k is Ellipsis)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill = [slice(None)] * (ndim - consumed)
    if n_ellipsis:
        i = next(i for i, k in enumerate(items) if k is Ellipsis)
        items = items[:i] + fill + items[i + 1:]
    else:
        items = items + fill
    return items


def _is_array_index(k) -> bool:
    return isinstance(k, (Tracer, np.ndarray))


def getitem(x: Tracer, key):
    items = _normalize_index_items(key, x.ndim)
    advanced = any(_is_array_index(k) for k in items)
    if advanced:
        if any(k is None for k in items):
            raise NotImplementedError(f"mixing None/np.newaxis with integer-array indices is not supported on "
                                      f"traced arrays; add the axis with a separate reshape{where_str()}")
        items = [np.asarray(k, np.int64) if isinstance(k, int) else k for k in items]
    trace = _trace_of(x, *[k for k in items if isinstance(k, Tracer)])
    v = value_of(trace, x)

    # 1. basic indexing: one rev (negative steps), one slice, then a reshape for ints and new axes
    starts, limits, strides, rev_axes, out_shape = [], [], [], [], []
    d = 0
    for k in items:
        if k is None:
            out_shape.append(1)
            continue
        n = v.shape[d]
        if isinstance(k, int):
            i = k + n if k < 0 else k
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for axis {d} with size {n}{where_str()}")
            starts.append(i), limits.append(i + 1), strides.append(1)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            count = len(range(start, stop, step))
            if step < 0:
                rev_axes.append(d)
                start, step = n - 1 - start, -step
            if count == 0:
                start = limit = 0
            else:
                limit = start + (count - 1) * step + 1
            starts.append(start), limits.append(limit), strides.append(step)
            out_shape.append(count)
        else:  # an index array: the whole axis stays for step 2
            starts.append(0), limits.append(n), strides.append(1)
            out_shape.append(n)
        d += 1
    if rev_axes:
        v = trace.emit("rev", v, axes=tuple(rev_axes))
    if (tuple(starts), tuple(limits), tuple(strides)) != ((0,) * v.ndim, v.shape, (1,) * v.ndim):
        v = trace.emit("slice", v, start=tuple(starts), limit=tuple(limits), stride=tuple(strides))
    if not advanced:
        if v.shape != tuple(out_shape):
            v = trace.emit("reshape", v, shape=tuple(out_shape))
        return wrap(trace, v)

    # 2. integer-array indexing: linearise the index arrays and gather along one axis
    adv_dims = [i for i, k in enumerate(items) if _is_array_index(k)]
    idx = [items[i] for i in adv_dims]
    bshape = broadcast_shapes("indexing", *(shape_of(k) for k in idx))
    if len(adv_dims) == 1:
        index = _checked_index(trace, idx[0], v.shape[adv_dims[0]], adv_dims[0])
        return wrap(trace, trace.emit("gather", v, value_of(trace, index), axis=adv_dims[0]))
    rest = [i for i in range(v.ndim) if i not in adv_dims]
    perm = adv_dims + rest
    if perm != list(range(v.ndim)):
        v = trace.emit("transpose", v, perm=tuple(perm))
    sizes = [v.shape[i] for i in range(len(adv_dims))]
    v = trace.emit("reshape", v, shape=(math.prod(sizes),) + v.shape[len(adv_dims):])
    linear = None
    stride = math.prod(sizes)
    for k, n, dim in zip(idx, sizes, adv_dims):
        stride //= max(n, 1)
        term = _checked_index(trace, k, n, dim)
        term = _arith(np.multiply, term, stride) if stride != 1 else term
        linear = term if linear is None else _arith(np.add, linear, term)
    if isinstance(linear, np.ndarray):
        linear = np.broadcast_to(linear, bshape)
    elif linear.shape != bshape:
        linear = broadcast_to(linear, bshape)
    out = trace.emit("gather", v, value_of(trace, linear), axis=0)
    # numpy puts the broadcast index dims where the advanced indices were if they were adjacent
    adjacent = adv_dims == list(range(adv_dims[0], adv_dims[0] + len(adv_dims)))
    if adjacent and adv_dims[0] != 0:
        nb = len(bshape)
        order = list(range(nb, nb + adv_dims[0])) + list(range(nb)) + list(range(nb + adv_dims[0], out.ndim))
        out = trace.emit("transpose", out, perm=tuple(order))
    return wrap(trace, out)


def _arith(uf, a, b):
    """numpy arithmetic when both operands are concrete, traced otherwise."""
    if isinstance(a, Tracer) or isinstance(b, Tracer):
        return ufunc(uf, a, b)
    return uf(a, b)


def _checked_index(trace, k, n: int, dim: int):
    """An index array with negative entries wrapped; constant indices are bounds-checked now."""
    if isinstance(k, np.ndarray):
        if k.size and (k.max() >= n or k.min() < -n):
            bad = k.max() if k.max() >= n else k.min()
            raise IndexError(f"index {bad} is out of bounds for axis {dim} with size {n}{where_str()}")
        return np.where(k < 0, k + n, k).astype(np.int64)
    return where(ufunc(np.less, k, 0), ufunc(np.add, k, n), k)


def take(a, indices, axis=None, out=None, mode=None):
    _reject("take", out=out, mode=mode)
    a = _as_operand(a)
    if axis is None:
        a = ravel(a) if isinstance(a, Tracer) else np.ravel(a)
        axis = 0
    ax = normalize_axis(axis, ndim_of(a), "take")
    if not isinstance(indices, Tracer):
        indices = np.asarray(indices)
        if not np.issubdtype(indices.dtype, np.integer):
            raise IndexError(f"take: indices must be integers, got {indices.dtype}{where_str()}")
    trace = _trace_of(a, indices)
    index = _checked_index(trace, indices, shape_of(a)[ax], ax)
    return wrap(trace, trace.emit("gather", value_of(trace, a), value_of(trace, index), axis=ax))


def take_along_axis(arr, indices, axis):
    """np.take_along_axis as integer-array indexing with an arange for every other axis."""
    n = ndim_of(arr)
    if axis is None:
        return take_along_axis(reshape(arr, (-1,)), indices, 0)
    ax = normalize_axis(axis, n, "take_along_axis")
    if ndim_of(indices) != n:
        raise ShapeError(f"take_along_axis: indices must have the same number of dimensions as arr ({n}), "
                         f"got shape {list(shape_of(indices))}{where_str()}")
    key = []
    for d in range(n):
        if d == ax:
            key.append(indices)
        else:
            shape = [1] * n
            shape[d] = shape_of(arr)[d]
            key.append(np.arange(shape_of(arr)[d]).reshape(shape))
    arr = arr if isinstance(arr, Tracer) else to_tracer(_trace_of(indices), arr)
    return getitem(arr, tuple(key))

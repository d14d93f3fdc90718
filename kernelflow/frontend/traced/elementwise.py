"""Elementwise numpy: ufuncs with numpy's type resolution (NEP 50), logical ops, powers."""
from __future__ import annotations

import numpy as np

from ...ir import DTypeError, Value, as_dtype
from ..tracer import Tracer, Trace, where_str, wrap


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
        from ..dispatch import unsupported_ufunc  # noqa: PLC0415
        raise unsupported_ufunc(uf)
    return impl(*xs)


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .operands import _as_operand, _loc, _trace_of, broadcast_shapes, dtype_spec, prepare, shape_of, value_of  # noqa: E402
from .shape import astype, full_like, where  # noqa: E402
from .contractions import matmul  # noqa: E402

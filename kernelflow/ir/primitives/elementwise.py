"""Elementwise primitives: unary math, binary arithmetic, comparisons, select and cast.

Operands of binary ops have identical types (the frontend inserts broadcasts and casts), so every
elementwise op maps an index of its output to the same index of each operand. Gradient rules are
written with primitives through the builder ``b`` and are therefore differentiable themselves.
Codegen templates are scalar expressions; ``{0}``, ``{1}`` are the operands.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.special

from ..primitive import NONDIFFERENTIABLE, Primitive, register
from ..types import DTypeError, ShapeError, TensorType, as_dtype, bool_


def _c(b, like, value):
    """A constant shaped and typed like ``like``."""
    return b.full_like(like, value)


# -- shape rules -------------------------------------------------------------------------------
def _unary_rule(kinds):
    def rule(x: TensorType, **_):
        if x.dtype.kind not in kinds:
            raise DTypeError(f"needs a {'/'.join(sorted(kinds))} operand, got {x.dtype}")
        return x
    return rule


def _same_types(*types: TensorType):
    first = types[0]
    for t in types[1:]:
        if t.shape != first.shape:
            raise ShapeError(f"operand shapes differ: {', '.join(str(list(t.shape)) for t in types)}")
        if t.dtype != first.dtype:
            raise DTypeError(f"operand dtypes differ: {', '.join(str(t.dtype) for t in types)}")


def _binary_rule(kinds):
    def rule(x: TensorType, y: TensorType, **_):
        _same_types(x, y)
        if x.dtype.kind not in kinds:
            raise DTypeError(f"needs {'/'.join(sorted(kinds))} operands, got {x.dtype}")
        return x
    return rule


def _compare_rule(x: TensorType, y: TensorType):
    _same_types(x, y)
    return x.with_dtype(bool_)


def _select_rule(pred: TensorType, on_true: TensorType, on_false: TensorType):
    if pred.dtype != bool_:
        raise DTypeError(f"the predicate must be bool, got {pred.dtype}")
    if pred.shape != on_true.shape:
        raise ShapeError(f"predicate shape {list(pred.shape)} differs from operand shape {list(on_true.shape)}")
    _same_types(on_true, on_false)
    return on_true


def _cast_rule(x: TensorType, dtype):
    return x.with_dtype(as_dtype(dtype))


FLOAT = {"float"}
NUMERIC = {"float", "int", "uint"}
ANY = {"float", "int", "uint", "bool"}


# -- reference helpers -------------------------------------------------------------------------
def _logistic(x):
    with np.errstate(over="ignore", under="ignore"):  # saturates to 0 or 1, as intended
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _same_dtype(f):
    """numpy ufuncs keep float dtypes; this guards the few that would promote."""
    return lambda x: np.asarray(f(x)).astype(x.dtype, copy=False)


def _div(x, y):
    if x.dtype.kind in "iu":
        with np.errstate(divide="ignore"):
            return np.floor_divide(x, y)
    return np.divide(x, y)


# -- gradient rules ----------------------------------------------------------------------------
def _grad_pow(b, g, n):
    x, p = n.inputs
    y = n.out
    one = _c(b, x, 1.0)
    dx = b.mul(g, b.mul(p, b.pow(x, b.sub(p, one))))
    safe_x = b.select(b.eq(x, _c(b, x, 0.0)), one, x)  # d/dp at x == 0 is 0 (y is 0 there), not nan
    dp = b.mul(g, b.mul(y, b.log(safe_x)))
    return [dx, dp]


def _grad_extremum(gt_op):
    """maximum/minimum: the winner gets the cotangent; ties split it evenly (as PyTorch and JAX do)."""
    def rule(b, g, n):
        x, y = n.inputs
        w = b.select(b.emit(gt_op, x, y), _c(b, x, 1.0),
                     b.select(b.eq(x, y), _c(b, x, 0.5), _c(b, x, 0.0)))
        return [b.mul(g, w), b.mul(g, b.sub(_c(b, x, 1.0), w))]
    return rule


def _grad_cast(b, g, n):
    (x,) = n.inputs
    if not (x.dtype.is_float and n.out.dtype.is_float):
        return [None]
    return [b.cast(g, x.dtype)]


def _unary(name, reference, grad, numba, triton, kinds=FLOAT, doc=""):
    register(Primitive(name, "unary", _unary_rule(kinds), reference, grad,
                       {"numba": numba, "triton": triton}, doc=doc))


def _binary(name, reference, grad, numba, triton, kinds=NUMERIC, doc=""):
    register(Primitive(name, "binary", _binary_rule(kinds), reference, grad,
                       {"numba": numba, "triton": triton}, doc=doc))


# -- unary -------------------------------------------------------------------------------------
_unary("neg", np.negative, lambda b, g, n: [b.neg(g)], "(-{0})", "(-{0})", kinds=NUMERIC)
_unary("exp", np.exp, lambda b, g, n: [b.mul(g, n.out)], "kf_exp({0})", "tl.exp({0})")
_unary("log", np.log, lambda b, g, n: [b.div(g, n.inputs[0])], "kf_log({0})", "tl.log({0})")
_unary("log1p", np.log1p,
       lambda b, g, n: [b.div(g, b.add(n.inputs[0], _c(b, g, 1.0)))],
       "kf_log1p({0})", "libdevice.log1p({0})")
_unary("expm1", np.expm1,
       lambda b, g, n: [b.mul(g, b.add(n.out, _c(b, g, 1.0)))],
       "kf_expm1({0})", "libdevice.expm1({0})")
_unary("tanh", np.tanh,
       lambda b, g, n: [b.mul(g, b.sub(_c(b, g, 1.0), b.mul(n.out, n.out)))],
       "kf_tanh({0})", "libdevice.tanh({0})")
_unary("logistic", _logistic,
       lambda b, g, n: [b.mul(g, b.mul(n.out, b.sub(_c(b, g, 1.0), n.out)))],
       "kf_logistic({0})", "tl.sigmoid({0})", doc="1 / (1 + exp(-x))")
_unary("sqrt", np.sqrt,
       lambda b, g, n: [b.div(g, b.mul(_c(b, g, 2.0), n.out))],
       "math.sqrt({0})", "kf_sqrt({0})")
_unary("rsqrt", _same_dtype(lambda x: 1 / np.sqrt(x)),
       lambda b, g, n: [b.mul(g, b.mul(_c(b, g, -0.5), b.div(n.out, n.inputs[0])))],
       "(1.0 / math.sqrt({0}))", "tl.rsqrt({0})", doc="1 / sqrt(x)")
_unary("abs", np.abs, lambda b, g, n: [b.mul(g, b.sign(n.inputs[0]))],
       "abs({0})", "tl.abs({0})", kinds=NUMERIC)
_unary("sign", np.sign, NONDIFFERENTIABLE, "kf_sign({0})", "kf_sign({0})", kinds=NUMERIC)
_unary("sin", np.sin, lambda b, g, n: [b.mul(g, b.cos(n.inputs[0]))], "math.sin({0})", "tl.sin({0})")
_unary("cos", np.cos, lambda b, g, n: [b.neg(b.mul(g, b.sin(n.inputs[0])))], "math.cos({0})", "tl.cos({0})")
_unary("floor", np.floor, NONDIFFERENTIABLE, "np.floor({0})", "tl.floor({0})")
_unary("erf", _same_dtype(scipy.special.erf),
       lambda b, g, n: [b.mul(g, b.mul(_c(b, g, 2.0 / math.sqrt(math.pi)),
                                       b.exp(b.neg(b.mul(n.inputs[0], n.inputs[0])))))],
       "math.erf({0})", "tl.erf({0})")

# -- binary ------------------------------------------------------------------------------------
_binary("add", np.add, lambda b, g, n: [g, g], "({0} + {1})", "({0} + {1})")
_binary("sub", np.subtract, lambda b, g, n: [g, b.neg(g)], "({0} - {1})", "({0} - {1})")
_binary("mul", np.multiply,
        lambda b, g, n: [b.mul(g, n.inputs[1]), b.mul(n.inputs[0], g)], "({0} * {1})", "({0} * {1})")
_binary("div", _div,
        lambda b, g, n: [b.div(g, n.inputs[1]),
                         b.neg(b.div(b.mul(g, n.out), n.inputs[1]))],
        "kf_div({0}, {1})", "kf_div({0}, {1})",
        doc="true division for floats; floor division (numpy //) for integers")
_binary("pow", np.power, _grad_pow, "({0} ** {1})", "libdevice.pow({0}, {1})", kinds=FLOAT)
_binary("maximum", np.maximum, _grad_extremum("gt"), "kf_maximum({0}, {1})", "kf_maximum({0}, {1})")
_binary("minimum", np.minimum, _grad_extremum("lt"), "kf_minimum({0}, {1})", "kf_minimum({0}, {1})")

# -- comparisons, select, cast -----------------------------------------------------------------
for _name, _ufunc, _sym in [("eq", np.equal, "=="), ("ne", np.not_equal, "!="), ("lt", np.less, "<"),
                            ("le", np.less_equal, "<="), ("gt", np.greater, ">"),
                            ("ge", np.greater_equal, ">=")]:
    register(Primitive(_name, "compare", _compare_rule, _ufunc, NONDIFFERENTIABLE,
                       {"numba": f"({{0}} {_sym} {{1}})", "triton": f"({{0}} {_sym} {{1}})"}))

register(Primitive(
    "select", "select", _select_rule, np.where,
    lambda b, g, n: [None, b.select(n.inputs[0], g, b.zeros_like(g)),
                     b.select(n.inputs[0], b.zeros_like(g), g)],
    {"numba": "({1} if {0} else {2})", "triton": "tl.where({0}, {1}, {2})"},
    doc="select(pred, on_true, on_false): numpy.where"))

register(Primitive(
    "cast", "cast", _cast_rule,
    lambda x, dtype: x.astype(as_dtype(dtype).np_dtype),
    _grad_cast,
    {"numba": "kf_cast_{dtype}({0})", "triton": "kf_cast_{dtype}({0})"},
    attr_names=("dtype",),
    doc="convert elements to another dtype (numpy astype: floats to ints truncate toward zero)"))

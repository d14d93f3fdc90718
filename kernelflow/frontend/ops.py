"""kernelflow's own names for array operations.

Operations numpy has are numpy's own functions (``kf.exp is np.exp``): on traced arrays they dispatch
through ``__array_ufunc__``/``__array_function__``, on numpy arrays they are numpy. Primitives numpy lacks
(``erf``, ``sigmoid``, ``rsqrt``, convolution, pooling, random bits) go through ``primitive_call``, which
emits the primitive when an operand is traced and otherwise runs the primitive's numpy reference, so eager
and traced results agree exactly.
"""
from __future__ import annotations

import numpy as np

from ..ir import DTypeError, ShapeError, type_of_array
from ..ir.builder import canonical_attr, located
from ..ir.primitive import get as get_primitive, is_primitive
from .traced import value_of
from .tracer import Tracer, top_trace, user_location, wrap


def primitive_call(op: str, *operands, **attrs):
    """Apply primitive ``op``: a node in the current trace if an operand is traced, else its reference."""
    trace = top_trace(*operands)
    if trace is not None:
        return wrap(trace, trace.emit(op, *[value_of(trace, x) for x in operands], **attrs))
    prim = get_primitive(op)
    arrays = [np.asarray(x) for x in operands]
    attrs = {k: canonical_attr(v) for k, v in attrs.items()}
    types = [type_of_array(a) for a in arrays]
    try:
        prim.shape_rule(*types, **attrs)
    except (ShapeError, DTypeError) as e:
        raise located(e, op, types, user_location()) from None
    return prim.reference(*arrays, **attrs)


def _float(x):
    """Integer and bool operands of float-only primitives are promoted to float64 (numpy's rule)."""
    dtype = x.dtype if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.asarray(x).dtype
    if dtype.kind == "f":
        return x
    return x.astype(np.float64) if isinstance(x, (Tracer, np.ndarray)) else np.asarray(x, np.float64)


# -- numpy's own functions under kernelflow's names ------------------------------------------------------
exp, log, log1p, expm1, tanh, sqrt = np.exp, np.log, np.log1p, np.expm1, np.tanh, np.sqrt
sin, cos, floor, sign, abs, negative = np.sin, np.cos, np.floor, np.sign, np.abs, np.negative
add, subtract, multiply, divide, power = np.add, np.subtract, np.multiply, np.divide, np.power
maximum, minimum, square = np.maximum, np.minimum, np.square
equal, not_equal, less, less_equal, greater, greater_equal = (
    np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal)
where, clip, dot, matmul, tensordot, einsum, outer = np.where, np.clip, np.dot, np.matmul, np.tensordot, np.einsum, np.outer
reshape, transpose, swapaxes, moveaxis, expand_dims, squeeze, ravel = (
    np.reshape, np.transpose, np.swapaxes, np.moveaxis, np.expand_dims, np.squeeze, np.ravel)
concatenate, stack, pad, take, take_along_axis, flip, broadcast_to = (
    np.concatenate, np.stack, np.pad, np.take, np.take_along_axis, np.flip, np.broadcast_to)
sum, max, min, argmax, argmin = np.sum, np.max, np.min, np.argmax, np.argmin
zeros_like, ones_like, full_like = np.zeros_like, np.ones_like, np.full_like


# -- primitives numpy does not have ------------------------------------------------------------------------
def erf(x):
    """The error function (scipy.special.erf)."""
    return primitive_call("erf", _float(x))


def sigmoid(x):
    """1 / (1 + exp(-x)), one primitive (``logistic``) so it is stable and fuses."""
    return primitive_call("logistic", _float(x))


logistic = sigmoid


def rsqrt(x):
    """1 / sqrt(x)."""
    return primitive_call("rsqrt", _float(x))


def astype(x, dtype):
    return x.astype(dtype) if isinstance(x, (Tracer, np.ndarray)) else np.asarray(x).astype(dtype)


if is_primitive("stop_gradient"):  # pragma: no cover - only when the IR has the primitive
    def stop_gradient(x):
        """``x``, with a zero gradient."""
        return primitive_call("stop_gradient", x)

__all__ = [n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "np", "DTypeError", "ShapeError", "type_of_array", "canonical_attr", "located",
    "get_primitive", "is_primitive", "value_of", "Tracer", "top_trace", "user_location", "wrap")]

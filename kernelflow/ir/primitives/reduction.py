"""Reductions: reduce_sum, reduce_max, reduce_min over a set of axes, and argmax along one axis.

``axes`` is a sorted tuple of distinct non-negative axes; the reduced axes are removed from the shape
(the frontend adds keepdims with a reshape and resolves negative axes). Sums keep the operand dtype.
max/min of an empty axis has no identity and is a shape error; the sum of an empty axis is 0.
"""
from __future__ import annotations

import numpy as np

from ..primitive import NONDIFFERENTIABLE, Primitive, register
from ..types import DTypeError, ShapeError, TensorType, as_dtype, int32, int64
from .movement import check_axes, check_axis

REDUCE_CODEGEN = {"numba": "@reduce", "triton": "@reduce"}

NUMERIC = ("float", "int", "uint")


def _remaining_shape(shape, axes) -> tuple[int, ...]:
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_rule(kinds, has_identity: bool):
    def rule(x: TensorType, axes):
        if x.dtype.kind not in kinds:
            raise DTypeError(f"needs a {'/'.join(kinds)} operand, got {x.dtype}")
        check_axes(axes, x.ndim, x.shape)
        if not has_identity:
            empty = [a for a in axes if x.shape[a] == 0]
            if empty:
                raise ShapeError(f"zero-size reduction has no identity: axes {list(empty)} of shape "
                                 f"{list(x.shape)} are empty")
        return x.with_shape(_remaining_shape(x.shape, axes))
    return rule


def _sum_ref(x, axes):
    # float16/bfloat16 accumulate in float32 (as the backends do), then round once to the operand dtype.
    acc = np.float32 if x.dtype.name in ("float16", "bfloat16") else x.dtype
    return np.asarray(np.sum(x, axis=tuple(axes), dtype=acc)).astype(x.dtype)


def _broadcast_back(b, v, node):
    """Broadcast a reduced value ``v`` back to the shape of the node's operand."""
    x = node.inputs[0]
    axes = node.attrs["axes"]
    kept = tuple(i for i in range(x.ndim) if i not in axes)
    return b.broadcast_in_dim(v, shape=x.shape, dims=kept)


def _sum_grad(b, g, n):
    return [_broadcast_back(b, g, n)]


def _extremum_grad(b, g, n):
    """The elements equal to the extremum share the cotangent evenly (as PyTorch and JAX do)."""
    (x,) = n.inputs
    mask = b.cast(b.eq(x, _broadcast_back(b, n.out, n)), x.dtype)
    count = b.reduce_sum(mask, axes=n.attrs["axes"])
    share = b.div(_broadcast_back(b, g, n), _broadcast_back(b, count, n))
    return [b.mul(share, mask)]


register(Primitive(
    "reduce_sum", "reduce", _reduce_rule(NUMERIC, has_identity=True), _sum_ref, _sum_grad,
    REDUCE_CODEGEN, attr_names=("axes",),
    doc="sum over `axes` (sorted, distinct); keeps the dtype; the sum of nothing is 0"))

register(Primitive(
    "reduce_max", "reduce", _reduce_rule(NUMERIC + ("bool",), has_identity=False),
    lambda x, axes: np.asarray(np.max(x, axis=tuple(axes))),
    _extremum_grad, REDUCE_CODEGEN, attr_names=("axes",),
    doc="maximum over `axes` (sorted, distinct, non-empty); NaN propagates (numpy.max)"))

register(Primitive(
    "reduce_min", "reduce", _reduce_rule(NUMERIC + ("bool",), has_identity=False),
    lambda x, axes: np.asarray(np.min(x, axis=tuple(axes))),
    _extremum_grad, REDUCE_CODEGEN, attr_names=("axes",),
    doc="minimum over `axes` (sorted, distinct, non-empty); NaN propagates (numpy.min)"))


# -- argmax ------------------------------------------------------------------------------------
def _argmax_rule(x: TensorType, axis, dtype):
    out_dtype = as_dtype(dtype)
    if out_dtype not in (int32, int64):
        raise DTypeError(f"argmax indices are i32 or i64, got {out_dtype}")
    axis = check_axis(axis, x.ndim, x.shape)
    if x.shape[axis] == 0:
        raise ShapeError(f"argmax of an empty axis {axis} of shape {list(x.shape)} has no answer")
    if out_dtype == int32 and x.shape[axis] - 1 > np.iinfo(np.int32).max:
        raise DTypeError(f"axis {axis} of shape {list(x.shape)} is too long for i32 indices")
    return TensorType(out_dtype, tuple(d for i, d in enumerate(x.shape) if i != axis))


register(Primitive(
    "argmax", "reduce", _argmax_rule,
    lambda x, axis, dtype: np.asarray(np.argmax(x, axis=axis)).astype(as_dtype(dtype).np_dtype),
    NONDIFFERENTIABLE, REDUCE_CODEGEN, attr_names=("axis", "dtype"),
    doc="index of the first maximum along `axis` (numpy.argmax: a NaN counts as the maximum)"))

"""Indexing: gather (numpy.take along one axis) and its transpose scatter_add (numpy.add.at).

Indices are i32 or i64. A negative index wraps once, as in numpy (-1 is the last element); an index
outside [-size, size) is an IndexError naming the index and the size. Both lowerings are structured
(``"@gather"``, ``"@scatter_add"``).
"""
from __future__ import annotations

import numpy as np

from ..primitive import Primitive, register
from ..types import DTypeError, ShapeError, TensorType, int32, int64
from .movement import check_axis


def _check_index_dtype(idx: TensorType):
    if idx.dtype not in (int32, int64):
        raise DTypeError(f"indices must be i32 or i64, got {idx.dtype}")


def _gathered_shape(x_shape, axis: int, idx_shape) -> tuple[int, ...]:
    return tuple(x_shape[:axis]) + tuple(idx_shape) + tuple(x_shape[axis + 1:])


def _check_indices_in_range(idx: np.ndarray, size: int):
    """numpy's rule: an index i is valid when -size <= i < size."""
    bad = (idx < -size) | (idx >= size)
    if np.any(bad):
        first = int(idx[bad].flat[0])
        raise IndexError(f"index {first} is out of range for an axis of size {size}")


# -- gather ------------------------------------------------------------------------------------
def _gather_rule(x: TensorType, idx: TensorType, axis):
    _check_index_dtype(idx)
    axis = check_axis(axis, x.ndim, x.shape)
    return x.with_shape(_gathered_shape(x.shape, axis, idx.shape))


def _gather_ref(x, idx, axis):
    _check_indices_in_range(idx, x.shape[axis])
    return np.take(x, idx.astype(np.int64), axis=axis)


def _gather_grad(b, g, n):
    x, idx = n.inputs
    return [b.scatter_add(b.zeros_like(x), idx, g, axis=n.attrs["axis"]), None]


register(Primitive(
    "gather", "index", _gather_rule, _gather_ref, _gather_grad,
    {"numba": "@gather", "triton": "@gather"}, attr_names=("axis",),
    doc="gather(x, idx) = numpy.take(x, idx, axis): shape x.shape[:axis] + idx.shape + x.shape[axis+1:]"))


# -- scatter_add -------------------------------------------------------------------------------
def _scatter_add_rule(operand: TensorType, idx: TensorType, updates: TensorType, axis):
    _check_index_dtype(idx)
    if operand.dtype != updates.dtype:
        raise DTypeError(f"operand dtype {operand.dtype} differs from updates dtype {updates.dtype}")
    if operand.dtype.kind not in ("float", "int", "uint"):
        raise DTypeError(f"scatter_add needs a numeric operand, got {operand.dtype}")
    axis = check_axis(axis, operand.ndim, operand.shape)
    expected = _gathered_shape(operand.shape, axis, idx.shape)
    if updates.shape != expected:
        raise ShapeError(f"updates shape {list(updates.shape)} must be {list(expected)} for operand shape "
                         f"{list(operand.shape)}, indices shape {list(idx.shape)} and axis {axis}")
    return operand


def _scatter_add_ref(operand, idx, updates, axis):
    _check_indices_in_range(idx, operand.shape[axis])
    out = operand.copy()
    np.add.at(out, (slice(None),) * axis + (idx.astype(np.int64),), updates)  # duplicates accumulate
    return out


def _scatter_add_grad(b, g, n):
    _, idx, _ = n.inputs
    return [g, None, b.gather(g, idx, axis=n.attrs["axis"])]


register(Primitive(
    "scatter_add", "index", _scatter_add_rule, _scatter_add_ref, _scatter_add_grad,
    {"numba": "@scatter_add", "triton": "@scatter_add"}, attr_names=("axis",),
    doc="a copy of operand with updates added at idx along axis (numpy.add.at: duplicates accumulate)"))

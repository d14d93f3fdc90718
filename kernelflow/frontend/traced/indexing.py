"""Indexing: basic slicing, integer-array indexing, take and take_along_axis."""
from __future__ import annotations

import math

import numpy as np

from ...ir import ShapeError
from ..tracer import Tracer, where_str, wrap


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
    valid = None  # traced indices: where every one is inside its own axis
    stride = math.prod(sizes)
    for k, n, dim in zip(idx, sizes, adv_dims):
        stride //= max(n, 1)
        term = _checked_index(trace, k, n, dim)
        if isinstance(term, Tracer):
            inside = ufunc(np.logical_and, ufunc(np.greater_equal, term, -n), ufunc(np.less, term, n))
            valid = inside if valid is None else ufunc(np.logical_and, valid, inside)
            term = where(ufunc(np.less, term, 0), ufunc(np.add, term, n), term)
        term = _arith(np.multiply, term, stride) if stride != 1 else term
        linear = term if linear is None else _arith(np.add, linear, term)
    if valid is not None:
        # An index outside its own axis would otherwise land in another row of the flattened array
        # (labels[i] == n_classes reads row i+1's class 0): it becomes the flattened size, which the
        # gather rejects with an IndexError at the user's line.
        linear = where(valid, linear, math.prod(sizes))
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
    """An index array for an axis of size n. A constant one is bounds-checked now and its negative
    entries wrapped; a traced one is returned as it is: gather wraps a negative index once and rejects
    one outside [-n, n) when it runs (wrapping here too would turn -n-2 into a valid n-2)."""
    if isinstance(k, np.ndarray):
        if k.size and (k.max() >= n or k.min() < -n):
            bad = k.max() if k.max() >= n else k.min()
            raise IndexError(f"index {bad} is out of bounds for axis {dim} with size {n}{where_str()}")
        return np.where(k < 0, k + n, k).astype(np.int64)
    return k


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


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .operands import (  # noqa: E402
    _as_operand, _reject, _trace_of, broadcast_shapes, ndim_of, normalize_axis, shape_of, to_tracer,
    value_of)
from .elementwise import ufunc  # noqa: E402
from .shape import broadcast_to, ravel, reshape, where  # noqa: E402

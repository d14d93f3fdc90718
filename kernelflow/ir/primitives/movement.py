"""Data-movement primitives: broadcast_in_dim, reshape, transpose, slice, pad, concatenate, rev.

None of these computes anything: each output element is a copy of one input element (or, for pad, the
fill value). Fusion folds them into the index maps of the kernels that read them, so the codegen entry
is ``"@movement"`` for every backend. Axes are non-negative here; negative axes are resolved by the
frontend. References return fresh arrays (never views of their inputs), so a caller may write to them.
Gradient rules use only builder calls, so they are differentiable again.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..primitive import Primitive, register
from ..types import DTypeError, ShapeError, TensorType

MOVEMENT_CODEGEN = {"numba": "@movement", "triton": "@movement"}


# -- attribute checks shared by the families that take shapes and axes ---------------------------
def is_int(v) -> bool:
    if type(v) is int:  # the common case, without the (slow) abstract-base-class check
        return True
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def check_shape_attr(shape, what: str = "shape") -> tuple[int, ...]:
    """A shape attribute: a tuple of non-negative ints."""
    if type(shape) is tuple and all([type(d) is int and d >= 0 for d in shape]):
        return shape  # the common case, checked without the generic tests below
    if not isinstance(shape, tuple) or not all(is_int(d) and d >= 0 for d in shape):
        raise ShapeError(f"{what} must be a tuple of non-negative ints, got {shape!r}")
    return tuple(int(d) for d in shape)


def check_per_dim(values, x: TensorType, what: str, minimum: int = 0) -> tuple[int, ...]:
    """A per-dimension int attribute (one entry per dim of ``x``, each >= ``minimum``)."""
    if not isinstance(values, tuple) or len(values) != x.ndim:
        raise ShapeError(f"{what} must be a tuple of {x.ndim} ints (one per dim of shape "
                         f"{list(x.shape)}), got {values!r}")
    if not all([(type(v) is int or is_int(v)) and v >= minimum for v in values]):
        raise ShapeError(f"{what} entries must be ints >= {minimum}, got {values!r}")
    return values


def check_axis(axis, ndim: int, shape, what: str = "axis") -> int:
    if not is_int(axis) or not 0 <= axis < ndim:
        raise ShapeError(f"{what} {axis!r} is not an axis of shape {list(shape)} "
                         f"(non-negative and < {ndim})")
    return int(axis)


def check_axes(axes, ndim: int, shape, sorted_: bool = True) -> tuple[int, ...]:
    """A tuple of distinct axes of a rank-``ndim`` value; strictly increasing when ``sorted_``."""
    if not isinstance(axes, tuple):
        raise ShapeError(f"axes must be a tuple of ints, got {axes!r}")
    for a in axes:
        check_axis(a, ndim, shape, "axes entry")
    if len(set(axes)) != len(axes):
        raise ShapeError(f"axes {axes} of shape {list(shape)} repeat an axis")
    if sorted_ and list(axes) != sorted(axes):
        raise ShapeError(f"axes {axes} of shape {list(shape)} must be sorted")
    return axes


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- broadcast_in_dim --------------------------------------------------------------------------
def _broadcast_in_dim_rule(x: TensorType, shape, dims):
    shape = check_shape_attr(shape)
    if not isinstance(dims, tuple) or not all(is_int(d) for d in dims):
        raise ShapeError(f"dims must be a tuple of ints, got {dims!r}")
    if len(dims) != x.ndim:
        raise ShapeError(f"dims {dims} must name one output dim for each of the {x.ndim} dims "
                         f"of shape {list(x.shape)}")
    if any(not 0 <= d < len(shape) for d in dims) or any(a >= b for a, b in zip(dims, dims[1:])):
        raise ShapeError(f"dims {dims} must be strictly increasing dims of the output shape {list(shape)}")
    for i, d in enumerate(dims):
        if x.shape[i] not in (1, shape[d]):
            raise ShapeError(f"cannot broadcast shape {list(x.shape)} to shape {list(shape)} with dims "
                             f"{dims}: input dim {i} has size {x.shape[i]}, output dim {d} has size {shape[d]}")
    return x.with_shape(shape)


def _broadcast_in_dim_ref(x, shape, dims):
    shape, dims = tuple(shape), tuple(dims)
    with_ones = [1] * len(shape)
    for i, d in enumerate(dims):
        with_ones[d] = x.shape[i]
    return np.broadcast_to(x.reshape(with_ones), shape).copy()


def _broadcast_in_dim_grad(b, g, n):
    (x,) = n.inputs
    dims = n.attrs["dims"]
    # Sum over the new output dims and over the size-1 input dims that were expanded.
    kept = {d for i, d in enumerate(dims) if x.shape[i] == g.shape[d]}
    axes = tuple(d for d in range(g.ndim) if d not in kept)
    s = b.reduce_sum(g, axes=axes) if axes else g
    return [s if s.shape == x.shape else b.reshape(s, shape=x.shape)]


register(Primitive(
    "broadcast_in_dim", "movement", _broadcast_in_dim_rule, _broadcast_in_dim_ref,
    _broadcast_in_dim_grad, MOVEMENT_CODEGEN, attr_names=("shape", "dims"),
    doc="jax.lax.broadcast_in_dim: input dim i becomes output dim dims[i] (size equal, or 1 and expanded)"))


# -- reshape -----------------------------------------------------------------------------------
def _reshape_rule(x: TensorType, shape):
    shape = check_shape_attr(shape)
    if _size(shape) != x.size:
        raise ShapeError(f"cannot reshape shape {list(x.shape)} ({x.size} elements) to shape "
                         f"{list(shape)} ({_size(shape)} elements)")
    return x.with_shape(shape)


register(Primitive(
    "reshape", "movement", _reshape_rule,
    lambda x, shape: x.reshape(tuple(shape)).copy(),
    lambda b, g, n: [b.reshape(g, shape=n.inputs[0].shape)],
    MOVEMENT_CODEGEN, attr_names=("shape",),
    doc="row-major (C order) reshape to a shape with the same number of elements"))


# -- transpose ---------------------------------------------------------------------------------
def _transpose_rule(x: TensorType, perm):
    if not isinstance(perm, tuple) or sorted(perm) != list(range(x.ndim)) \
            or not all(is_int(p) for p in perm):
        raise ShapeError(f"perm {perm!r} is not a permutation of the {x.ndim} dims of shape {list(x.shape)}")
    return x.with_shape(tuple(x.shape[p] for p in perm))


def _inverse_permutation(perm) -> tuple[int, ...]:
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return tuple(inverse)


register(Primitive(
    "transpose", "movement", _transpose_rule,
    lambda x, perm: np.transpose(x, tuple(perm)).copy(),
    lambda b, g, n: [b.transpose(g, perm=_inverse_permutation(n.attrs["perm"]))],
    MOVEMENT_CODEGEN, attr_names=("perm",),
    doc="out.shape[i] = x.shape[perm[i]] (numpy.transpose)"))


# -- slice -------------------------------------------------------------------------------------
def _slice_rule(x: TensorType, start, limit, stride):
    check_per_dim(start, x, "start")
    check_per_dim(limit, x, "limit")
    check_per_dim(stride, x, "stride", minimum=1)
    for i, (s, l, n) in enumerate(zip(start, limit, x.shape)):
        if not s <= l <= n:
            raise ShapeError(f"slice of shape {list(x.shape)} with start {list(start)} and limit {list(limit)}: "
                             f"dim {i} needs start <= limit <= {n}, got {s}..{l}")
    return x.with_shape(tuple(_ceil_div(l - s, st) for s, l, st in zip(start, limit, stride)))


def _slice_ref(x, start, limit, stride):
    return x[tuple(slice(s, l, st) for s, l, st in zip(start, limit, stride))].copy()


def _slice_grad(b, g, n):
    (x,) = n.inputs
    if g.type.size == 0:  # nothing was read: the gradient is zero everywhere
        return [b.zeros_like(x)]
    start, stride = n.attrs["start"], n.attrs["stride"]
    # Put g back where it was read: g[j] lands at start + j*stride; the rest of x gets zeros.
    high = tuple(dim - s - k - (k - 1) * (st - 1) for dim, s, k, st in zip(x.shape, start, g.shape, stride))
    return [b.pad(g, low=start, high=high, interior=tuple(st - 1 for st in stride), value=0.0)]


register(Primitive(
    "slice", "movement", _slice_rule, _slice_ref, _slice_grad, MOVEMENT_CODEGEN,
    attr_names=("start", "limit", "stride"),
    doc="x[start:limit:stride] per dim (non-negative bounds, start <= limit <= dim, stride >= 1)"))


# -- pad ---------------------------------------------------------------------------------------
def _check_fill_value(value, x: TensorType):
    if not isinstance(value, (numbers.Real, np.bool_)):
        raise DTypeError(f"pad value must be a Python int, float or bool, got {value!r}")
    kind = x.dtype.kind
    if kind in ("int", "uint", "bool") and not float(value).is_integer():
        raise DTypeError(f"pad value {value!r} is not an integer, but the operand is {x.dtype}")
    if kind in ("int", "uint"):
        info = np.iinfo(x.dtype.np_dtype)
        if not info.min <= int(value) <= info.max:
            raise DTypeError(f"pad value {value!r} does not fit in {x.dtype}")
    if kind == "bool" and int(value) not in (0, 1):
        raise DTypeError(f"pad value {value!r} is not a bool, but the operand is bool")


def _pad_out_dim(n: int, lo: int, hi: int, interior: int) -> int:
    return lo + hi + n + max(n - 1, 0) * interior


def _pad_rule(x: TensorType, low, high, interior, value):
    check_per_dim(low, x, "low")
    check_per_dim(high, x, "high")
    check_per_dim(interior, x, "interior")
    _check_fill_value(value, x)
    return x.with_shape(tuple(_pad_out_dim(n, lo, hi, it)
                              for n, lo, hi, it in zip(x.shape, low, high, interior)))


def _pad_ref(x, low, high, interior, value):
    shape = tuple(_pad_out_dim(n, lo, hi, it) for n, lo, hi, it in zip(x.shape, low, high, interior))
    out = np.full(shape, value, dtype=x.dtype)
    out[tuple(slice(lo, lo + n + max(n - 1, 0) * it, it + 1)
              for n, lo, it in zip(x.shape, low, interior))] = x
    return out


def _pad_grad(b, g, n):
    (x,) = n.inputs
    low, interior = n.attrs["low"], n.attrs["interior"]
    limit = tuple(lo + k + max(k - 1, 0) * it for lo, k, it in zip(low, x.shape, interior))
    return [b.slice(g, start=low, limit=limit, stride=tuple(it + 1 for it in interior))]


register(Primitive(
    "pad", "movement", _pad_rule, _pad_ref, _pad_grad, MOVEMENT_CODEGEN,
    attr_names=("low", "high", "interior", "value"),
    doc="per dim: `low` fill elements, the elements with `interior` fills between neighbours, `high` fills"))


# -- concatenate -------------------------------------------------------------------------------
def _concatenate_rule(*xs: TensorType, axis):
    if not xs:
        raise ShapeError("concatenate needs at least one operand")
    first = xs[0]
    shapes = ", ".join(str(list(t.shape)) for t in xs)
    if any(t.dtype != first.dtype for t in xs):
        raise DTypeError(f"operand dtypes differ: {', '.join(str(t.dtype) for t in xs)}")
    if any(t.ndim != first.ndim for t in xs):
        raise ShapeError(f"operand ranks differ: shapes {shapes}")
    axis = check_axis(axis, first.ndim, first.shape)
    for t in xs:
        if t.shape[:axis] != first.shape[:axis] or t.shape[axis + 1:] != first.shape[axis + 1:]:
            raise ShapeError(f"operand shapes {shapes} differ outside the concatenation axis {axis}")
    total = sum(t.shape[axis] for t in xs)
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _concatenate_grad(b, g, n):
    axis = n.attrs["axis"]
    grads, offset = [], 0
    for x in n.inputs:
        start = tuple(offset if d == axis else 0 for d in range(g.ndim))
        limit = tuple(offset + x.shape[axis] if d == axis else g.shape[d] for d in range(g.ndim))
        grads.append(b.slice(g, start=start, limit=limit, stride=(1,) * g.ndim))
        offset += x.shape[axis]
    return grads


register(Primitive(
    "concatenate", "movement", _concatenate_rule,
    lambda *xs, axis: np.concatenate(xs, axis=axis),
    _concatenate_grad, MOVEMENT_CODEGEN, attr_names=("axis",),
    doc="concatenate(*xs) along `axis`: same dtype, same shape except along the axis"))


# -- rev ---------------------------------------------------------------------------------------
def _rev_rule(x: TensorType, axes):
    check_axes(axes, x.ndim, x.shape, sorted_=False)
    return x


register(Primitive(
    "rev", "movement", _rev_rule,
    lambda x, axes: np.flip(x, axis=tuple(axes)).copy(),
    lambda b, g, n: [b.rev(g, axes=n.attrs["axes"])],
    MOVEMENT_CODEGEN, attr_names=("axes",),
    doc="reverse the order of the elements along each of `axes` (distinct axes, any order)"))

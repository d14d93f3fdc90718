"""Contraction primitives: ``dot_general``, the one tensor contraction of the IR (jax.lax semantics).

``dot_general(lhs, rhs) {contract, batch}`` with ``contract = ((lhs dims), (rhs dims))`` and
``batch = ((lhs dims), (rhs dims))``. The output dims are: the batch dims (in the order given), then
the free dims of lhs (ascending), then the free dims of rhs (ascending). matmul, batched matmul,
einsum-style contractions and outer products are all dot_general.
"""
from __future__ import annotations

import numpy as np

from ..primitive import Primitive, register
from ..types import DTypeError, ShapeError, TensorType


# -- attribute helpers -------------------------------------------------------------------------
def _dim_pair(name: str, attr) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``((lhs dims), (rhs dims))`` as two tuples of ints of equal length."""
    if not (isinstance(attr, tuple) and len(attr) == 2
            and all(isinstance(side, tuple) for side in attr)):
        raise ShapeError(f"{name} must be ((lhs dims...), (rhs dims...)), got {attr!r}")
    lhs_dims, rhs_dims = attr
    for d in lhs_dims + rhs_dims:
        if not isinstance(d, int) or isinstance(d, bool):
            raise ShapeError(f"{name} dims must be ints, got {attr!r}")
    if len(lhs_dims) != len(rhs_dims):
        raise ShapeError(f"{name} names {len(lhs_dims)} lhs dims but {len(rhs_dims)} rhs dims: {attr!r}")
    return lhs_dims, rhs_dims


def _free_dims(ndim: int, contract: tuple[int, ...], batch: tuple[int, ...]) -> list[int]:
    """The dims neither contracted nor batched, ascending."""
    taken = set(contract) | set(batch)
    return [d for d in range(ndim) if d not in taken]


def _check_side(side: str, t: TensorType, contract: tuple[int, ...], batch: tuple[int, ...]) -> None:
    for d in contract + batch:
        if not 0 <= d < t.ndim:
            raise ShapeError(f"{side} dim {d} is out of range for {side} shape {list(t.shape)} "
                             f"(contract {list(contract)}, batch {list(batch)})")
    if len(set(contract + batch)) != len(contract + batch):
        raise ShapeError(f"{side} dims repeat among contract {list(contract)} and batch {list(batch)} "
                         f"of {side} shape {list(t.shape)}")


# -- shape rule --------------------------------------------------------------------------------
def _dot_general_rule(lhs: TensorType, rhs: TensorType, *, contract, batch) -> TensorType:
    lhs_contract, rhs_contract = _dim_pair("contract", contract)
    lhs_batch, rhs_batch = _dim_pair("batch", batch)
    if lhs.dtype != rhs.dtype:
        raise DTypeError(f"operand dtypes differ: {lhs.dtype}, {rhs.dtype}")
    if not (lhs.dtype.is_float or lhs.dtype.is_integer):
        raise DTypeError(f"needs float or integer operands, got {lhs.dtype}")
    _check_side("lhs", lhs, lhs_contract, lhs_batch)
    _check_side("rhs", rhs, rhs_contract, rhs_batch)
    for kind, lhs_dims, rhs_dims in (("contracted", lhs_contract, rhs_contract),
                                     ("batch", lhs_batch, rhs_batch)):
        for ld, rd in zip(lhs_dims, rhs_dims):
            if lhs.shape[ld] != rhs.shape[rd]:
                raise ShapeError(
                    f"{kind} dims differ in size: lhs shape {list(lhs.shape)} dim {ld} has size "
                    f"{lhs.shape[ld]}, rhs shape {list(rhs.shape)} dim {rd} has size {rhs.shape[rd]}")
    shape = (tuple(lhs.shape[d] for d in lhs_batch)
             + tuple(lhs.shape[d] for d in _free_dims(lhs.ndim, lhs_contract, lhs_batch))
             + tuple(rhs.shape[d] for d in _free_dims(rhs.ndim, rhs_contract, rhs_batch)))
    return TensorType(lhs.dtype, shape)


# -- reference ---------------------------------------------------------------------------------
def _dot_general_reference(lhs: np.ndarray, rhs: np.ndarray, *, contract, batch) -> np.ndarray:
    """Transpose to (batch, free, contract) x (batch, contract, free), flatten, one np.matmul."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = contract, batch
    lhs_free = _free_dims(lhs.ndim, lhs_contract, lhs_batch)
    rhs_free = _free_dims(rhs.ndim, rhs_contract, rhs_batch)
    batch_shape = tuple(lhs.shape[d] for d in lhs_batch)
    lhs_free_shape = tuple(lhs.shape[d] for d in lhs_free)
    rhs_free_shape = tuple(rhs.shape[d] for d in rhs_free)
    k = int(np.prod([lhs.shape[d] for d in lhs_contract], dtype=np.int64))
    b = int(np.prod(batch_shape, dtype=np.int64))
    m = int(np.prod(lhs_free_shape, dtype=np.int64))
    n = int(np.prod(rhs_free_shape, dtype=np.int64))
    lhs3 = lhs.transpose(tuple(lhs_batch) + tuple(lhs_free) + tuple(lhs_contract)).reshape(b, m, k)
    rhs3 = rhs.transpose(tuple(rhs_batch) + tuple(rhs_contract) + tuple(rhs_free)).reshape(b, k, n)
    out = np.matmul(lhs3, rhs3)
    return out.reshape(batch_shape + lhs_free_shape + rhs_free_shape).astype(lhs.dtype, copy=False)


# -- gradient rule -----------------------------------------------------------------------------
def _transpose(b, v, perm):
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(v.ndim)):
        return v
    return b.transpose(v, perm=perm)


def _cotangent_lhs(b, g, y, x_ndim, x_contract, y_contract, x_batch, y_batch, swap_ans=False):
    """The cotangent of x in ``dot_general(x, y)`` (or of y in ``dot_general(y, x)`` when swap_ans).

    jax's ``_dot_general_transpose_lhs``: contract g's y-free dims with y's kept dims, batch over the
    batch dims; the result has dims (batch, x kept, x contracted sorted by y's contracted dims), so a
    transpose restores x's dim order.
    """
    y_kept = _free_dims(y.ndim, y_contract, y_batch)
    x_kept = _free_dims(x_ndim, x_contract, x_batch)
    nb = len(x_batch)
    ans_batch = tuple(range(nb))
    if swap_ans:  # g's dims are (batch, y kept, x kept)
        ans_y = tuple(range(nb, nb + len(y_kept)))
    else:         # g's dims are (batch, x kept, y kept)
        ans_y = tuple(range(nb + len(x_kept), nb + len(x_kept) + len(y_kept)))
    dims_contract = (ans_y, tuple(y_kept))
    dims_batch = (ans_batch, tuple(y_batch))
    x_contract_sorted_by_y = [x_contract[i] for i in np.argsort(y_contract, kind="stable")]
    out_axes = np.argsort(list(x_batch) + x_kept + x_contract_sorted_by_y, kind="stable")
    product = b.dot_general(g, y, contract=dims_contract, batch=dims_batch)
    return _transpose(b, product, out_axes)


def _dot_general_grad(b, g, node):
    x, y = node.inputs
    (x_contract, y_contract), (x_batch, y_batch) = node.attrs["contract"], node.attrs["batch"]
    dx = _cotangent_lhs(b, g, y, x.ndim, x_contract, y_contract, x_batch, y_batch)
    dy = _cotangent_lhs(b, g, x, y.ndim, y_contract, x_contract, y_batch, x_batch, swap_ans=True)
    return [dx, dy]


register(Primitive(
    "dot_general", "contraction", _dot_general_rule, _dot_general_reference, _dot_general_grad,
    {"numba": "@library", "triton": "@dot"},
    attr_names=("contract", "batch"),
    doc="dot_general(lhs, rhs) {contract=((lhs dims), (rhs dims)), batch=((lhs dims), (rhs dims))}: "
        "jax.lax.dot_general; output dims are batch, lhs free, rhs free"))

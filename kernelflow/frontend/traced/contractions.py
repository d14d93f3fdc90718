"""Contractions: matmul, dot, tensordot, outer, einsum (two operands) as dot_general."""
from __future__ import annotations

import numpy as np

from ...ir import ShapeError, Value
from ..tracer import Tracer, where_str, wrap


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


# The sections call each other. Their names are bound after this module's own definitions, so
# importing any one section first resolves the cycle (no module-level code calls a sibling).
from .operands import (  # noqa: E402
    _as_operand, _loc, _reject, _trace_of, broadcast_shapes, ndim_of, normalize_axis, shape_of,
    to_tracer, value_of)
from .elementwise import ufunc  # noqa: E402
from .shape import _common_dtype, reshape, transpose  # noqa: E402
from .reductions import reduce_sum  # noqa: E402

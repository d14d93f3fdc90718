"""Algebraic simplification and constant folding.

Rules (each keeps the value bit-for-bit the same under IEEE arithmetic, so none of them is ``x * 0 -> 0``):
  x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1        -> x
  neg(neg(x))                                      -> x
  cast(x) to x's own dtype, select(p, x, x)        -> x
  reshape to the same shape; reshape(reshape(x))   -> one reshape
  transpose by the identity; transpose(transpose)  -> one transpose (or x)
  broadcast_in_dim to the same shape with identity dims -> x;  broadcast(broadcast(x)) -> one broadcast
  transpose(dot_general(a, b)) swapping the free dims of a and b -> dot_general(b, a)  (when the product
  has no other reader): the rhs gradient of a matmul comes out in the right order with no transpose
  reduce_sum / reduce_max / reduce_min over no axes -> x
  slice of everything with stride 1, rev over no axes, pad by nothing -> x
  concatenate along axis 0 of the leading-axis slices x[0:a], x[a:b], ..., x[k:n] (each possibly
  reshaped) -> reshape(x): both are x's elements in row-major order (merge.py concatenates the
  per-step slices x[t] of an RNN's input to batch x[t] @ wx over the steps)
  constant folding: a node whose operands are all constants and whose result is small (<= 64 elements)
  becomes a constant. Broadcasts and iotas are left symbolic: fusion turns them into index arithmetic,
  while a folded large constant would cost memory.
"""
from __future__ import annotations

import numpy as np

from ..ir import primitive
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Value
from .rewrite import rebuild

FOLD_MAX_ELEMENTS = 64
_NO_FOLD = {"broadcast_in_dim", "iota", "constant", "random_bits"}


def constant_value(v: Value) -> np.ndarray | None:
    """The value of ``v`` if it is a constant, possibly broadcast (returned unbroadcast), else None."""
    n = v.producer
    if n is None:
        return None
    if n.op == "constant":
        return n.attrs["value"]
    if n.op == "broadcast_in_dim":
        return constant_value(n.inputs[0])
    return None


def is_splat(v: Value, x: float) -> bool:
    """True when every element of ``v`` is the constant ``x``."""
    c = constant_value(v)
    return c is not None and c.size > 0 and bool(np.all(c == x))


def _compose_perm(inner, outer):
    return tuple(inner[p] for p in outer)


def _swapped_dot(b, x, perm):
    """dot_general(lhs, rhs) transposed so that rhs's free dims come first == dot_general(rhs, lhs)."""
    dot = x.producer
    (lc, rc), (lb, rb) = dot.attrs["contract"], dot.attrs["batch"]
    lhs, rhs = dot.inputs
    n_batch = len(lb)
    n_lfree = lhs.ndim - len(lc) - n_batch
    n_rfree = rhs.ndim - len(rc) - n_batch
    swap = (tuple(range(n_batch)) + tuple(range(n_batch + n_lfree, n_batch + n_lfree + n_rfree))
            + tuple(range(n_batch, n_batch + n_lfree)))
    if perm != swap:
        return None
    return b.dot_general(rhs, lhs, contract=(rc, lc), batch=(rb, lb))


def _leading_rows(v: Value):
    """(x, start, stop) when ``v`` is ``x[start:stop]`` along x's leading axis (all of the other axes,
    stride 1), possibly reshaped: its elements are x's from row ``start`` to ``stop`` in row-major order."""
    n = v.producer
    if n is not None and n.op == "reshape":
        n = n.inputs[0].producer
    if n is None or n.op != "slice":
        return None
    x, a = n.inputs[0], n.attrs
    if a["stride"] != (1,) * x.ndim or any(a["start"][1:]) or a["limit"][1:] != x.shape[1:]:
        return None
    return x, a["start"][0], a["limit"][0]


def _tiled_rows(pieces, axis: int, out_shape) -> Value | None:
    """x when ``concatenate(*pieces, axis)`` is x's elements in row-major order: the pieces are
    consecutive leading-axis slices of x covering it, and the output's dims before ``axis`` are all 1
    (then a concatenate lays its pieces one after another in row-major order)."""
    if any(d != 1 for d in out_shape[:axis]):
        return None
    x, end = None, 0
    for piece in pieces:
        rows = _leading_rows(piece)
        if rows is None or rows[1] != end or (x is not None and rows[0] is not x):
            return None
        x, end = rows[0], rows[2]
    return x if x is not None and end == x.shape[0] else None


def _rule(b, node, ins, single_use=frozenset()):  # noqa: C901 - a flat table of small rules reads best as one
    op, a = node.op, node.attrs
    out_type = node.outputs[0].type
    x = ins[0] if ins else None
    if op in ("add",) and is_splat(ins[1], 0.0):
        return x
    if op == "add" and is_splat(x, 0.0):
        return ins[1]
    if op == "sub" and is_splat(ins[1], 0.0):
        return x
    if op == "mul" and is_splat(ins[1], 1.0):
        return x
    if op == "mul" and is_splat(x, 1.0):
        return ins[1]
    if op == "div" and is_splat(ins[1], 1.0) and x.dtype.is_float:
        return x
    if op == "neg" and x.producer is not None and x.producer.op == "neg":
        return x.producer.inputs[0]
    if op == "cast" and x.dtype == out_type.dtype:
        return x
    if op == "select" and ins[1] is ins[2]:
        return ins[1]
    if op == "reshape":
        if x.shape == out_type.shape:
            return x
        if x.producer is not None and x.producer.op == "reshape":
            inner = x.producer.inputs[0]
            return inner if inner.shape == out_type.shape else b.reshape(inner, shape=a["shape"])
    if op == "transpose":
        perm = a["perm"]
        if perm == tuple(range(len(perm))):
            return x
        if x.producer is not None and x.producer.op == "dot_general" and node.inputs[0] in single_use:
            swapped = _swapped_dot(b, x, perm)
            if swapped is not None:
                return swapped
        if x.producer is not None and x.producer.op == "transpose":
            composed = _compose_perm(x.producer.attrs["perm"], perm)
            inner = x.producer.inputs[0]
            return inner if composed == tuple(range(len(composed))) else b.transpose(inner, perm=composed)
    if op == "broadcast_in_dim":
        if x.shape == out_type.shape and a["dims"] == tuple(range(x.ndim)):
            return x
        if x.producer is not None and x.producer.op == "broadcast_in_dim":
            inner = x.producer.inputs[0]
            dims = tuple(a["dims"][d] for d in x.producer.attrs["dims"])
            return b.broadcast_in_dim(inner, shape=a["shape"], dims=dims)
    if op in ("reduce_sum", "reduce_max", "reduce_min") and a["axes"] == ():
        return x
    if op == "slice" and a["start"] == (0,) * x.ndim and a["limit"] == x.shape and \
            a["stride"] == (1,) * x.ndim:
        return x
    if op == "rev" and a["axes"] == ():
        return x
    if op == "pad" and not any(a["low"]) and not any(a["high"]) and not any(a["interior"]):
        return x
    if op == "concatenate":
        tiled = _tiled_rows(ins, a["axis"], out_type.shape)
        if tiled is not None:
            return tiled if tiled.shape == out_type.shape else b.reshape(tiled, shape=out_type.shape)
    if (op not in _NO_FOLD and ins and out_type.size <= FOLD_MAX_ELEMENTS
            and all(v.producer is not None and v.producer.op == "constant" for v in ins)):
        with np.errstate(all="ignore"):
            value = primitive.get(op).reference(*[v.producer.attrs["value"] for v in ins], **a)
        if not isinstance(value, tuple):
            return b.constant(np.asarray(value, dtype=out_type.dtype.np_dtype))
    return None


def _single_use(graph: Graph) -> frozenset:
    users = graph.users()
    outputs = set(graph.outputs)
    return frozenset(v for v, us in users.items() if len(us) == 1 and v not in outputs)


def would_simplify(graph: Graph) -> bool:
    """Whether ``simplify`` would rewrite any node of ``graph``: the same rules on the same operands (a
    sweep that rewrites nothing hands each rule a copy of them), without copying the graph. A rule that
    fires may emit nodes: they go to a scratch builder."""
    single_use = _single_use(graph)
    scratch = GraphBuilder(graph.name)
    for node in graph.nodes:
        if len(node.outputs) == 1:  # as rebuild: only single-output nodes go through the rules
            scratch.loc = node.loc
            if _rule(scratch, node, list(node.inputs), single_use) is not None:
                return True
    return False


def simplify(graph: Graph, changes: dict | None = None) -> Graph:
    """One sweep of the rules; run it with DCE to a fixed point (see pipeline.py). With ``changes``, adds
    the number of rewritten nodes to ``changes["rewrites"]``."""
    single_use = _single_use(graph)
    if changes is None:
        return rebuild(graph, lambda b, node, ins: _rule(b, node, ins, single_use))

    def counting_rule(b, node, ins):
        out = _rule(b, node, ins, single_use)
        if out is not None:
            changes["rewrites"] = changes.get("rewrites", 0) + 1
        return out
    return rebuild(graph, counting_rule)

"""Common-subexpression elimination: two nodes with the same op, operands and attributes are one."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from .rewrite import rebuild


_INTS = object()  # tags the key of a tuple of plain ints (no other key holds this object)


def _attr_key(v):
    t = type(v)
    if t is int or t is str or t is float:  # as the last line below, without the isinstance tests
        return (t.__name__, v)
    if t is tuple and all(type(x) is int for x in v):  # shapes, axes: the common case
        return (_INTS, v)
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    return (type(v).__name__, v)


def _node_key(node, ins) -> tuple:
    """What makes two nodes twins: op, operands (``ins``, by identity) and attributes."""
    attrs = node.attrs
    return (node.op, tuple(map(id, ins)),
            tuple([(k, _attr_key(attrs[k])) for k in sorted(attrs)]) if attrs else ())


def has_twins(graph: Graph) -> bool:
    """Whether ``eliminate_common_subexpressions`` would merge any node of ``graph`` (without copying it)."""
    seen = set()
    for node in graph.nodes:
        if len(node.outputs) == 1:  # as rebuild: only single-output nodes go through the rule
            key = _node_key(node, node.inputs)
            if key in seen:
                return True
            seen.add(key)
    return False


def eliminate_common_subexpressions(graph: Graph, changes: dict | None = None) -> Graph:
    """With ``changes``, adds the number of nodes merged into an earlier twin to ``changes["rewrites"]``."""
    seen = {}

    def rule(b, node, ins):
        key = _node_key(node, ins)
        if key in seen:
            if changes is not None:
                changes["rewrites"] = changes.get("rewrites", 0) + 1
            return seen[key]
        # rebuild keeps every value's type, so the node's own output type holds: copy, no shape rule
        out = b.copy_node(node, ins).outputs[0]
        seen[key] = out
        return out

    return rebuild(graph, rule)

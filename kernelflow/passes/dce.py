"""Dead-code elimination: drop nodes none of whose outputs reach a graph output.

Every primitive is pure (random_bits is a function of its key), so any unused node can go.
"""
from __future__ import annotations

from ..ir.graph import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    """Return a graph without dead nodes (the same Value objects; the input graph is not modified)."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if not live.isdisjoint(node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    return Graph(graph.name, graph.inputs, kept, graph.outputs)

"""A small driver for passes that rebuild a graph node by node through a GraphBuilder.

``rebuild(graph, rule)`` copies ``graph``; for each node, ``rule(b, node, inputs)`` sees the node and its
already-rewritten operands and returns a Value to use instead of the node's (single) output, or None to
copy the node as it is. Rebuilding (rather than editing in place) keeps the result valid SSA by
construction: every value is emitted by the builder after its operands. A rule that needs the new value of
some other, earlier node (not only its operands) passes its own ``env`` dict: rebuild fills it, old value ->
new value, as it goes.
"""
from __future__ import annotations

from typing import Callable

from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, Value

Rule = Callable[[GraphBuilder, Node, list[Value]], "Value | None"]


def rebuild(graph: Graph, rule: Rule, env: dict[Value, Value] | None = None) -> Graph:
    b = GraphBuilder(graph.name)
    env = {} if env is None else env
    env.update({v: b.add_input(v.type) for v in graph.inputs})
    copy_node = b.copy_node
    for node in graph.nodes:
        ins = [env[v] for v in node.inputs]
        outputs = node.outputs
        # as ``with b.at(node.loc)`` (b.loc is None between nodes), without a context manager per node:
        # a rebuild copies every node of the graph, and the pipeline rebuilds it a dozen times
        b.loc = node.loc
        try:
            replacement = rule(b, node, ins) if len(outputs) == 1 else None
            if replacement is not None:
                if replacement.type != outputs[0].type:
                    raise AssertionError(f"rewrite of {node.op} changed its type "
                                         f"{outputs[0].type} -> {replacement.type}")
                env[outputs[0]] = replacement
                continue
            # Every operand keeps its type (a replacement must have the replaced value's type, checked
            # above), so the node's own output types stand: a copy, without re-running the shape rule.
            new = copy_node(node, ins)
        finally:
            b.loc = None
        if len(outputs) == 1:
            env[outputs[0]] = new.outputs[0]
        else:
            for old, nv in zip(outputs, new.outputs):
                env[old] = nv
    return b.finish([env[v] for v in graph.outputs])

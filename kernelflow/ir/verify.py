"""The verifier: checks that a Graph is valid SSA and well typed. Passes are verified after they run in tests.

Checks: every value is defined once (as an input or by one node) before it is used; every op is a known
primitive with exactly its attributes; every node's output types equal what its shape rule infers; the
outputs are defined values. An error names the node by its printed line and the user's source location.
"""
from __future__ import annotations

from . import primitive
from .graph import Graph, Node, Value


class VerifyError(ValueError):
    pass


def _describe(node: Node, k: int) -> str:
    ins = ", ".join(str(v.type) for v in node.inputs)
    outs = ", ".join(str(v.type) for v in node.outputs)
    where = f" (traced at {node.loc})" if node.loc else ""
    return f"node #{k} `{outs} = {node.op}({ins})`{where}"


def verify(graph: Graph) -> Graph:
    """Raise VerifyError describing the first problem; return the graph unchanged if it is valid."""
    defined: set[Value] = set()
    for i, v in enumerate(graph.inputs):
        if not isinstance(v, Value):
            raise VerifyError(f"graph {graph.name}: input {i} is not a Value")
        if v in defined:
            raise VerifyError(f"graph {graph.name}: input {i} is listed twice")
        if v.producer is not None:
            raise VerifyError(f"graph {graph.name}: input {i} is also the output of a {v.producer.op} node")
        defined.add(v)
    for k, node in enumerate(graph.nodes):
        where = _describe(node, k)
        if not primitive.is_primitive(node.op):
            raise VerifyError(f"graph {graph.name}: {where}: unknown op {node.op!r}")
        prim = primitive.get(node.op)
        for j, v in enumerate(node.inputs):
            if v not in defined:
                raise VerifyError(f"graph {graph.name}: {where}: operand {j} is used before it is defined "
                                  f"(not an input or an earlier node's output)")
        if sorted(node.attrs) != sorted(prim.attr_names):
            raise VerifyError(f"graph {graph.name}: {where}: attributes {sorted(node.attrs)} differ from "
                              f"the expected {sorted(prim.attr_names)}")
        try:
            inferred = prim.shape_rule(*[v.type for v in node.inputs], **node.attrs)
        except (ValueError, TypeError) as e:
            raise VerifyError(f"graph {graph.name}: {where}: shape rule rejects it: {e}") from None
        inferred = inferred if isinstance(inferred, tuple) else (inferred,)
        actual = tuple(v.type for v in node.outputs)
        if inferred != actual:
            raise VerifyError(f"graph {graph.name}: {where}: output types "
                              f"({', '.join(map(str, actual))}) differ from the shape rule's "
                              f"({', '.join(map(str, inferred))})")
        for j, v in enumerate(node.outputs):
            if v in defined:
                raise VerifyError(f"graph {graph.name}: {where}: output {j} is defined twice")
            if v.producer is not node or v.index != j:
                raise VerifyError(f"graph {graph.name}: {where}: output {j} does not point back to its node")
            defined.add(v)
    for i, v in enumerate(graph.outputs):
        if v not in defined:
            raise VerifyError(f"graph {graph.name}: output {i} ({v.type}) is not defined in the graph")
    return graph

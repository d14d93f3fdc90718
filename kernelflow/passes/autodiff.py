"""Reverse-mode autodiff as a graph-to-graph transform.

``vjp_graph(g, wrt)`` returns a new Graph that computes g's outputs and the vector-Jacobian products
with respect to the inputs listed in ``wrt``. The forward nodes are copied once and their values reused
by the backward nodes (no recomputation); only nodes on a path from a ``wrt`` input to a differentiated
output get a backward node (activity analysis), and dead code is removed at the end. Gradient rules come
from the primitive registry and emit primitives, so the result can be differentiated again.
"""
from __future__ import annotations

from typing import Sequence

from ..ir import primitive
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, Value
from .dce import eliminate_dead_code

INPUT = "input"  # seed kind: the cotangent of this output is a new graph input


class GradientError(TypeError):
    pass


def _active_nodes(graph: Graph, wrt_values: set[Value], seeded: set[Value]) -> set[Node]:
    """Nodes that depend on a wrt input AND feed a seeded output: only these need backward rules."""
    depends = set(wrt_values)
    for n in graph.nodes:
        if not depends.isdisjoint(n.inputs):
            depends.update(n.outputs)
    needed = {v for v in seeded}
    active = set()
    for n in reversed(graph.nodes):
        if not needed.isdisjoint(n.outputs) and not depends.isdisjoint(n.inputs):
            active.add(n)
            needed.update(n.inputs)
    return active


def vjp_graph(graph: Graph, wrt: Sequence[int], seeds: Sequence | None = None, consume: bool = False) -> Graph:
    """Differentiate ``graph`` with respect to the inputs at positions ``wrt``.

    ``seeds`` has one entry per output: ``"input"`` (the default) makes its cotangent a new input of the
    result, a number makes it that constant (``1.0`` for the gradient of a scalar loss), ``None`` leaves
    the output undifferentiated (an auxiliary output).

    The result's inputs are the original inputs followed by the cotangent inputs (in output order); its
    outputs are the original outputs followed by one gradient per ``wrt`` entry.

    ``consume=True``: the caller made ``graph`` for this one use (a traced function being differentiated),
    so its inputs and nodes become the forward part of the result instead of being copied; ``graph``
    must not be used afterwards.
    """
    seeds = list(seeds) if seeds is not None else [INPUT] * len(graph.outputs)
    if len(seeds) != len(graph.outputs):
        raise ValueError(f"{len(seeds)} seeds for {len(graph.outputs)} outputs")
    for i in wrt:
        if not 0 <= i < len(graph.inputs):
            raise IndexError(f"wrt index {i} out of range for {len(graph.inputs)} inputs")
        if not graph.inputs[i].dtype.is_float:
            raise GradientError(f"input {i} has dtype {graph.inputs[i].dtype}: gradients are defined "
                                f"only for floating-point inputs")

    b = GraphBuilder(f"{graph.name}_vjp")
    env: dict[Value, Value] = {}
    node_map: dict[Node, Node] = {}
    if consume:  # the forward part is the graph itself
        b.graph.inputs.extend(graph.inputs)
        b.graph.nodes.extend(graph.nodes)
        env.update((v, v) for v in graph.values())
        node_map.update((n, n) for n in graph.nodes)
    else:
        for v in graph.inputs:
            env[v] = b.add_input(v.type)
        # Forward: copied once; the backward pass reads these values instead of recomputing them.
        for n in graph.nodes:  # operands of the same types as the originals: a plain copy
            new = b.copy_node(n, [env[v] for v in n.inputs])
            node_map[n] = new
            for old, nv in zip(n.outputs, new.outputs):
                env[old] = nv

    cts: dict[Value, Value] = {}  # new-graph value -> accumulated cotangent

    def accumulate(v: Value, ct: Value, why: str):
        if ct.type is not v.type and ct.type != v.type:
            raise AssertionError(f"gradient rule of {why} returned a {ct.type} cotangent for a {v.type} operand")
        cts[v] = b.add(cts[v], ct) if v in cts else ct

    seeded = set()
    for out, seed in zip(graph.outputs, seeds):
        if seed is None or not out.dtype.is_float:
            if seed == INPUT:
                b.add_input(out.type)  # keep the documented input layout; the cotangent is unused
            continue
        seeded.add(out)
        with b.at(out.producer.loc if out.producer is not None else None):
            ct = b.add_input(out.type) if seed == INPUT else b.full(out.shape, seed, out.dtype)
        accumulate(env[out], ct, "the output seed")

    wrt_values = {graph.inputs[i] for i in wrt}
    active = _active_nodes(graph, wrt_values, seeded)
    for n in reversed(graph.nodes):
        if n not in active:
            continue
        new = node_map[n]
        if len(new.outputs) != 1:
            raise NotImplementedError(f"autodiff of multi-output op {n.op}")
        g = cts.get(new.outputs[0])
        if g is None:
            continue
        prim = primitive.get(n.op)
        if prim.grad is primitive.NONDIFFERENTIABLE:
            continue
        if prim.grad is None:
            raise GradientError(f"{n.op} has no gradient rule (traced at {n.loc})")
        # the rule's nodes and the sums of their results carry n's location (as ``with b.at(n.loc)``,
        # without a context manager per node: there are thousands)
        saved = b.loc
        if n.loc is not None:
            b.loc = n.loc
        try:
            in_cts = prim.grad(b, g, new)
            if len(in_cts) != len(new.inputs):
                raise AssertionError(f"gradient rule of {n.op} returned {len(in_cts)} cotangents for "
                                     f"{len(new.inputs)} operands")
            for old_in, new_in, ct in zip(n.inputs, new.inputs, in_cts):
                if ct is not None and new_in.dtype.is_float and (
                        old_in in wrt_values or (old_in.producer is not None and old_in.producer in active)):
                    accumulate(new_in, ct, n.op)
        finally:
            b.loc = saved

    grads = []
    for i in wrt:
        v = env[graph.inputs[i]]
        grads.append(cts[v] if v in cts else b.zeros_like(v))
    result = b.finish([env[v] for v in graph.outputs] + grads)
    return eliminate_dead_code(result)

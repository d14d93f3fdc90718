"""Gradient checks for single primitives: the autodiff pass against central differences in float64.

``check_primitive_grad("exp", [x])`` builds a one-node graph, derives its VJP graph with the autodiff pass
(verified), runs it with the reference interpreter for a random cotangent, and compares each float
operand's gradient with central differences of <cotangent, f(x)>. ``order=2`` checks the gradient of the
VJP graph itself (second derivatives) the same way. Non-float operands (indices, predicates) are held fixed.
"""
from __future__ import annotations

import numpy as np

from kernelflow.ir import GraphBuilder, interpret, primitive, type_of_array, verify
from kernelflow.passes.autodiff import vjp_graph


def ref(op: str):
    """The numpy reference implementation of primitive ``op``."""
    return primitive.get(op).reference


def out_type(op: str, *types, **attrs):
    """The type the shape rule of ``op`` gives for operands of these types (through the builder)."""
    b = GraphBuilder()
    return b.emit(op, *[b.add_input(t) for t in types], **attrs).type


def exact_linear_vjp(f, arrays, which: int, cotangent):
    """d<cotangent, f(*arrays)>/d arrays[which] for f linear in that argument, exactly:
    <cotangent, f(..., e_i, ...)> for each basis vector e_i."""
    target = arrays[which]
    out = np.zeros_like(target)
    for i in np.ndindex(target.shape):
        basis = np.zeros_like(target)
        basis[i] = 1
        args = list(arrays)
        args[which] = basis
        out[i] = np.sum(cotangent * f(*args))
    return out


def one_node_graph(op: str, arrays, attrs):
    b = GraphBuilder(op)
    ins = [b.add_input(type_of_array(a)) for a in arrays]
    return b.finish([b.emit(op, *ins, **attrs)])


def numerical_vjp(f, arrays, ct, wrt, eps):
    """Central differences of sum(ct * f(arrays)) with respect to arrays[i] for i in wrt."""
    grads = []
    for i in wrt:
        g = np.zeros_like(arrays[i])
        flat = g.reshape(-1)
        for k in range(arrays[i].size):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[i].reshape(-1)[k] += eps
            minus[i].reshape(-1)[k] -= eps
            flat[k] = (np.sum(ct * f(plus)) - np.sum(ct * f(minus))) / (2 * eps)
        grads.append(g)
    return grads


def check_graph_grad(graph, arrays, rtol=1e-6, atol=1e-6, eps=1e-6, seed=0):
    """Check vjp_graph(graph) against central differences for all float inputs; returns the VJP graph."""
    rng = np.random.default_rng(seed)
    wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    vg = verify(vjp_graph(graph, wrt))
    out_type = graph.outputs[0].type
    ct = rng.standard_normal(out_type.shape).astype(out_type.dtype.np_dtype)
    extra_cts = [np.zeros(v.type.shape, v.type.dtype.np_dtype) for v in graph.outputs[1:]]
    got = interpret(vg, list(arrays) + [ct] + extra_cts)[len(graph.outputs):]
    want = numerical_vjp(lambda xs: interpret(graph, xs)[0], arrays, ct, wrt, eps)
    for i, g, w in zip(wrt, got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {graph.name} w.r.t. operand {i}")
    return vg


def check_primitive_grad(op: str, arrays, order: int = 1, rtol=1e-6, atol=1e-6, eps=1e-6, seed=0, **attrs):
    """First (and with order=2, second) derivatives of primitive ``op`` against finite differences.

    Pass float64 arrays for the differentiated operands.
    """
    arrays = [np.asarray(a) for a in arrays]
    g = verify(one_node_graph(op, arrays, attrs))
    vg = check_graph_grad(g, arrays, rtol, atol, eps, seed)
    if order >= 2:
        # The VJP graph is a function of (operands, cotangent); differentiate its first gradient output.
        rng = np.random.default_rng(seed + 1)
        ct = rng.standard_normal(g.outputs[0].type.shape)
        first_grad = vg.outputs[len(g.outputs)]
        second = type(vg)(vg.name, vg.inputs, vg.nodes, [first_grad])
        check_graph_grad(second, arrays + [ct], rtol=max(rtol, 1e-5), atol=max(atol, 1e-5), eps=eps,
                         seed=seed + 2)
    return vg

"""Fusion: kernel counts for canonical graphs, no materialised intermediates, reasons, memory.

Every compiled graph is also checked against the interpreter (fusion must never change results).
"""
from __future__ import annotations

import numpy as np
import pytest

import kernelflow as kf
from kernelflow.ir import GraphBuilder, TensorType, as_dtype
from kernelflow.ir.interpret import interpret
from kernelflow.passes.fusion import fuse
from kernelflow.runtime import compile_graph


def build(inputs, fn, name="case"):
    b = GraphBuilder(name)
    vals = [b.add_input(TensorType(as_dtype(d), tuple(s))) for s, d in inputs]
    outs = fn(b, *vals)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def agree(exe, args, rtol=2e-5, atol=1e-6):
    got = exe(*args)
    want = interpret(exe.graph, args)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def lowered(fn, *args):
    c = kf.jit(fn).lower(*args).compile()
    agree(c, kf.tree_flatten(args)[0], atol=1e-5)
    return c


def kernel_param_values(exe):
    return [p.value for k in exe.kernels for p in k.description.params]


def test_six_op_pointwise_chain_is_one_kernel_without_intermediates():
    def fn(b, x, y, bias):
        bb = b.broadcast_in_dim(bias, shape=(16, 32), dims=(1,))
        t = b.add(b.mul(x, y), bb)          # 2 ops (+ a folded broadcast)
        t = b.tanh(b.sub(t, b.exp(y)))      # 3 more
        return b.maximum(t, x)              # 6th
    g = build([((16, 32), "f32"), ((16, 32), "f32"), ((32,), "f32")], fn)
    exe = compile_graph(g)
    agree(exe, [rand(16, 32), rand(16, 32, seed=1), rand(32, seed=2)])
    assert len(exe.kernels) == 1 and [s.kind for s in exe.plan.steps] == ["kernel"]
    # No intermediate is allocated: the kernel touches only the graph's inputs and outputs, the pool is empty.
    assert set(kernel_param_values(exe)) == set(exe.plan.graph.inputs) | set(exe.plan.graph.outputs)
    assert exe.memory.slot_bytes == []
    src = exe.kernels[0].source
    assert "prange" not in src and "tanh" in src and "%" in src  # comments name the IR values


def test_softmax_is_one_kernel_and_computes_exp_once():
    c = lowered(lambda x: kf.softmax(x, axis=-1), rand(8, 33))
    assert len(c.kernels) == 1
    k = c.kernels[0].description
    assert k.kind == "reduction" and k.phases == 3
    assert sum(1 for e in k.exprs if e.op == "exp") == 1  # stashed per row, not recomputed
    assert c.memory.slot_bytes == []


def test_log_softmax_and_layer_norm_forward_are_one_kernel_each():
    x = rand(6, 20)
    assert len(lowered(lambda x: kf.log_softmax(x, axis=-1), x).kernels) == 1
    c = lowered(lambda x, g, b: kf.layer_norm(x, g, b), x, rand(20, seed=1), rand(20, seed=2))
    assert len(c.kernels) == 1


def test_softmax_backward_is_one_kernel():
    c = lowered(kf.grad(lambda x: (kf.softmax(x, axis=-1) * x).sum()), rand(8, 12))
    assert len(c.kernels) == 1


def test_layer_norm_backward_fuses_row_work():
    """Row reductions (over features) fuse into one kernel; dgamma/dbeta reduce over the batch (columns)."""
    f = kf.grad(lambda x, g, b: (kf.layer_norm(x, g, b) * x).sum(), argnums=(0, 1, 2))
    c = lowered(f, rand(8, 12), rand(12, seed=1), rand(12, seed=2))
    assert len(c.kernels) <= 3


def test_cross_entropy_kernel_count():
    """log_softmax rows and the label pick (a masked row sum: eq(iota, label)) fuse: no gather step."""
    labels = np.random.default_rng(0).integers(0, 10, 16).astype(np.int32)
    c = lowered(lambda x, l: kf.cross_entropy(x, l), rand(16, 10), labels)
    assert len(c.kernels) <= 3
    assert "gather" not in c.explain()


def test_mlp_forward_at_most_two_kernels_per_layer_plus_gemms():
    rng = np.random.default_rng(0)
    sizes = [20, 16, 16, 5]
    params = [(rng.standard_normal((a, b)).astype(np.float32) * 0.3, rng.standard_normal(b).astype(np.float32))
              for a, b in zip(sizes, sizes[1:])]

    def mlp(params, x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            x = kf.relu(x) if i < len(params) - 1 else kf.softmax(x, axis=-1)
        return x

    c = lowered(mlp, params, rng.standard_normal((8, 20)).astype(np.float32))
    gemms = sum(1 for s in c.plan.steps if s.kind == "library")
    assert gemms == 3
    assert len(c.kernels) <= 2 * 3
    # bias + relu epilogues write over the GEMM result in place (it is dead afterwards).
    assert len(c.memory.in_place) >= 1
    assert c.memory.peak <= c.memory.peak_unfused


def test_siblings_reading_the_same_input_share_a_kernel():
    g = build([((8, 8), "f32")], lambda b, x: [b.exp(x), b.neg(x), b.mul(x, x)])
    exe = compile_graph(g)
    agree(exe, [rand(8, 8)])
    assert len(exe.kernels) == 1 and len(exe.kernels[0].description.outputs()) == 3


def test_expensive_producer_is_not_recomputed_through_a_broadcast():
    def fn(b, v, y):
        e = b.exp(v)
        return b.add(b.broadcast_in_dim(e, shape=(64, 32), dims=(1,)), y)
    g = build([((32,), "f32"), ((64, 32), "f32")], fn)
    exe = compile_graph(g)
    agree(exe, [rand(32), rand(64, 32, seed=1)])
    assert len(exe.kernels) == 2
    assert "would be computed 2048 times for 32 elements" in exe.explain()


def test_cheap_producer_is_recomputed_through_a_broadcast():
    def fn(b, v, y):
        return b.add(b.broadcast_in_dim(b.neg(v), shape=(64, 32), dims=(1,)), y)
    g = build([((32,), "f32"), ((64, 32), "f32")], fn)
    assert len(fuse(g).kernels()) == 1


def test_column_reduction_is_not_fused_with_strided_stores():
    def fn(b, x):
        s = b.reduce_sum(x, axes=(0,))
        return [s, b.sub(x, b.broadcast_in_dim(s, shape=(16, 8), dims=(1,)))]
    g = build([((16, 8), "f32")], fn)
    exe = compile_graph(g)
    agree(exe, [rand(16, 8)])
    assert "stride" in exe.explain()


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_reduction_then_pointwise_consumer(axes):
    def fn(b, x):
        kept = tuple(i for i in range(3) if i not in axes)
        m = b.reduce_max(x, axes=axes)
        e = b.exp(b.sub(x, b.broadcast_in_dim(m, shape=x.shape, dims=kept)))
        return [b.reduce_sum(e, axes=axes), m]
    g = build([((3, 4, 5), "f32")], fn)
    exe = compile_graph(g)
    agree(exe, [rand(3, 4, 5)])
    assert len(exe.kernels) == 1


def test_explain_and_fused_ir_name_every_decision():
    c = lowered(lambda x: kf.softmax(x * 2.0, axis=-1), rand(4, 6))
    text = c.explain()
    assert "fused:" in text and "reduction kernel" in text and "memory plan" in text
    fused = c.ir("fused")
    assert all("# step" in line for line in fused.splitlines()[1:-2])


def test_no_cycle_through_a_kernel_entered_and_left_at_different_nodes():
    """Weighted mean of per-example losses, differentiated: the cycle check must see paths that enter a
    multi-output kernel at one node and leave it from a sibling (a node-level search misses them)."""
    rng = np.random.default_rng(0)
    w_ = rng.standard_normal((12, 4)).astype(np.float32)
    x = rng.standard_normal((10, 12)).astype(np.float32)
    y = rng.integers(0, 4, 10).astype(np.int32)
    weights = np.full(10, 0.1, np.float32)

    def objective(w_, x, y, weights):
        per_example = kf.cross_entropy(x @ w_, y, reduction="none")
        return np.sum(per_example * weights) / np.sum(weights)
    lowered(kf.value_and_grad(objective), w_, x, y, weights)


def test_kernel_dtypes_parameter_admits_half_precision_chains():
    """The CPU computes f16 through numpy; a backend that passes f16 in ``kernel_dtypes`` (Triton)
    gets the chain as one kernel."""
    from kernelflow.passes.fusion import KERNEL_DTYPES
    b = GraphBuilder("half")
    x = b.add_input(TensorType(as_dtype("f16"), (4, 8)))
    g = b.finish([b.exp(b.neg(x))])
    assert [s.kind for s in fuse(g).steps].count("kernel") == 0
    plan = fuse(g, kernel_dtypes=KERNEL_DTYPES | {"f16"})
    assert [s.kind for s in plan.steps] == ["kernel"]


def test_sibling_merges_stop_at_the_node_cap():
    """Forty chains reading one input (an unrolled loop reading its labels): siblings merge only up to
    MAX_SIBLING_NODES nodes per kernel (compile time), the refusals are explained, results agree."""
    from kernelflow.passes.fusion import MAX_SIBLING_NODES

    def fn(b, x):
        return [b.exp(b.mul(x, b.full_like(x, 0.01 * (i + 1)))) for i in range(40)]
    g = build([((4, 8), "f32")], fn)
    plan = fuse(g)
    sizes = [len(s.nodes) for s in plan.kernels()]
    assert max(sizes) <= MAX_SIBLING_NODES and len(sizes) > 1
    assert any(f"exceed {MAX_SIBLING_NODES} nodes" in d for d in plan.decisions)
    agree(compile_graph(g), [rand(4, 8)])

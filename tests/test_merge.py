"""The merging rewrites (passes/merge.py): each result verified, evaluated by the reference interpreter
and compared with the original graph's values (float64 inputs, so reassociated sums agree to ~1e-12)."""
import numpy as np
import pytest

from kernelflow.ir import GraphBuilder, TensorType, interpret, verify
from kernelflow.ir import types as T
from kernelflow.passes.merge import (merge_sibling_dots, merge_small_operations, merge_summed_dots,
                                     sum_of_pads_to_concatenate)

F64 = T.float64
MATMUL = {"contract": ((1,), (0,)), "batch": ((), ())}


def inputs_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape) if v.dtype.is_float else rng.integers(0, 2, v.shape)
            for v in g.inputs]


def check_same_values(before, after):
    verify(after)
    args = inputs_for(before)
    for want, got in zip(interpret(before, args), interpret(after, args)):
        assert want.shape == got.shape and want.dtype == got.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sum_of_dots_becomes_one_dot_over_concatenated_operands():
    """sum_t a_t^T @ d_t (an RNN weight gradient; the batch sizes differ) -> one dot; the term that is not
    a dot stays a separate addend, and a dot with a second reader is left alone."""
    b = GraphBuilder()
    a = [b.add_input(TensorType(F64, (n, 8))) for n in (3, 1, 2)]
    d = [b.add_input(TensorType(F64, (n, 6))) for n in (3, 1, 2)]
    extra = b.add_input(TensorType(F64, (8, 6)))
    dots = [b.dot_general(x, y, contract=((0,), (0,)), batch=((), ())) for x, y in zip(a, d)]
    total = b.add(b.add(b.add(dots[0], extra), dots[1]), dots[2])
    g = b.finish([total])
    merged = merge_summed_dots(g)
    check_same_values(g, merged)
    assert merged.op_counts()["dot_general"] == 1 and merged.op_counts()["concatenate"] == 2
    (dot,) = [n for n in merged.nodes if n.op == "dot_general"]
    assert dot.inputs[0].shape == (6, 8) and dot.inputs[1].shape == (6, 6)

    b = GraphBuilder()
    x, y, z = (b.add_input(TensorType(F64, (3, 1))) for _ in range(3))
    shared = b.dot_general(x, b.transpose(y, perm=(1, 0)), **MATMUL)
    g = b.finish([b.add(shared, b.dot_general(y, b.transpose(z, perm=(1, 0)), **MATMUL)), shared])
    kept = merge_summed_dots(g)
    assert kept.op_counts()["dot_general"] == 2
    check_same_values(g, kept)


def test_a_sum_of_dots_with_large_operands_is_left_alone():
    """x @ wx + h @ wh: merging would copy both weights to save one add of a small result."""
    b = GraphBuilder()
    x, h = b.add_input(TensorType(F64, (2, 5))), b.add_input(TensorType(F64, (2, 3)))
    wx, wh = b.add_input(TensorType(F64, (5, 4))), b.add_input(TensorType(F64, (3, 4)))
    g = b.finish([b.add(b.dot_general(x, wx, **MATMUL), b.dot_general(h, wh, **MATMUL))])
    assert merge_summed_dots(g).op_counts()["dot_general"] == 2


def test_zero_pads_of_disjoint_pieces_sum_to_a_concatenation_with_zeros_in_the_gaps():
    """The gradient of a[:, 0:2], a[:, 4:5], a[:, 2:4] (out of order) and a gap at 5:7."""
    b = GraphBuilder()
    pieces = [((0, 2), b.add_input(TensorType(F64, (3, 2)))), ((4, 5), b.add_input(TensorType(F64, (3, 1)))),
              ((2, 4), b.add_input(TensorType(F64, (3, 2))))]
    padded = [b.pad(x, low=(0, lo), high=(0, 7 - hi), interior=(0, 0), value=0.0) for (lo, hi), x in pieces]
    g = b.finish([b.add(b.add(padded[0], padded[1]), padded[2])])
    merged = sum_of_pads_to_concatenate(g)
    check_same_values(g, merged)
    assert "pad" not in merged.op_counts() and merged.op_counts()["concatenate"] == 1


@pytest.mark.parametrize("case", ["overlap", "nonzero", "two_axes"])
def test_pads_that_are_not_a_concatenation_are_left_alone(case):
    b = GraphBuilder()
    x, y = b.add_input(TensorType(F64, (3, 3))), b.add_input(TensorType(F64, (3, 3)))
    if case == "overlap":
        p = [b.pad(x, low=(0, 0), high=(0, 2), interior=(0, 0), value=0.0),
             b.pad(y, low=(0, 2), high=(0, 0), interior=(0, 0), value=0.0)]
    elif case == "nonzero":
        p = [b.pad(x, low=(0, 0), high=(0, 3), interior=(0, 0), value=1.0),
             b.pad(y, low=(0, 3), high=(0, 0), interior=(0, 0), value=0.0)]
    else:
        p = [b.pad(x, low=(0, 0), high=(3, 3), interior=(0, 0), value=0.0),
             b.pad(y, low=(3, 3), high=(0, 0), interior=(0, 0), value=0.0)]
    g = b.finish([b.add(p[0], p[1])])
    kept = sum_of_pads_to_concatenate(g)
    check_same_values(g, kept)
    assert kept.op_counts()["pad"] == 2 and "concatenate" not in kept.op_counts()


def unrolled_rnn(steps=4):
    """h_{t+1} = tanh(x_t @ wx + h_t @ wh); y_t = h_{t+1} @ wy: the x and y products are independent
    siblings (each group shares its weight), the h products a chain that must stay sequential."""
    b = GraphBuilder()
    wx, wh, wy = (b.add_input(TensorType(F64, s)) for s in ((5, 6), (6, 6), (6, 3)))
    xs = [b.add_input(TensorType(F64, (2, 5))) for _ in range(steps)]
    h = b.add_input(TensorType(F64, (2, 6)))
    ys = []
    for x in xs:
        h = b.tanh(b.add(b.dot_general(x, wx, **MATMUL), b.dot_general(h, wh, **MATMUL)))
        ys.append(b.dot_general(h, wy, **MATMUL))
    return b.finish(ys + [h])


def test_independent_dots_sharing_an_operand_merge_and_a_chain_does_not():
    g = unrolled_rnn()
    merged = merge_sibling_dots(g)
    check_same_values(g, merged)
    dots = [n for n in merged.nodes if n.op == "dot_general"]
    assert len(dots) == 4 + 1 + 1  # the h chain, one x product, one y product
    by_weight = {}
    for n in dots:
        by_weight.setdefault(n.inputs[1], []).append(n.inputs[0].shape)
    assert sorted(by_weight.values(), key=len) == [[(8, 5)], [(8, 6)], [(2, 6)] * 4]


def test_shared_lhs_concatenates_the_rhs_free_dim_and_slices_the_output_columns():
    b = GraphBuilder()
    w = b.add_input(TensorType(F64, (4, 3)))
    rs = [b.add_input(TensorType(F64, (3, n))) for n in (2, 5)]
    g = b.finish([b.dot_general(w, r, **MATMUL) for r in rs])
    merged = merge_sibling_dots(g)
    check_same_values(g, merged)
    assert merged.op_counts()["dot_general"] == 1


def test_groups_whose_merging_would_form_a_cycle_are_not_merged():
    """a1 = x @ w1 and b2 = y @ w2 start two groups; a2 = f(b2) @ w1 and b1 = f(a1) @ w2 would join them
    by shared operand, but then {a1, a2} needs b2 and {b1, b2} needs a1: a cycle. Levels keep them apart."""
    b = GraphBuilder()
    w1, w2, x, y = (b.add_input(TensorType(F64, (3, 3))) for _ in range(4))
    a1 = b.dot_general(x, w1, **MATMUL)
    b2 = b.dot_general(y, w2, **MATMUL)
    a2 = b.dot_general(b.tanh(b2), w1, **MATMUL)
    b1 = b.dot_general(b.tanh(a1), w2, **MATMUL)
    g = b.finish([a2, b1])
    merged = merge_sibling_dots(g)
    check_same_values(g, merged)
    assert merged.op_counts()["dot_general"] == 4


def test_lstm_training_step_keeps_its_values_and_loses_its_small_gemms():
    """The traced W7-style step (4 steps, tiny sizes) through all three rewrites against the original."""
    kf = pytest.importorskip("kernelflow")
    from kernelflow.passes.pipeline import simplify_to_fixed_point

    def loss(p, xs, ys):
        h = np.zeros((2, 4))
        c = np.zeros((2, 4))
        total = 0.0
        for t in range(xs.shape[0]):
            a = xs[t] @ p["wx"] + h @ p["wh"] + p["b"]
            i, f, o = kf.sigmoid(a[:, :4]), kf.sigmoid(a[:, 4:8]), kf.sigmoid(a[:, 12:])
            c = f * c + i * np.tanh(a[:, 8:12])
            h = o * np.tanh(c)
            logits = h @ p["wy"]
            total = total + (logits - logits.max(axis=1, keepdims=True))[np.arange(2), ys[t]].sum()
        return total

    rng = np.random.default_rng(0)
    p = {"wx": rng.standard_normal((5, 16)), "wh": rng.standard_normal((4, 16)),
         "b": rng.standard_normal(16), "wy": rng.standard_normal((4, 6))}
    xs, ys = rng.standard_normal((4, 2, 5)), rng.integers(0, 6, (4, 2))
    g = simplify_to_fixed_point(kf.jit(kf.grad(loss)).lower(p, xs, ys).graph)
    merged = simplify_to_fixed_point(merge_small_operations(g))
    check_same_values(g, merged)
    counts_before, counts_after = g.op_counts(), merged.op_counts()
    # forward: 3 per step; backward: dwx, dwh, dwy, dh through wh and dh through wy per step, except dh
    # through wh at the first step (h_0 is a constant)
    assert counts_before["dot_general"] == 4 * 3 + 4 * 5 - 1 and counts_before["pad"] == 4 * 4
    # forward: the h chain, one x product, one y product; backward: one dot each for dwx, dwh, dwy,
    # the dh chain through wh (3) and one for dh through wy
    assert counts_after["dot_general"] == (4 + 1 + 1) + (3 + 3 + 1) and "pad" not in counts_after

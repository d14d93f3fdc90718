"""The merging rewrites (passes/merge.py): each result verified, evaluated by the reference interpreter
and compared with the original graph's values (float64 inputs, so reassociated sums agree to ~1e-12)."""
import numpy as np
import pytest

from kernelflow.ir import GraphBuilder, TensorType, interpret, verify
from kernelflow.ir import types as T
from kernelflow.passes.merge import (merge_sibling_dots, merge_small_operations, merge_summed_dots,
                                     merge_summed_reductions, share_overlapping_concatenates,
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


def sum_in_reverse(b, terms):
    total = terms[-1]
    for t in reversed(terms[:-1]):
        total = b.add(total, t)
    return total


def concatenates(g):
    return [n for n in g.nodes if n.op == "concatenate"]


@pytest.mark.parametrize("forward_side", ["lhs", "rhs"])
def test_a_sum_of_dots_added_backward_concatenates_in_definition_order(forward_side):
    """Autodiff adds a weight's gradient terms from the last step back; the merged dot takes its pieces in
    the order the side defined first was defined, so sum_t h_t^T @ g_t (and g_t @ h_t^T, the weight on
    the left) concatenates h_0, h_1, ... like the forward pass's own merged h_t @ w, and g_t alongside."""
    b = GraphBuilder()
    hs = [b.add_input(TensorType(F64, (1, 3))) for _ in range(4)]
    gs = [b.tanh(b.add_input(TensorType(F64, (1, 5)))) for _ in range(4)]  # defined after every h_t
    if forward_side == "lhs":
        dots = [b.dot_general(h, g, contract=((0,), (0,)), batch=((), ())) for h, g in zip(hs, gs)]
    else:
        dots = [b.dot_general(g, h, contract=((0,), (0,)), batch=((), ())) for h, g in zip(hs, gs)]
    g = b.finish([sum_in_reverse(b, dots)])
    merged = merge_summed_dots(g)
    check_same_values(g, merged)
    (h_concat,) = [n for n in concatenates(merged) if n.outputs[0].shape == (4, 3)]
    (g_concat,) = [n for n in concatenates(merged) if n.outputs[0].shape == (4, 5)]
    assert list(h_concat.inputs) == list(merged.inputs[:4])
    assert [v.producer.inputs[0] for v in g_concat.inputs] == list(merged.inputs[4:])


def test_equal_concatenates_come_out_equal_and_cse_keeps_one():
    """y_t = h_t @ wy (siblings, in forward order), dwy = sum_t h_t^T @ dy_t added backward, and
    dh_t = dy_t @ wy^T with the dy_t defined backward (siblings): the h_t and the dy_t are each
    concatenated once, in one order."""
    from kernelflow.passes.pipeline import simplify_to_fixed_point

    b = GraphBuilder()
    wy = b.add_input(TensorType(F64, (3, 4)))
    hs = [b.tanh(b.add_input(TensorType(F64, (1, 3)))) for _ in range(4)]
    ys = [b.dot_general(h, wy, **MATMUL) for h in hs]
    dys = {t: b.mul(ys[t], ys[t]) for t in reversed(range(4))}  # the backward walk: last step first
    dhs = [b.dot_general(dys[t], wy, contract=((1,), (1,)), batch=((), ())) for t in reversed(range(4))]
    dwy = sum_in_reverse(b, [b.dot_general(h, dys[t], contract=((0,), (0,)), batch=((), ()))
                             for t, h in enumerate(hs)])
    g = b.finish([dwy] + dhs)
    merged = simplify_to_fixed_point(merge_small_operations(g))
    check_same_values(g, merged)
    assert merged.op_counts()["dot_general"] == 3
    pieces = [frozenset(n.inputs) for n in concatenates(merged)]
    assert len(pieces) == len(set(pieces)) == 2


def test_a_sum_of_reductions_reads_the_concatenate_the_merged_dot_made():
    """db = sum_t reduce_sum(d_t) next to dw = sum_t h_t^T @ d_t (both added backward, as autodiff does):
    after merging, db is one reduction of the concatenate of the d_t that the merged dot reads."""
    from kernelflow.passes.pipeline import simplify_to_fixed_point

    b = GraphBuilder()
    hs = [b.add_input(TensorType(F64, (1, 3))) for _ in range(4)]
    ds = {t: b.tanh(b.add_input(TensorType(F64, (1, 5)))) for t in reversed(range(4))}
    dw = sum_in_reverse(b, [b.dot_general(h, ds[t], contract=((0,), (0,)), batch=((), ()))
                            for t, h in enumerate(hs)])
    db = sum_in_reverse(b, [b.reduce_sum(ds[t], axes=(0,)) for t in range(4)])
    g = b.finish([dw, db])
    merged = simplify_to_fixed_point(merge_small_operations(g))
    check_same_values(g, merged)
    (reduction,) = [n for n in merged.nodes if n.op == "reduce_sum"]
    concat = reduction.inputs[0].producer
    assert concat.op == "concatenate" and concat.outputs[0].shape == (4, 5)
    (dot,) = [n for n in merged.nodes if n.op == "dot_general"]
    assert concat.outputs[0] in dot.inputs
    assert merged.op_counts()["concatenate"] == 2 and "add" not in merged.op_counts()


def test_a_sum_of_reductions_without_a_concatenate_of_its_pieces_is_left_alone():
    """Making the concatenate would copy every piece to save small reductions: not done."""
    b = GraphBuilder()
    xs = [b.add_input(TensorType(F64, (3, 4))) for _ in range(3)]
    g = b.finish([sum_in_reverse(b, [b.reduce_sum(x, axes=(0,)) for x in xs])])
    kept = merge_summed_reductions(g)
    assert kept.op_counts()["reduce_sum"] == 3 and "concatenate" not in kept.op_counts()
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


@pytest.mark.parametrize("case", ["shifted", "prefix", "suffix", "equal_twice"])
def test_overlapping_concatenates_are_rows_of_one(case):
    """concat(h0..h3) and concat(h1..h4) (an RNN's states before and after each step) -> rows 0:8 and 2:10
    of concat(h0..h4); one the start or the end of the other -> rows of the longer; each concatenate
    given twice (CSE has not run yet) -> all four read the one."""
    b = GraphBuilder()
    hs = [b.tanh(b.add_input(TensorType(F64, (2, 3)))) for _ in range(5)]
    w = b.add_input(TensorType(F64, (3, 2)))
    runs = {"shifted": [hs[:4], hs[1:]], "prefix": [hs[:3], hs], "suffix": [hs, hs[2:]],
            "equal_twice": [hs[:4], hs[1:], hs[:4], hs[1:]]}[case]
    g = b.finish([b.dot_general(b.concatenate(*run, axis=0), w, **MATMUL) for run in runs])
    shared = share_overlapping_concatenates(g)
    check_same_values(g, shared)
    (whole,) = concatenates(shared)
    assert list(whole.inputs) == [n.outputs[0] for n in shared.nodes if n.op == "tanh"]  # h0..h4
    rows = sorted((n.attrs["start"][0], n.attrs["limit"][0]) for n in shared.nodes if n.op == "slice")
    want = {"shifted": [(0, 8), (2, 10)], "prefix": [(0, 6), (0, 10)], "suffix": [(0, 10), (4, 10)],
            "equal_twice": [(0, 8), (2, 10)]}[case]
    assert rows == want
    dots = [n for n in shared.nodes if n.op == "dot_general"]
    assert all(d.inputs[0].producer.op == "slice" for d in dots) and len(dots) == len(runs)


@pytest.mark.parametrize("case", ["piece_needs_one", "small_overlap", "graph_output"])
def test_overlapping_concatenates_left_apart(case):
    """piece_needs_one: concat(h0, h1, h2) is read to make h3, a piece of concat(h1, h2, h3): one
    concatenate of h0..h3 would need itself. small_overlap: concat(h0, h1, h2) and concat(h2, h3, h4)
    share one piece of three. graph_output: a slice of the shared one would be copied out."""
    b = GraphBuilder()
    hs = [b.tanh(b.add_input(TensorType(F64, (2, 3)))) for _ in range(5)]
    w = b.add_input(TensorType(F64, (3, 2)))
    first = b.concatenate(*hs[:3], axis=0)
    if case == "piece_needs_one":
        h3 = b.tanh(b.slice(first, start=(1, 0), limit=(3, 3), stride=(1, 1)))
        outs = [first, b.concatenate(hs[1], hs[2], h3, axis=0)]
    elif case == "small_overlap":
        outs = [b.dot_general(c, w, **MATMUL) for c in (first, b.concatenate(*hs[2:], axis=0))]
    else:
        outs = [first, b.dot_general(b.concatenate(*hs[1:4], axis=0), w, **MATMUL)]
    g = b.finish(outs)
    kept = share_overlapping_concatenates(g)
    check_same_values(g, kept)
    assert len(concatenates(kept)) == 2 and kept.op_counts() == g.op_counts()


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
    # each set of pieces is concatenated once: dlogits for dwy and dh, da for dwx and dwh, and h_0..h_4,
    # whose rows 0:8 (h_0..h_3) are read for dwh and rows 2:10 (h_1..h_4) for wy and dwy; the x_t in
    # order are x itself, reshaped
    big = sorted((n for n in merged.nodes if n.op == "concatenate" and n.outputs[0].shape[0] >= 8),
                 key=lambda n: n.outputs[0].shape)
    assert [n.outputs[0].shape for n in big] == [(8, 6), (8, 16), (10, 4)]
    h_rows = sorted(((n.attrs["start"][0], n.attrs["limit"][0]) for n in merged.nodes
                     if n.op == "slice" and n.inputs[0] is big[-1].outputs[0]))
    assert h_rows == [(0, 8), (2, 10)]
    x_reshaped = [n for n in merged.nodes if n.op == "reshape" and n.inputs[0] is merged.inputs[-2]]
    assert [n.outputs[0].shape for n in x_reshaped] == [(8, 5)]
    # the bias gradient is one reduction of the da concatenate (not one per step)
    assert [n.inputs[0] for n in merged.nodes if n.op == "reduce_sum" and n.outputs[0].shape == (16,)] \
        == [big[1].outputs[0]]

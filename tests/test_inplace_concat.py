"""Concatenates in the memory plan (passes/memory.py) and the numba driver (codegen/numba/module.py).

A concatenate writes into its pool slot (``np.concatenate(..., out=)``), and a piece whose producer
writes into a buffer the runtime gives it (a kernel, a BLAS call, another concatenate) lives inside that
slot: the producer writes it there and the concatenate copies only the other pieces. Every compiled
graph is compared with the reference interpreter, twice (the second call reuses the pool), and every
memory plan is checked independently: no two values that are live at the same step share a byte of
the pool, except a kernel's in-place pair and a piece inside the concatenate that holds it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kernelflow.ir import as_dtype, verify
from kernelflow.ir.interpret import interpret
from kernelflow.runtime import compile_graph

from test_fusion import build, rand

MATMUL = {"contract": ((1,), (0,)), "batch": ((), ())}


def run_and_compare(graph, args, rtol=2e-5, atol=1e-6):
    exe = compile_graph(graph)
    want = interpret(exe.graph, args)
    for _ in range(2):
        got = exe(*args)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    assert_no_live_overlap(exe)
    return exe


def assert_no_live_overlap(exe):
    """Recompute, from the schedule alone, when each pool value is live and which bytes it occupies."""
    plan, memory = exe.plan, exe.memory
    graph = plan.graph
    users, graph_outputs = graph.users(), set(graph.outputs)
    produced = {v: s for s, step in enumerate(plan.steps) for v in step.outputs(users, graph_outputs)}
    last = dict(produced)
    for s, step in enumerate(plan.steps):
        for v in step.inputs:
            last[v] = max(last.get(v, s), s)
    # a view keeps what it views alive (walk the views from the last step back)
    for s in range(len(plan.steps) - 1, -1, -1):
        step = plan.steps[s]
        if step.kind == "view":
            end = max(last.get(o, s) for o in step.outputs(users, graph_outputs))
            for u in step.inputs:
                last[u] = max(last.get(u, s), end)
    in_place = {(u, v) for _, u, v in memory.in_place}

    def inside(a, b):  # is a placed, directly or through nested concatenates, in b?
        while a in memory.placed:
            a = memory.placed[a][0]
            if a is b:
                return True
        return False

    pool = [v for v, k in memory.storage.items() if k == "slot"]
    for v in pool:
        start = memory.offset_of.get(v, 0) * v.dtype.itemsize
        assert start + v.type.nbytes <= memory.slot_bytes[memory.slot_of[v]]
    for i, a in enumerate(pool):
        for b in pool[i + 1:]:
            if memory.slot_of[a] != memory.slot_of[b]:
                continue
            a0 = memory.offset_of.get(a, 0) * a.dtype.itemsize
            b0 = memory.offset_of.get(b, 0) * b.dtype.itemsize
            if a0 + a.type.nbytes <= b0 or b0 + b.type.nbytes <= a0:
                continue  # disjoint bytes
            if last[a] < produced[b] or last[b] < produced[a]:
                continue  # never live together
            if inside(a, b) or inside(b, a) or (a, b) in in_place or (b, a) in in_place:
                continue
            names = plan.names
            raise AssertionError(f"{names[a]} and {names[b]} share bytes of slot {memory.slot_of[a]} "
                                 f"while both are live")


def placed_in(exe, concat):
    return {piece: start for piece, (c, start) in exe.memory.placed.items() if c is concat}


def concat_value(exe):
    """The (single) concatenate output of a compiled graph's schedule."""
    (c,) = [n.outputs[0] for n in exe.plan.graph.nodes if n.op == "concatenate"]
    return c


# -- pieces written in place ---------------------------------------------------------------------
def test_axis0_pieces_from_kernels_are_written_in_place():
    g = build([((4, 8), "f32"), ((4, 8), "f32"), ((3, 8), "f32")],
              lambda b, x, y, z: b.mul(b.concatenate(b.tanh(x), b.mul(x, y), b.exp(z), axis=0),
                                       b.concatenate(x, y, z, axis=0)))
    exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1), rand(3, 8, seed=2)])
    concats = [n.outputs[0] for n in exe.plan.graph.nodes if n.op == "concatenate"]
    placed = [placed_in(exe, c) for c in concats]
    # the concatenate of kernel outputs holds all three at their row offsets; the one of inputs copies
    assert sorted(sorted(p.values()) for p in placed) == [[], [0, 32, 64]]


def test_blas_outputs_are_written_in_place():
    # (different left operands: two dots sharing one are merged into one dot whose output is sliced)
    g = build([((6, 5), "f32"), ((6, 4), "f32"), ((5, 7), "f32"), ((4, 7), "f32"), ((7, 3), "f32")],
              lambda b, x1, x2, w1, w2, w3: b.dot_general(
                  b.concatenate(b.dot_general(x1, w1, **MATMUL), b.dot_general(x2, w2, **MATMUL), axis=0),
                  w3, **MATMUL))
    exe = run_and_compare(g, [rand(6, 5), rand(6, 4, seed=1), rand(5, 7, seed=2), rand(4, 7, seed=3),
                              rand(7, 3, seed=4)])
    c = concat_value(exe)
    assert sorted(placed_in(exe, c).values()) == [0, 6 * 7]
    assert all(p.producer.op == "dot_general" for p in placed_in(exe, c))


def test_a_piece_used_after_the_concatenate_keeps_its_value():
    """p is read after the concatenate by a kernel that could write in place over a dying input: the
    slot holding p and the concatenate must stay untouched while either is live."""
    def fn(b, x, y):
        p = b.exp(x)
        q = b.tanh(y)
        c = b.concatenate(p, q, axis=0)
        total = b.reduce_sum(c, axes=(0, 1))
        late = b.add(b.mul(p, b.broadcast_to(total, (4, 8))), q)  # reads p and q after the concatenate
        return [b.neg(late), b.sub(b.full_like(c, 1.0), c)]
    g = build([((4, 8), "f32"), ((4, 8), "f32")], fn)
    exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1)], rtol=1e-4)
    assert len(placed_in(exe, concat_value(exe))) == 2


def test_in_place_kernels_never_write_over_a_placed_piece_or_its_concatenate():
    """A kernel reading p (or c) for the last time could write its same-typed output over it in place;
    with p inside c, that would overwrite c (or p) while the other is still to be read."""
    def over_piece(b, x, y, w):
        p, q = b.exp(x), b.tanh(y)
        c = b.concatenate(p, q, axis=0)                                      # (8, 8)
        d = b.dot_general(c, w, **MATMUL)
        r = b.mul(p, b.slice(d, start=(0, 0), limit=(4, 8), stride=(1, 1)))  # p's last reader
        return b.dot_general(r, c, **MATMUL)                                 # c read after r is written

    def over_concatenate(b, x, y, w):
        p, q = b.exp(x), b.tanh(y)
        c = b.concatenate(p, q, axis=0)
        d = b.dot_general(c, b.slice(w, start=(0, 0), limit=(8, 1), stride=(1, 1)), **MATMUL)  # (8, 1)
        r = b.mul(c, b.broadcast_to(d, (8, 8)))                              # c's last reader
        e = b.dot_general(r, w, **MATMUL)
        return b.dot_general(b.transpose(p, perm=(1, 0)), b.slice(e, start=(0, 0), limit=(4, 8),
                                                                  stride=(1, 1)), **MATMUL)  # p read after
    for fn in (over_piece, over_concatenate):
        g = build([((4, 8), "f32"), ((4, 8), "f32"), ((8, 8), "f32")], fn)
        exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1), rand(8, 8, seed=2)], rtol=1e-4, atol=1e-5)
        assert len(placed_in(exe, concat_value(exe))) == 2
        assert not any(u in exe.memory.placed or v in exe.memory.placed for _, u, v in exe.memory.in_place)


def test_a_piece_of_two_concatenates_is_placed_in_the_first_and_copied_into_the_second():
    def fn(b, x, y, z):
        p1, p2, p3 = b.exp(x), b.tanh(y), b.neg(z)
        c1 = b.concatenate(p1, p2, axis=0)
        c2 = b.concatenate(p2, p3, axis=0)
        w = b.dot_general(b.transpose(c1, perm=(1, 0)), c2, **MATMUL)
        return [w, b.sum_to(c2, (1, 8))]
    g = build([((4, 8), "f32")] * 3, fn)
    exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1), rand(4, 8, seed=2)], rtol=1e-4, atol=1e-5)
    c1, c2 = [n.outputs[0] for n in exe.plan.graph.nodes if n.op == "concatenate"]
    p2 = c1.producer.inputs[1]
    assert exe.memory.placed[p2] == (c1, 32)
    assert sorted(placed_in(exe, c2).values()) == [32]  # only p3; p2 is copied from c1's slot


def test_inputs_outputs_constants_and_views_are_copied():
    def fn(b, x, y):
        p = b.exp(y)                     # a kernel output: placed
        out = b.tanh(y)                  # a graph output: copied
        k = b.constant(np.arange(16, dtype=np.float32).reshape(2, 8))
        view = b.transpose(b.neg(b.transpose(x, perm=(1, 0))), perm=(1, 0))  # fused away or a view
        c = b.concatenate(x, p, k, out, view, axis=0)
        return [b.mul(c, c), out]
    g = build([((4, 8), "f32"), ((3, 8), "f32")], fn)
    exe = run_and_compare(g, [rand(4, 8), rand(3, 8, seed=1)])
    c = concat_value(exe)
    kinds = {exe.memory.storage.get(x) for x in c.producer.inputs if x not in exe.memory.placed}
    assert "input" in kinds and "const" in kinds and "fresh" in kinds
    placed = placed_in(exe, c)
    assert all(exe.memory.storage[x] == "slot" for x in placed)
    assert c.producer.inputs[1] in placed and placed[c.producer.inputs[1]] == 4 * 8


def test_a_value_concatenated_with_itself_is_copied():
    g = build([((4, 8), "f32")], lambda b, x: b.neg(b.concatenate(b.exp(x), b.exp(x), b.tanh(x), axis=0)))
    exe = run_and_compare(g, [rand(4, 8)])
    c = concat_value(exe)
    pieces = c.producer.inputs
    twice = [x for x in pieces if pieces.count(x) == 2]
    assert twice, "CSE should have made exp(x) one value"
    assert all(x not in exe.memory.placed for x in twice)
    assert len(placed_in(exe, c)) == 1


@pytest.mark.parametrize("lead", [1, 2])
def test_axis1_pieces_are_placed_only_when_the_dims_before_the_axis_are_1(lead):
    g = build([((lead, 3, 8), "f32"), ((lead, 5, 8), "f32")],
              lambda b, x, y: b.neg(b.concatenate(b.exp(x), b.tanh(y), axis=1)))
    exe = run_and_compare(g, [rand(lead, 3, 8), rand(lead, 5, 8, seed=1)])
    placed = placed_in(exe, concat_value(exe))
    assert sorted(placed.values()) == ([0, 3 * 8] if lead == 1 else [])


def test_a_concatenate_inside_another_places_its_pieces_transitively():
    def fn(b, x, y, z):
        inner = b.concatenate(b.exp(x), b.tanh(y), axis=1)                 # (1, 16): contiguous pieces
        wide = b.concatenate(b.neg(z), b.abs(z), axis=1)                   # (2, 16): strided pieces
        outer = b.concatenate(inner, wide, b.sin(b.concatenate(x, y, axis=1)), axis=0)  # (4, 16)
        return b.mul(outer, outer)
    g = build([((1, 8), "f32"), ((1, 8), "f32"), ((2, 8), "f32")], fn)
    exe = run_and_compare(g, [rand(1, 8), rand(1, 8, seed=1), rand(2, 8, seed=2)])
    concats = [n.outputs[0] for n in exe.plan.graph.nodes if n.op == "concatenate"]
    (outer,) = [c for c in concats if c.shape == (4, 16)]
    (wide,) = [c for c in concats if c.shape == (2, 16)]
    (inner,) = [c for c in concats if c.shape == (1, 16) and c.producer.inputs[0].producer is not None]
    m = exe.memory
    assert m.placed[inner] == (outer, 0) and m.placed[wide] == (outer, 16)
    assert [m.offset_of[p] for p in inner.producer.inputs] == [0, 8]
    assert all(m.root_of[p] is outer for p in inner.producer.inputs)
    assert not any(p in m.placed for p in wide.producer.inputs)   # axis-1 pieces of a (2, 16): copied
    assert "written in place" in exe.ir("plan")


def test_the_plan_text_shows_where_each_piece_lives():
    g = build([((4, 8), "f32"), ((4, 8), "f32")],
              lambda b, x, y: b.neg(b.concatenate(b.exp(x), b.tanh(y), x, axis=0)))
    exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1)])
    c = concat_value(exe)
    names = exe.plan.names
    text = exe.ir("plan")
    p, q, _ = c.producer.inputs
    slot = exe.memory.slot_of[c]
    assert f"concatenate {names[c]} in slot {slot}: 2 of 3 pieces written in place" in text
    assert f"{names[p]} @0, {names[q]} @32" in text
    assert f"{names[q]} {q.type} @32" in text.splitlines()[1 + slot]
    assert "np.concatenate" not in exe.source.split(f"{names[c]} concatenate", 1)[1].split("# step", 1)[0]


def test_the_graph_verifies_after_planning():
    g = build([((4, 8), "f32"), ((4, 8), "f32")],
              lambda b, x, y: b.neg(b.concatenate(b.exp(x), b.tanh(y), axis=0)))
    exe = run_and_compare(g, [rand(4, 8), rand(4, 8, seed=1)])
    assert exe.memory.placed
    verify(exe.plan.graph)
    verify(exe.optimized)


# -- the concatenate's own buffer ------------------------------------------------------------------
def test_a_concatenate_that_is_a_graph_output_gets_a_new_array_per_call():
    g = build([((4, 8), "f32"), ((4, 8), "f32")],
              lambda b, x, y: b.concatenate(b.exp(x), b.tanh(y), axis=0))
    exe = compile_graph(g)
    x, y = rand(4, 8), rand(4, 8, seed=1)
    (first,) = exe(x, y)
    kept = first.copy()
    (second,) = exe(y, x)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_allclose(second, interpret(exe.graph, [y, x])[0], rtol=2e-5, atol=1e-6)
    assert not np.shares_memory(first, second)
    assert not exe.memory.placed  # a piece lives in a pool slot, never in the caller's array


@pytest.mark.parametrize("dtype", ["f16", "bf16", "i32", "f64"])
def test_concatenates_of_other_dtypes_write_into_their_slot(dtype):
    if dtype == "bf16":
        pytest.importorskip("ml_dtypes")
    g = build([((4, 8), dtype), ((2, 8), dtype)],
              lambda b, x, y: b.add(b.concatenate(x, b.add(y, y), axis=0),
                                    b.concatenate(b.add(y, y), x, axis=0)))
    rng = np.random.default_rng(0)
    args = [rng.integers(-50, 50, s).astype(as_dtype(dtype).np_dtype) for s in ((4, 8), (2, 8))]
    exe = run_and_compare(g, args)
    assert all(exe.memory.storage[n.outputs[0]] == "slot" for n in exe.plan.graph.nodes if n.op == "concatenate")


# -- W7's training step at its quick sizes (merged GEMMs over concatenated per-step pieces) ------------
def test_lstm_training_step_places_its_sequence_pieces_and_keeps_its_values():
    import kernelflow as kf
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench
    from bench.workloads import lstm

    data = lstm.make_data(True)
    params, (xs, ys), lr = data["params"], data["args"], data["lr"]

    def step(params, xs, ys):
        loss, grads = kf.value_and_grad(lstm.loss_numpy_style)(params, xs, ys)
        return loss, {name: params[name] - lr * grads[name] for name in params}

    exe = kf.jit(step).lower(params, xs, ys).compile()
    flat = kf.tree_flatten((params, xs, ys))[0]
    want = interpret(exe.graph, flat)
    for _ in range(2):
        for got, w in zip(exe(*flat), want):
            np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)
    assert_no_live_overlap(exe)
    concats = {c for c, _ in exe.memory.placed.values()}
    steps = xs.shape[0]
    assert any(len(placed_in(exe, c)) == steps for c in concats)  # a whole sequence written in place
    verify(exe.plan.graph)

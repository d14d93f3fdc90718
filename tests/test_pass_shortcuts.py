"""Compile-time shortcuts of the passes and the tracer, each checked against the plain algorithm it replaces
(written out here, independently): the same answers, the same graphs.

* the fixed point of simplify+CSE+DCE is detected by checking the graph (``would_simplify``, ``has_twins``)
  instead of rebuilding it once more;
* fusion's cycle check searches from both groups at once;
* merge.py's level counts walk int lists;
* value_and_grad differentiates its one-use traced graph and moves the gradient graph into the trace
  instead of copying them.
"""
import random

import numpy as np
from hypothesis import HealthCheck, given, settings

import kernelflow as kf
from kernelflow.ir import GraphBuilder, TensorType, print_graph
from kernelflow.ir import types as T
from kernelflow.passes import fusion, merge
from kernelflow.passes.cse import eliminate_common_subexpressions, has_twins
from kernelflow.passes.dce import eliminate_dead_code
from kernelflow.passes.pipeline import MAX_ROUNDS, simplify_to_fixed_point
from kernelflow.passes.simplify import simplify, would_simplify
from test_ir_text import graphs

F32 = T.float32


def fixed_point_by_rebuilding(graph):
    """The loop before the shortcut: rounds until one rewrites nothing and drops no node."""
    for _ in range(MAX_ROUNDS):
        changes = {"rewrites": 0}
        before = len(graph.nodes)
        graph = eliminate_dead_code(eliminate_common_subexpressions(simplify(graph, changes), changes))
        if changes["rewrites"] == 0 and len(graph.nodes) == before:
            break
    return graph


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_the_checks_agree_with_the_rewriting_passes(g):
    changes = {"rewrites": 0}
    simplify(g, changes)
    assert would_simplify(g) == (changes["rewrites"] > 0)
    changes = {"rewrites": 0}
    eliminate_common_subexpressions(g, changes)
    assert has_twins(g) == (changes["rewrites"] > 0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_fixed_point_is_the_one_rebuilding_finds(g):
    assert print_graph(simplify_to_fixed_point(g)) == print_graph(fixed_point_by_rebuilding(g))


def test_fixed_point_with_rewrites_that_enable_others():
    """neg(neg(x)) folds, which makes two adds twins, which makes a select of them trivial: three rounds."""
    b = GraphBuilder()
    x, y = b.add_input(TensorType(F32, (3,))), b.add_input(TensorType(F32, (3,)))
    p = b.add_input(TensorType(T.bool_, (3,)))
    a1 = b.add(b.neg(b.neg(x)), y)
    a2 = b.add(x, y)
    g = b.finish([b.select(p, a1, a2), b.mul(b.neg(b.neg(y)), b.full_like(y, 1.0))])
    got = simplify_to_fixed_point(g)
    assert print_graph(got) == print_graph(fixed_point_by_rebuilding(g))
    assert not would_simplify(got) and not has_twins(got)
    assert [n.op for n in got.nodes] == ["add"]


# -- fusion's cycle check --------------------------------------------------------------------------
def reaches_through_others(groups, a, b) -> bool:
    """Is there a path a -> c -> ... -> b (or b -> ... -> a) through at least one other group?"""
    def path(src, dst):
        seen, stack = set(), [s for s in groups.succ[src] if s != dst]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            if dst in groups.succ[g]:
                return True
            stack.extend(groups.succ[g])
        return False
    return path(a, b) or path(b, a)


def random_dag(seed, n=40):
    rng = random.Random(seed)
    b = GraphBuilder()
    values = [b.add_input(TensorType(F32, (4,))) for _ in range(3)]
    for _ in range(n):
        x, y = rng.choice(values[-8:]), rng.choice(values)
        values.append(b.add(x, y) if rng.random() < 0.7 else b.neg(x))
    return b.finish(values[-3:])


def test_cycle_check_agrees_with_a_plain_path_search_as_groups_merge():
    for seed in range(12):
        g = random_dag(seed)
        groups = fusion._Groups(g, g.users())
        rng = random.Random(seed)
        for _ in range(60):
            live = list(groups.members)
            if len(live) < 2:
                break
            a, b = rng.sample(live, 2)
            expected = reaches_through_others(groups, a, b)
            assert groups.creates_cycle(a, b) == expected
            if not expected:  # merge only where it keeps the step graph acyclic, as fuse does
                groups.merge(a, b)


# -- merge.py's level counts ------------------------------------------------------------------------
def levels_by_values(graph, candidates):
    """The dict-of-values walk the level counter replaced."""
    level, out = {}, {}
    for n in graph.nodes:
        lv = max((level.get(v, 0) for v in n.inputs), default=0)
        if n in candidates:
            out[n] = lv
            lv += 1
        for v in n.outputs:
            level[v] = lv
    return out


def test_level_counts_agree_with_the_walk_over_values():
    for seed in range(10):
        g = random_dag(seed, n=60)
        rng = random.Random(seed)
        counter = merge._LevelCounter(g)
        for k in range(6):
            candidates = set(rng.sample(g.nodes, k * 5))
            assert counter(candidates) == levels_by_values(g, candidates)


# -- value_and_grad's graphs, used up instead of copied ----------------------------------------------
def test_moved_gradient_graph_is_the_copied_one(monkeypatch):
    from kernelflow.frontend import transforms

    def loss(w, x):
        h = np.tanh(x @ w["a"]) * w["b"]
        return (h * h).sum() + kf.sigmoid(h).mean()

    def step(w, x):
        value, grads = kf.value_and_grad(loss)(w, x)
        return value, {k: w[k] - 0.1 * grads[k] for k in w}

    rng = np.random.default_rng(0)
    w = {"a": rng.standard_normal((5, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    x = rng.standard_normal((4, 5)).astype(np.float32)
    moved = kf.jit(step).lower(w, x).ir()
    plain_run, plain_vjp = transforms._run, transforms._vjp_graph
    monkeypatch.setattr(transforms, "_run", lambda graph, inputs, consume=False: plain_run(graph, inputs))
    monkeypatch.setattr(transforms, "_vjp_graph",
                        lambda graph, wrt, seeds=None, consume=False: plain_vjp(graph, wrt, seeds))
    copied = kf.jit(step).lower(w, x).ir()
    assert moved == copied
    got = kf.jit(step)(w, x)
    want_value, want_grads = kf.value_and_grad(loss)(w, x)  # eager: the interpreter on numpy arrays
    np.testing.assert_allclose(got[0], want_value, rtol=1e-5)
    for k in w:
        np.testing.assert_allclose(got[1][k], w[k] - 0.1 * want_grads[k], rtol=1e-5, atol=1e-6)

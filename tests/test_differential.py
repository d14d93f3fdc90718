"""Random graphs (hypothesis): compiled with numba vs the reference interpreter, float32 and float64.

The strategy grows a graph op by op from a few inputs: well-conditioned unary math, binary ops with
numpy-style broadcasting (the builder's broadcast_to), reductions over random axes (sum and max),
transposes, reshapes, new broadcast dims and matmuls against fresh weight inputs; the last value
and a random earlier one are the outputs, so fusion sees multi-output groups, row reductions,
library calls and movement folded into index maps.

Tolerances: float32 rtol 1e-4 / atol 1e-4 (sums of up to ~200 terms accumulated in another order),
float64 rtol 1e-10 / atol 1e-12.
"""
from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from kernelflow.ir import GraphBuilder, TensorType, as_dtype  # noqa: E402
from kernelflow.ir.interpret import interpret  # noqa: E402
from kernelflow.runtime import compile_graph  # noqa: E402

TOL = {"f32": dict(rtol=1e-4, atol=1e-4), "f64": dict(rtol=1e-10, atol=1e-12)}
UNARY = ["neg", "tanh", "logistic", "sin", "abs", "exp_tanh", "sqrt_abs", "log1p_abs"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


def _unary(b, op, x):
    if op == "exp_tanh":
        return b.exp(b.tanh(x))
    if op == "sqrt_abs":
        return b.sqrt(b.abs(x))
    if op == "log1p_abs":
        return b.log1p(b.abs(x))
    return b.emit(op, x)


@st.composite
def random_graph(draw, dtype):
    b = GraphBuilder("random")
    rank = draw(st.integers(1, 3))
    base = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    t = as_dtype(dtype)
    values = [b.add_input(TensorType(t, base))]
    if draw(st.booleans()):  # a second input broadcast against the first (a trailing suffix of dims)
        values.append(b.add_input(TensorType(t, base[draw(st.integers(0, rank - 1)):])))
    for _ in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "transpose", "reshape",
                                     "broadcast", "matmul"]))
        x = draw(st.sampled_from(values))
        if kind == "unary":
            values.append(_unary(b, draw(st.sampled_from(UNARY)), x))
        elif kind == "binary":
            y = draw(st.sampled_from(values))
            if x.ndim < y.ndim:
                x, y = y, x
            if y.shape == x.shape[x.ndim - y.ndim:] or all(
                    d in (1, e) for d, e in zip(y.shape, x.shape[x.ndim - y.ndim:])):
                values.append(b.emit(draw(st.sampled_from(BINARY)), x, b.broadcast_to(y, x.shape)))
        elif kind == "reduce" and x.ndim > 0:
            axes = tuple(sorted(draw(st.sets(st.integers(0, x.ndim - 1), min_size=1))))
            op = draw(st.sampled_from(["reduce_sum", "reduce_max"]))
            r = b.emit(op, x, axes=axes)
            if draw(st.booleans()):  # use it against its operand (softmax-like rows)
                kept = tuple(i for i in range(x.ndim) if i not in axes)
                r = b.sub(x, b.broadcast_in_dim(r, shape=x.shape, dims=kept))
            values.append(r)
        elif kind == "transpose" and x.ndim > 1:
            values.append(b.transpose(x, perm=tuple(draw(st.permutations(range(x.ndim))))))
        elif kind == "reshape" and x.ndim > 0:
            size = x.type.size
            shape = (size,) if x.ndim > 1 or size % 2 else (2, size // 2)
            values.append(b.reshape(x, shape=shape))
        elif kind == "broadcast" and x.ndim < 4:
            n = draw(st.integers(1, 3))
            values.append(b.broadcast_in_dim(x, shape=(n,) + x.shape, dims=tuple(range(1, x.ndim + 1))))
        elif kind == "matmul" and x.ndim >= 1:
            k = draw(st.integers(1, 4))
            w = b.add_input(TensorType(t, (x.shape[-1], k)))
            values.append(b.dot_general(x, w, contract=((x.ndim - 1,), (0,)), batch=((), ())))
    outs = [values[-1]]
    extra = draw(st.sampled_from(values))
    if extra is not values[-1]:
        outs.append(extra)
    g = b.finish(outs)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, v.shape).astype(t.np_dtype) for v in g.inputs]
    return g, args


def _check(graph, args, dtype):
    exe = compile_graph(graph)
    got = exe(*args)
    want = interpret(graph, args)
    for g_, w in zip(got, want):
        assert g_.shape == w.shape and g_.dtype == w.dtype
        np.testing.assert_allclose(g_, w, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_random_graphs_match_the_interpreter(dtype):
    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(random_graph(dtype))
    def prop(case):
        graph, args = case
        _check(graph, args, dtype)
    prop()

"""gather and scatter_add on the CPU backend: loop kernels (kernelflow/codegen/numba/indexing.py) that
write into the buffer the memory plan gives them (a pool slot, or the caller's fresh array).

Every compiled graph is compared with the reference interpreter and with numpy written independently
(``np.take`` and ``np.add.at`` on indices wrapped by hand), twice (the second call reuses the pool).
"""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import kernelflow as kf
from kernelflow.ir import GraphBuilder, TensorType, as_dtype, verify
from kernelflow.ir.interpret import interpret
from kernelflow.runtime import compile_graph

DTYPES = [np.float32, np.float64, np.int32]
INDEX_DTYPES = [np.int32, np.int64]

# (data shape, axis, indices): negative indices wrap once; duplicates accumulate in scatter_add
CASES = [
    ((7,), 0, [0, 6, -1, 2, 2]),
    ((3, 4), 0, [[2, 0], [1, -3]]),           # 2-D indices
    ((3, 4), 1, [3, 3, 0, 3]),                # duplicates
    ((2, 3, 5), 1, [[1], [-1], [0]]),         # middle axis, 2-D indices
    ((2, 3, 5), 2, [4, 0]),                   # last axis
    ((4, 6), 1, 2),                           # a scalar index removes the axis
    ((3, 4), 1, []),                          # no indices
    ((0, 4), 1, [1, 2]),                      # empty operand rows
]
IDS = ["1d", "axis0_2d_idx", "dups", "middle", "last", "scalar", "empty_idx", "empty_rows"]


def sample(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)


def graph_of(inputs, fn):
    b = GraphBuilder("indexing")
    vals = [b.add_input(TensorType(as_dtype(a.dtype.name), a.shape)) for a in inputs]
    outs = fn(b, *vals)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def wrapped(idx, size):
    return np.where(idx < 0, idx + size, idx)


def numpy_gather(x, idx, axis):
    return np.take(x, wrapped(idx, x.shape[axis]), axis=axis)


def numpy_scatter_add(operand, idx, updates, axis):
    out = operand.copy()
    np.add.at(out, (slice(None),) * axis + (wrapped(idx, operand.shape[axis]),), updates)
    return out


def run_checked(graph, args, oracle, rtol=0.0):
    """Compile, check the graph after planning, and compare two calls with the interpreter and the
    numpy oracle."""
    exe = compile_graph(graph)
    verify(exe.plan.graph)
    want = interpret(exe.graph, args)
    for _ in range(2):
        got = exe(*args)
        for g, w, o in zip(got, want, oracle):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=rtol)
            np.testing.assert_allclose(g, o, rtol=rtol)
    return exe


def storage_of(exe, op):
    return [exe.memory.storage[n.outputs[0]] for n in exe.plan.graph.nodes if n.op == op]


# -- gather ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis,indices", CASES, ids=IDS)
def test_gather(shape, axis, indices, dtype, index_dtype):
    x, idx = sample(shape, dtype), np.array(indices, index_dtype)
    expected = numpy_gather(x, idx, axis)
    # the gather alone (a graph output: the caller's array) and read by a kernel (a pool slot)
    exe = run_checked(graph_of([x, idx], lambda b, x, i: b.gather(x, i, axis=axis)), [x, idx], [expected])
    assert storage_of(exe, "gather") == ["fresh"] and "_ix_gather(" in exe.source
    exe = run_checked(graph_of([x, idx], lambda b, x, i: b.neg(b.gather(x, i, axis=axis))), [x, idx],
                      [-expected])
    assert storage_of(exe, "gather") == ["slot"] and "_ix_gather(" in exe.source


def test_gather_u8():
    x, idx = (np.arange(40) * 7 % 256).astype(np.uint8).reshape(5, 8), np.array([4, 0, 4, -2], np.int64)
    exe = run_checked(graph_of([x, idx], lambda b, x, i: b.gather(x, i, axis=0)), [x, idx],
                      [numpy_gather(x, idx, 0)])
    assert "_ix_gather(" in exe.source


# -- scatter_add -----------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis,indices", CASES, ids=IDS)
def test_scatter_add(shape, axis, indices, dtype, index_dtype):
    operand, idx = sample(shape, dtype), np.array(indices, index_dtype)
    updates = sample(shape[:axis] + idx.shape + shape[axis + 1:], dtype, seed=1)
    expected = numpy_scatter_add(operand, idx, updates, axis)
    rtol = 1e-6 if dtype == np.float32 else 0.0   # duplicates: np.add.at may add in another order
    graph = graph_of([operand, idx, updates], lambda b, o, i, u: b.neg(b.scatter_add(o, i, u, axis=axis)))
    exe = run_checked(graph, [operand, idx, updates], [-expected], rtol=rtol)
    assert storage_of(exe, "scatter_add") == ["slot"] and "_ix_scatter_add(" in exe.source
    graph = graph_of([operand, idx, updates], lambda b, o, i, u: b.scatter_add(o, i, u, axis=axis))
    exe = run_checked(graph, [operand, idx, updates], [expected], rtol=rtol)
    assert storage_of(exe, "scatter_add") == ["fresh"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_add_of_broadcast_values_reads_the_one_value(dtype):
    """The gradient of a label pick: zeros plus one value at each label. Neither broadcast is made;
    the kernel reads the one-element arrays with step 0."""
    idx, scale = np.array([[1, 4, 4], [0, -1, 2]], np.int64), np.array(3, dtype)

    def fn(b, i, s):
        target = TensorType(as_dtype(np.dtype(dtype).name), (2, 5, 3))
        zeros = b.full(target.shape, 0, target.dtype)
        updates = b.broadcast_to(s, (2, 2, 3, 3))
        return b.neg(b.scatter_add(zeros, i, updates, axis=1))

    expected = -numpy_scatter_add(np.zeros((2, 5, 3), dtype), idx, np.broadcast_to(scale, (2, 2, 3, 3)), 1)
    exe = run_checked(graph_of([idx, scale], fn), [idx, scale], [expected])
    call = re.search(r"_ix_scatter_add\((\w+), (\d), (\w+), (\w+), (\d),", exe.source)
    assert call and call.group(2) == "0" and call.group(5) == "0", exe.source
    assert "np.broadcast_to" not in exe.source
    assert storage_of(exe, "scatter_add") == ["slot"]


def test_views_that_are_not_one_value_are_read_as_copies():
    """A transposed operand and updates broadcast from a row: numpy views the kernels read flattened."""
    x, idx, row = sample((4, 6), np.float64), np.array([5, 0, 5, -1], np.int64), sample((4,), np.float64, 2)

    def fn(b, x, i, r):
        xt = b.transpose(x, perm=(1, 0))                                        # (6, 4)
        updates = b.broadcast_in_dim(r, shape=(4, 4), dims=(1,))                 # rows of r
        return b.neg(b.scatter_add(xt, i, updates, axis=0)), b.neg(b.gather(xt, i, axis=0))

    expected = numpy_scatter_add(x.T, idx, np.broadcast_to(row, (4, 4)), 0)
    exe = run_checked(graph_of([x, idx, row], fn), [x, idx, row], [-expected, -numpy_gather(x.T, idx, 0)])
    assert storage_of(exe, "scatter_add") == ["slot"] and storage_of(exe, "gather") == ["slot"]


def test_an_indexing_result_can_live_inside_a_concatenate():
    x, idx = sample((6, 4), np.float32), np.array([5, 0, 5], np.int32)
    graph = graph_of([x, idx], lambda b, x, i: b.neg(b.concatenate(b.gather(x, i, axis=0), b.exp(x), axis=0)))
    expected = -np.concatenate([numpy_gather(x, idx, 0), np.exp(x)])
    exe = run_checked(graph, [x, idx], [expected], rtol=1e-6)
    assert storage_of(exe, "gather") == ["slot"]


# -- bad indices -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [5, -6, 1 << 40])
@pytest.mark.parametrize("op", ["gather", "scatter_add"])
def test_an_index_out_of_range_is_an_error_naming_op_index_and_size(op, bad):
    x, idx = sample((2, 5), np.float64), np.array([0, bad, 1], np.int64)
    if op == "gather":
        graph = graph_of([x, idx], lambda b, x, i: b.neg(b.gather(x, i, axis=1)))
        args = [x, idx]
    else:
        u = sample((2, 3), np.float64, seed=1)
        graph = graph_of([x, idx, u], lambda b, x, i, u: b.neg(b.scatter_add(x, i, u, axis=1)))
        args = [x, idx, u]
    exe = compile_graph(graph)
    with pytest.raises(IndexError, match="index .* out of range"):
        interpret(graph, args)  # the reference rejects it too
    with pytest.raises(IndexError, match=rf"^{op}: index {bad} is out of range for axis 1 of size 5$"):
        exe(*args)
    args[1] = np.array([0, 4, -5], np.int64)  # the executable still works with good indices
    np.testing.assert_allclose(exe(*args)[0], interpret(graph, args)[0])


def test_a_bad_label_names_the_users_line():
    def pick(x, i):
        return np.take(x, i, axis=1) * 2.0
    line = inspect.getsourcelines(pick)[1] + 1
    where = rf"\(at .*test_numba_indexing.py:{line}\)"
    f = kf.jit(pick)
    x = sample((3, 5), np.float32)
    np.testing.assert_allclose(f(x, np.array([4, 0, 1]))[:, 0], x[:, 4] * 2)
    with pytest.raises(IndexError, match=rf"^gather: index 7 is out of range for axis 1 of size 5 {where}$"):
        f(x, np.array([0, 7, 1]))
    grad = kf.jit(lambda x, i: kf.grad(lambda x: pick(x, i).sum())(x))
    with pytest.raises(IndexError, match=rf"^scatter_add: index 9 is out of range for axis 1 of size 5 {where}$"):
        grad(x, np.array([0, 9, 1]))


# -- a training step ---------------------------------------------------------------------------------
def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss(params, x, labels):
    h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    logp = log_softmax(h @ params["w2"])
    return -logp[np.arange(x.shape[0]), labels].mean()


def test_cross_entropy_training_step_matches_the_interpreter():
    rng = np.random.default_rng(3)
    params = {"w1": rng.standard_normal((12, 16)).astype(np.float32) * 0.3,
              "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
              "w2": rng.standard_normal((16, 10)).astype(np.float32) * 0.3}
    x = rng.standard_normal((32, 12)).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    labels[:4] = 3  # repeated labels

    def step(params, x, labels):
        value, grads = kf.value_and_grad(loss)(params, x, labels)
        return value, {k: params[k] - 0.1 * grads[k] for k in params}

    jitted = kf.jit(step)
    exe = jitted.lower(params, x, labels).compile()
    verify(exe.plan.graph)
    verify(exe.optimized)
    assert storage_of(exe, "gather") == ["slot"] and storage_of(exe, "scatter_add") == ["slot"]
    args = kf.tree_flatten((params, x, labels))[0]
    want = interpret(exe.graph, args)
    for _ in range(2):
        for g, w in zip(exe(*args), want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    # and against torch's cross-entropy and autograd
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = torch.relu(torch.tensor(x) @ t["w1"] + t["b1"])
    expected = torch.nn.functional.cross_entropy(h @ t["w2"], torch.tensor(labels))
    expected.backward()
    value, new = jitted(params, x, labels)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - 0.1 * t[k].grad.numpy(), rtol=1e-4, atol=1e-6)

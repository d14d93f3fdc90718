"""gather and scatter_add: shape rules through GraphBuilder, references against Python loops (numpy's
index-wrapping rule written out), and gradient rules through the autodiff pass."""
import numpy as np
import pytest

from kernelflow.ir import (DTypeError, GraphBuilder, ShapeError, TensorType, float32, float64, int32,
                           int64, primitive, uint32, bool_)
from kernelflow.ir.types import type_of_array

from gradcheck import check_primitive_grad, out_type, ref

DTYPES = [np.float32, np.float64, np.int32]
INDEX_DTYPES = [np.int32, np.int64]

# (x shape, axis, indices): negative indices wrap once; duplicates allowed
CASES = [
    ((5,), 0, [0, 4, -1, 2, 2]),
    ((3, 4), 0, [[2, 0], [1, -3]]),
    ((3, 4), 1, [3, 3, 0]),
    ((2, 3, 4), 1, [[1], [-1], [0]]),
    ((2, 1), 1, [0, 0, -1]),
    ((3, 4), 1, []),          # no indices: an empty result
    ((0, 4), 1, [1, 2]),       # empty operand rows
    ((0,), 0, []),            # gathering nothing from nothing
    ((4,), 0, 2),             # a scalar index removes the axis
]


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 10).astype(dtype)


def wrap(i, size):
    """numpy's rule, written out: a negative index i (>= -size) means size + i."""
    return i + size if i < 0 else i


def gather_loop(x, idx, axis):
    out_shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    out = np.empty(out_shape, x.dtype)
    for o in np.ndindex(*out_shape):
        before, at, after = o[:axis], o[axis:axis + idx.ndim], o[axis + idx.ndim:]
        out[o] = x[before + (wrap(int(idx[at]), x.shape[axis]),) + after]
    return out


# -- gather ------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis,indices", CASES)
def test_gather_reference(shape, axis, indices, dtype, index_dtype):
    x = sample(shape, dtype)
    idx = np.array(indices, dtype=index_dtype)
    out = ref("gather")(x, idx, axis=axis)
    assert type_of_array(out) == out_type("gather", type_of_array(x), type_of_array(idx), axis=axis)
    np.testing.assert_array_equal(out, gather_loop(x, idx, axis))


@pytest.mark.parametrize("bad", [5, -6, 100])
def test_gather_out_of_range_names_the_index_and_the_size(bad):
    x = sample((2, 5), np.float32)
    with pytest.raises(IndexError, match=rf"index {bad} is out of range for an axis of size 5"):
        ref("gather")(x, np.array([0, bad, 1], np.int32), axis=1)


def test_gather_errors():
    x = TensorType(float32, (3, 4))
    with pytest.raises(DTypeError, match=r"gather\(f32\[3,4\], u32\[2\]\): indices must be i32 or i64, got u32"):
        out_type("gather", x, TensorType(uint32, (2,)), axis=0)
    with pytest.raises(DTypeError, match="got f32"):
        out_type("gather", x, TensorType(float32, (2,)), axis=0)
    with pytest.raises(ShapeError, match=r"axis 2 is not an axis of shape \[3, 4\]"):
        out_type("gather", x, TensorType(int32, (2,)), axis=2)


@pytest.mark.parametrize("shape,axis,indices", [c for c in CASES if 0 not in c[0]])
def test_gather_grad(shape, axis, indices):
    x = sample(shape, np.float64)
    check_primitive_grad("gather", [x, np.array(indices, np.int64)], order=2, axis=axis)


def test_gather_grad_matches_torch_index_select():
    torch = pytest.importorskip("torch")
    from kernelflow.ir import interpret, verify
    from kernelflow.passes.autodiff import vjp_graph
    x = sample((3, 4), np.float64)
    idx = np.array([3, 0, 3, 3, 1], np.int64)  # torch.index_select takes no negative indices
    g = sample((3, 5), np.float64, seed=2)
    b = GraphBuilder()
    graph = b.finish([b.gather(b.add_input(type_of_array(x)), b.add_input(type_of_array(idx)), axis=1)])
    _, grad = interpret(verify(vjp_graph(graph, [0])), [x, idx, g])
    t = torch.tensor(x, requires_grad=True)
    torch.index_select(t, 1, torch.tensor(idx)).backward(torch.tensor(g))
    np.testing.assert_allclose(grad, t.grad.numpy())


# -- scatter_add -------------------------------------------------------------------------------
def scatter_add_loop(operand, idx, updates, axis):
    out = operand.copy()
    for u in np.ndindex(*updates.shape):
        before, at, after = u[:axis], u[axis:axis + idx.ndim], u[axis + idx.ndim:]
        target = before + (wrap(int(idx[at]), operand.shape[axis]),) + after
        out[target] = out[target] + updates[u]
    return out


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis,indices", CASES)
def test_scatter_add_reference(shape, axis, indices, dtype, index_dtype):
    operand = sample(shape, dtype)
    idx = np.array(indices, dtype=index_dtype)
    updates = sample(shape[:axis] + idx.shape + shape[axis + 1:], dtype, seed=1)
    out = ref("scatter_add")(operand, idx, updates, axis=axis)
    assert type_of_array(out) == out_type("scatter_add", *map(type_of_array, (operand, idx, updates)), axis=axis)
    expected = scatter_add_loop(operand, idx, updates, axis)
    if dtype == np.float32:  # accumulation order may differ from the loop's
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)
    else:
        np.testing.assert_array_equal(out, expected)
    assert not np.shares_memory(out, operand)


def test_scatter_add_accumulates_duplicates():
    out = ref("scatter_add")(np.zeros(3), np.array([1, 1, -2, 2], np.int32), np.array([1.0, 2.0, 4.0, 8.0]), axis=0)
    np.testing.assert_array_equal(out, [0.0, 1.0 + 2.0 + 4.0, 8.0])


def test_scatter_add_out_of_range():
    with pytest.raises(IndexError, match="index -4 is out of range for an axis of size 3"):
        ref("scatter_add")(np.zeros(3), np.array([0, -4], np.int64), np.ones(2), axis=0)


def test_scatter_add_errors():
    operand, idx = TensorType(float32, (3, 4)), TensorType(int32, (2,))
    with pytest.raises(ShapeError, match=r"updates shape \[3, 3\] must be \[3, 2\] for operand shape \[3, 4\], "
                                         r"indices shape \[2\] and axis 1"):
        out_type("scatter_add", operand, idx, TensorType(float32, (3, 3)), axis=1)
    with pytest.raises(DTypeError, match="operand dtype f32 differs from updates dtype f64"):
        out_type("scatter_add", operand, idx, TensorType(float64, (2, 4)), axis=0)
    with pytest.raises(DTypeError, match="indices must be i32 or i64, got f32"):
        out_type("scatter_add", operand, TensorType(float32, (2,)), TensorType(float32, (2, 4)), axis=0)
    with pytest.raises(DTypeError, match="numeric operand, got bool"):
        out_type("scatter_add", TensorType(bool_, (3,)), idx, TensorType(bool_, (2,)), axis=0)
    with pytest.raises(ShapeError, match=r"axis 2 is not an axis of shape \[3, 4\]"):
        out_type("scatter_add", operand, idx, TensorType(float32, (2, 4)), axis=2)
    assert out_type("scatter_add", operand, TensorType(int64, (2, 5)), TensorType(float32, (3, 2, 5)),
                    axis=1) == operand


@pytest.mark.parametrize("shape,axis,indices", [c for c in CASES if 0 not in c[0]])
def test_scatter_add_grad(shape, axis, indices):
    idx = np.array(indices, np.int64)
    operand = sample(shape, np.float64)
    updates = sample(shape[:axis] + idx.shape + shape[axis + 1:], np.float64, seed=1)
    check_primitive_grad("scatter_add", [operand, idx, updates], order=2, axis=axis)


def test_codegen_and_family():
    assert primitive.get("gather").codegen == {"numba": "@gather", "triton": "@gather"}
    assert primitive.get("scatter_add").codegen == {"numba": "@scatter_add", "triton": "@scatter_add"}
    assert {primitive.get(op).family for op in ["gather", "scatter_add"]} == {"index"}

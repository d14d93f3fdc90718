"""The reduction primitives: shape rules through GraphBuilder, references against Python loops over
the reduced elements, and gradient rules (through the autodiff pass) against finite differences."""
import math

import numpy as np
import pytest

from kernelflow.ir import (DTypeError, GraphBuilder, ShapeError, TensorType, bool_, float32,
                           int32, int64, primitive)
from kernelflow.ir import interpret, verify
from kernelflow.ir.types import type_of_array
from kernelflow.passes.autodiff import vjp_graph

from gradcheck import check_primitive_grad, out_type, ref

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8]

SHAPES_AND_AXES = [
    ((5,), (0,)),
    ((2, 3), (0,)),
    ((2, 3), (1,)),
    ((2, 3), (0, 1)),
    ((2, 3, 4), (0, 2)),
    ((1, 4, 1), (0, 2)),
    ((3, 1), (1,)),
    ((0, 3), (1,)),       # empty output, non-empty reduced axis
    ((2, 3), ()),         # reducing nothing is the identity
    ((), ()),
]


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, size=shape).astype(dtype) if np.dtype(dtype).kind in "iu" \
        else rng.standard_normal(shape).astype(dtype)


def groups(x, axes):
    """For each output index (the kept axes, in order), the list of reduced elements (Python scalars)."""
    kept = [d for d in range(x.ndim) if d not in axes]
    out = {}
    for idx in np.ndindex(*x.shape):
        out.setdefault(tuple(idx[d] for d in kept), []).append(x[idx].item())
    out_shape = tuple(x.shape[d] for d in kept)
    return out_shape, out


def check_declared(op, x, out, **attrs):
    assert type_of_array(out) == out_type(op, type_of_array(x), **attrs)


# -- reduce_sum --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axes", SHAPES_AND_AXES + [((2, 0, 3), (1,))])
def test_reduce_sum_reference(shape, axes, dtype):
    x = sample(shape, dtype)
    out = ref("reduce_sum")(x, axes=axes)
    check_declared("reduce_sum", x, out, axes=axes)
    out_shape, elements = groups(x, axes)
    assert out.shape == out_shape
    for idx in np.ndindex(*out_shape):
        values = elements.get(idx, [])  # an empty reduced axis has no elements: the sum is 0
        if np.dtype(dtype).kind == "f":
            assert out[idx] == pytest.approx(math.fsum(values), rel=1e-5, abs=1e-5)
        else:  # exact, wrapping modulo 2**bits like the integer dtype does
            assert out[idx] == np.array(sum(values)).astype(dtype)


def test_reduce_sum_keeps_the_integer_dtype_and_wraps():
    x = np.full((4,), 2 ** 30, np.int32)
    out = ref("reduce_sum")(x, axes=(0,))
    assert out.dtype == np.int32 and out.shape == ()
    assert int(out) == (4 * 2 ** 30 + 2 ** 31) % 2 ** 32 - 2 ** 31  # two's complement wrap-around


def test_reduce_sum_float16_accumulates_accurately():
    x = np.full((4096,), 1.0, np.float16)  # float16 can count exactly only up to 2048 one by one
    out = ref("reduce_sum")(x, axes=(0,))
    assert out.dtype == np.float16 and float(out) == 4096.0


def test_reduce_sum_of_bool_is_a_dtype_error():
    with pytest.raises(DTypeError, match=r"reduce_sum\(bool\[3\]\).*got bool"):
        out_type("reduce_sum", TensorType(bool_, (3,)), axes=(0,))


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "reduce_min"])
@pytest.mark.parametrize("axes,message", [
    ((2,), "axes entry 2 is not an axis of shape [2, 3]"),
    ((1, 0), "axes (1, 0) of shape [2, 3] must be sorted"),
    ((1, 1), "repeat an axis"),
    ((-1,), "axes entry -1 is not an axis"),
    (0, "axes must be a tuple"),
])
def test_reduce_axes_errors(op, axes, message):
    with pytest.raises(ShapeError, match=rf"{op}\(f32\[2,3\]\)") as e:
        out_type(op, TensorType(float32, (2, 3)), axes=axes)
    assert message in str(e.value)


@pytest.mark.parametrize("shape,axes", [s for s in SHAPES_AND_AXES if 0 not in s[0]])
def test_reduce_sum_grad(shape, axes):
    check_grad("reduce_sum", sample(shape, np.float64), axes=axes)


# -- reduce_max / reduce_min -------------------------------------------------------------------
@pytest.mark.parametrize("op,pick", [("reduce_max", max), ("reduce_min", min)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axes", SHAPES_AND_AXES)
def test_reduce_extremum_reference(op, pick, shape, axes, dtype):
    x = sample(shape, dtype)
    out = ref(op)(x, axes=axes)
    check_declared(op, x, out, axes=axes)
    out_shape, elements = groups(x, axes)
    assert out.shape == out_shape
    for idx in np.ndindex(*out_shape):
        assert out[idx] == pick(elements[idx])


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_reduce_extremum_of_bool(op):
    x = np.array([[True, False], [False, False]])
    out = ref(op)(x, axes=(1,))
    check_declared(op, x, out, axes=(1,))
    np.testing.assert_array_equal(out, [any(r) for r in x] if op == "reduce_max" else [all(r) for r in x])


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_reduce_extremum_of_an_empty_axis_is_a_shape_error(op):
    with pytest.raises(ShapeError, match=r"zero-size reduction has no identity.*\[2, 0\]"):
        out_type(op, TensorType(float32, (2, 0)), axes=(1,))
    # An empty output with non-empty reduced axes is fine.
    assert out_type(op, TensorType(float32, (0, 3)), axes=(1,)) == TensorType(float32, (0,))


def test_reduce_sum_of_an_empty_axis_is_zero():
    assert out_type("reduce_sum", TensorType(float32, (2, 0)), axes=(1,)) == TensorType(float32, (2,))
    np.testing.assert_array_equal(ref("reduce_sum")(np.zeros((2, 0), np.float32), axes=(1,)), [0, 0])


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
@pytest.mark.parametrize("shape,axes", [s for s in SHAPES_AND_AXES if 0 not in s[0]])
def test_reduce_extremum_grad_without_ties(op, shape, axes):
    check_grad(op, sample(shape, np.float64), axes=axes)


@pytest.mark.parametrize("op", ["reduce_max", "reduce_min"])
def test_reduce_extremum_grad_splits_ties_evenly(op):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, -1.0, -4.0]])
    g = np.array([6.0, 8.0, 3.0])
    grad = vjp(op, x, g, axes=(1,))
    expected = np.zeros_like(x)
    for r, row in enumerate(x):
        target = row.max() if op == "reduce_max" else row.min()
        winners = [c for c, v in enumerate(row) if v == target]
        for c in winners:
            expected[r, c] = g[r] / len(winners)
    np.testing.assert_allclose(grad, expected)


def test_reduce_max_grad_matches_torch_amax():
    torch = pytest.importorskip("torch")
    x = np.array([[1.0, 4.0, 4.0], [0.5, -2.0, 0.5]])
    g = np.array([1.5, -3.0])
    grad = vjp("reduce_max", x, g, axes=(1,))
    t = torch.tensor(x, requires_grad=True)
    torch.amax(t, dim=1).backward(torch.tensor(g))
    np.testing.assert_allclose(grad, t.grad.numpy())


# -- argmax ------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_dtype", [int32, int64])
@pytest.mark.parametrize("dtype", DTYPES + [np.bool_])
@pytest.mark.parametrize("shape,axis", [((5,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 1, 3), 1), ((0, 3), 1),
                                        ((2, 3, 4), 2)])
def test_argmax_reference(shape, axis, dtype, out_dtype):
    x = sample(shape, np.int32) % 4  # few distinct values: many ties, the first maximum wins
    x = x.astype(dtype)
    out = ref("argmax")(x, axis=axis, dtype=out_dtype)
    check_declared("argmax", x, out, axis=axis, dtype=out_dtype)
    assert out.dtype == out_dtype.np_dtype
    kept = [d for d in range(x.ndim) if d != axis]
    for idx in np.ndindex(*out.shape):
        line = [x[tuple(idx[kept.index(d)] if d != axis else k for d in range(x.ndim))].item()
                for k in range(shape[axis])]
        assert out[idx] == line.index(max(line))


def test_argmax_errors():
    t = TensorType(float32, (2, 3))
    with pytest.raises(DTypeError, match="argmax indices are i32 or i64, got f32"):
        out_type("argmax", t, axis=0, dtype=float32)
    with pytest.raises(DTypeError, match="got u32"):
        out_type("argmax", t, axis=0, dtype="u32")
    with pytest.raises(ShapeError, match=r"axis 2 is not an axis of shape \[2, 3\]"):
        out_type("argmax", t, axis=2, dtype=int32)
    with pytest.raises(ShapeError, match=r"empty axis 1 of shape \[2, 0\]"):
        out_type("argmax", TensorType(float32, (2, 0)), axis=1, dtype=int32)


def test_differentiability_and_codegen():
    for op in ["reduce_sum", "reduce_max", "reduce_min", "argmax"]:
        prim = primitive.get(op)
        assert prim.family == "reduce"
        assert prim.codegen == {"numba": "@reduce", "triton": "@reduce"}
        assert prim.differentiable == (op != "argmax")


# -- gradient helpers --------------------------------------------------------------------------
def check_grad(op, x, **attrs):
    """First and second derivatives through the autodiff pass against central differences (float64)."""
    check_primitive_grad(op, [np.asarray(x, dtype=np.float64)], order=2, **attrs)


def vjp(op, x, cotangent, **attrs):
    """The autodiff pass's gradient of ``op`` at ``x`` for ``cotangent``, run by the reference interpreter."""
    b = GraphBuilder()
    graph = b.finish([b.emit(op, b.add_input(type_of_array(x)), **attrs)])
    _, grad = interpret(verify(vjp_graph(graph, [0])), [x, np.asarray(cotangent, dtype=x.dtype)])
    return grad

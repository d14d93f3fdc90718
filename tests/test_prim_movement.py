"""The movement primitives: shape rules through GraphBuilder, references against naive index loops,
and gradient rules (first and second order, through the autodiff pass) against finite differences."""
import numpy as np
import pytest

from kernelflow.ir import DTypeError, ShapeError, TensorType, float32, float64, int32
from kernelflow.ir import primitive
from kernelflow.ir.types import type_of_array

from gradcheck import check_primitive_grad, out_type, ref

DTYPES = [np.float32, np.float64, np.int32]


def sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 10).astype(dtype)


def check_declared(op, arrays, out, **attrs):
    """The reference returns exactly the type the shape rule declares, as a fresh array."""
    assert type_of_array(out) == out_type(op, *[type_of_array(a) for a in arrays], **attrs)
    assert all(not np.shares_memory(out, a) for a in arrays)


def check_grad(op, arrays, **attrs):
    """First and second derivatives through the autodiff pass against central differences (float64)."""
    check_primitive_grad(op, [np.asarray(a, dtype=np.float64) for a in arrays], order=2, **attrs)


# -- broadcast_in_dim --------------------------------------------------------------------------
BROADCAST_CASES = [
    ((), (2, 3), ()),
    ((3,), (2, 3), (1,)),
    ((3,), (3, 2), (0,)),
    ((1, 3), (4, 3), (0, 1)),
    ((3, 1), (2, 3, 4), (1, 2)),
    ((1,), (0, 5), (1,)),
    ((0,), (2, 0), (1,)),
    ((1, 1), (1, 1), (0, 1)),
    ((2, 3), (2, 3), (0, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,shape,dims", BROADCAST_CASES)
def test_broadcast_in_dim_reference(xshape, shape, dims, dtype):
    x = sample(xshape, dtype)
    out = ref("broadcast_in_dim")(x, shape=shape, dims=dims)
    check_declared("broadcast_in_dim", [x], out, shape=shape, dims=dims)
    expected = np.empty(shape, dtype)
    for idx in np.ndindex(*shape):
        expected[idx] = x[tuple(0 if x.shape[i] == 1 else idx[d] for i, d in enumerate(dims))]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("xshape,shape,dims,message", [
    ((3,), (2, 4), (1,), "cannot broadcast shape [3] to shape [2, 4]"),
    ((3, 2), (2, 3), (1, 0), "strictly increasing"),
    ((3,), (3, 3), (0, 1), "dims (0, 1)"),
    ((3,), (3,), (1,), "strictly increasing"),
    ((2,), (2, -1), (0,), "non-negative"),
])
def test_broadcast_in_dim_errors(xshape, shape, dims, message):
    with pytest.raises(ShapeError, match="broadcast_in_dim") as e:
        out_type("broadcast_in_dim", TensorType(float32, xshape), shape=shape, dims=dims)
    assert message in str(e.value)


@pytest.mark.parametrize("xshape,shape,dims", [c for c in BROADCAST_CASES if 0 not in c[1]])
def test_broadcast_in_dim_grad(xshape, shape, dims):
    check_grad("broadcast_in_dim", [sample(xshape, np.float64)], shape=shape, dims=dims)


# -- reshape -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,shape", [
    ((2, 3), (3, 2)), ((6,), (1, 2, 1, 3)), ((), (1, 1)), ((1,), ()), ((0, 3), (3, 0)), ((4, 5), (20,)),
])
def test_reshape_reference(xshape, shape, dtype):
    x = sample(xshape, dtype)
    out = ref("reshape")(x, shape=shape)
    check_declared("reshape", [x], out, shape=shape)
    # Row-major: the k-th element in index order of the result is the k-th of the input.
    assert out.shape == shape
    assert [out[i] for i in np.ndindex(*shape)] == [x[i] for i in np.ndindex(*xshape)]


def test_reshape_errors():
    with pytest.raises(ShapeError, match=r"reshape.*\[2, 3\] \(6 elements\) to shape \[4\]"):
        out_type("reshape", TensorType(float32, (2, 3)), shape=(4,))
    with pytest.raises(ShapeError, match="non-negative"):
        out_type("reshape", TensorType(float32, (2, 3)), shape=(-1, 3))


def test_reshape_grad():
    check_grad("reshape", [sample((2, 3, 2), np.float64)], shape=(3, 4))


# -- transpose ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,perm", [
    ((2, 3), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((1, 3, 1), (2, 1, 0)), ((0, 2), (1, 0)), ((), ()),
    ((2, 3), (0, 1)),
])
def test_transpose_reference(xshape, perm, dtype):
    x = sample(xshape, dtype)
    out = ref("transpose")(x, perm=perm)
    check_declared("transpose", [x], out, perm=perm)
    for idx in np.ndindex(*xshape):
        assert out[tuple(idx[p] for p in perm)] == x[idx]


def test_transpose_errors():
    with pytest.raises(ShapeError, match=r"perm \(0, 0\) is not a permutation of the 2 dims of shape \[2, 3\]"):
        out_type("transpose", TensorType(float32, (2, 3)), perm=(0, 0))
    with pytest.raises(ShapeError, match="permutation"):
        out_type("transpose", TensorType(float32, (2, 3)), perm=(1, 0, 2))


def test_transpose_grad():
    check_grad("transpose", [sample((2, 3, 4), np.float64)], perm=(1, 2, 0))


# -- slice -------------------------------------------------------------------------------------
SLICE_CASES = [
    ((5,), (1,), (4,), (1,)),
    ((7,), (0,), (7,), (3,)),
    ((7, 4), (1, 0), (6, 4), (2, 3)),
    ((3, 3), (1, 2), (1, 3), (1, 1)),      # empty output along dim 0
    ((0, 2), (0, 0), (0, 2), (1, 2)),
    ((1, 1), (0, 0), (1, 1), (5, 5)),
    ((6,), (6,), (6,), (1,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,start,limit,stride", SLICE_CASES)
def test_slice_reference(xshape, start, limit, stride, dtype):
    x = sample(xshape, dtype)
    out = ref("slice")(x, start=start, limit=limit, stride=stride)
    check_declared("slice", [x], out, start=start, limit=limit, stride=stride)
    counts = [len(range(s, l, st)) for s, l, st in zip(start, limit, stride)]
    assert list(out.shape) == counts
    for idx in np.ndindex(*counts):
        assert out[idx] == x[tuple(s + i * st for s, i, st in zip(start, idx, stride))]


@pytest.mark.parametrize("start,limit,stride,message", [
    ((2, 0), (1, 3), (1, 1), "start <= limit <= 4"),
    ((0, 0), (5, 3), (1, 1), "start <= limit <= 4"),
    ((0, 0), (4, 3), (0, 1), "stride entries must be ints >= 1"),
    ((0,), (4,), (1,), "one per dim of shape [4, 3]"),
    ((-1, 0), (4, 3), (1, 1), "start entries must be ints >= 0"),
])
def test_slice_errors(start, limit, stride, message):
    with pytest.raises(ShapeError, match=r"slice\(f32\[4,3\]\)") as e:
        out_type("slice", TensorType(float32, (4, 3)), start=start, limit=limit, stride=stride)
    assert message in str(e.value)


@pytest.mark.parametrize("xshape,start,limit,stride", SLICE_CASES)
def test_slice_grad(xshape, start, limit, stride):
    check_grad("slice", [sample(xshape, np.float64)], start=start, limit=limit, stride=stride)


# -- pad ---------------------------------------------------------------------------------------
PAD_CASES = [
    ((3,), (1,), (2,), (0,)),
    ((3,), (0,), (0,), (2,)),
    ((2, 3), (1, 0), (0, 2), (1, 1)),
    ((0, 2), (2, 1), (1, 0), (3, 0)),
    ((1,), (0,), (0,), (4,)),
    ((), (), (), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,low,high,interior", PAD_CASES)
def test_pad_reference(xshape, low, high, interior, dtype):
    x = sample(xshape, dtype)
    out = ref("pad")(x, low=low, high=high, interior=interior, value=7)
    check_declared("pad", [x], out, low=low, high=high, interior=interior, value=7)
    expected_shape = tuple(lo + hi + n + max(n - 1, 0) * it for n, lo, hi, it in zip(xshape, low, high, interior))
    expected = np.full(expected_shape, 7, dtype)
    for idx in np.ndindex(*xshape):
        expected[tuple(lo + i * (it + 1) for lo, i, it in zip(low, idx, interior))] = x[idx]
    np.testing.assert_array_equal(out, expected)


def test_pad_errors():
    f32 = TensorType(float32, (2, 3))
    with pytest.raises(ShapeError, match=r"pad\(f32\[2,3\]\).*low entries must be ints >= 0"):
        out_type("pad", f32, low=(-1, 0), high=(0, 0), interior=(0, 0), value=0.0)
    with pytest.raises(ShapeError, match=r"one per dim of shape \[2, 3\]"):
        out_type("pad", f32, low=(0,), high=(0, 0), interior=(0, 0), value=0.0)
    with pytest.raises(DTypeError, match="not an integer, but the operand is i32"):
        out_type("pad", TensorType(int32, (2,)), low=(0,), high=(0,), interior=(0,), value=0.5)
    with pytest.raises(DTypeError, match="must be a Python int, float or bool"):
        out_type("pad", f32, low=(0, 0), high=(0, 0), interior=(0, 0), value="0")


@pytest.mark.parametrize("xshape,low,high,interior", PAD_CASES)
def test_pad_grad(xshape, low, high, interior):
    check_grad("pad", [sample(xshape, np.float64)], low=low, high=high, interior=interior, value=2.5)


def test_slice_of_pad_recovers_the_operand():
    """pad places x at low + i*(interior+1); the slice with those bounds reads it back."""
    x = sample((3, 4), np.float64)
    padded = ref("pad")(x, low=(2, 1), high=(1, 3), interior=(1, 2), value=0.0)
    back = ref("slice")(padded, start=(2, 1), limit=(2 + 3 + 2, 1 + 4 + 6), stride=(2, 3))
    np.testing.assert_array_equal(back, x)


# -- concatenate -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes,axis", [
    ([(2, 3), (4, 3)], 0),
    ([(2, 1), (2, 0), (2, 3)], 1),
    ([(5,)], 0),
    ([(0, 2), (0, 2)], 1),
    ([(1, 2, 1), (1, 2, 2)], 2),
])
def test_concatenate_reference(shapes, axis, dtype):
    xs = [sample(s, dtype, seed=i) for i, s in enumerate(shapes)]
    out = ref("concatenate")(*xs, axis=axis)
    check_declared("concatenate", xs, out, axis=axis)
    offset, offsets = 0, []
    for x in xs:
        offsets.append(offset)
        offset += x.shape[axis]
    for x, off in zip(xs, offsets):
        for idx in np.ndindex(*x.shape):
            shifted = tuple(i + off if d == axis else i for d, i in enumerate(idx))
            assert out[shifted] == x[idx]
    assert out.size == sum(x.size for x in xs)


def test_concatenate_errors():
    a, b = TensorType(float32, (2, 3)), TensorType(float32, (3, 3))
    with pytest.raises(ShapeError, match=r"operand shapes \[2, 3\], \[3, 3\] differ outside the concatenation axis 1"):
        out_type("concatenate", a, b, axis=1)
    with pytest.raises(DTypeError, match="operand dtypes differ: f32, f64"):
        out_type("concatenate", a, TensorType(float64, (2, 3)), axis=0)
    with pytest.raises(ShapeError, match=r"axis 2 is not an axis of shape \[2, 3\]"):
        out_type("concatenate", a, a, axis=2)
    with pytest.raises(ShapeError, match="ranks differ"):
        out_type("concatenate", a, TensorType(float32, (6,)), axis=0)
    with pytest.raises(ShapeError, match="at least one operand"):
        out_type("concatenate", axis=0)


def test_concatenate_grad():
    check_grad("concatenate", [sample((2, 1), np.float64), sample((2, 0), np.float64),
                              sample((2, 3), np.float64, seed=3)], axis=1)


# -- rev ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xshape,axes", [
    ((4,), (0,)), ((2, 3), (1,)), ((2, 3, 4), (2, 0)), ((0, 3), (0, 1)), ((1, 1), (0,)), ((2, 3), ()),
])
def test_rev_reference(xshape, axes, dtype):
    x = sample(xshape, dtype)
    out = ref("rev")(x, axes=axes)
    check_declared("rev", [x], out, axes=axes)
    for idx in np.ndindex(*xshape):
        assert out[tuple(n - 1 - i if d in axes else i for d, (i, n) in enumerate(zip(idx, xshape)))] == x[idx]


def test_rev_errors():
    with pytest.raises(ShapeError, match=r"axes entry 2 is not an axis of shape \[2, 3\]"):
        out_type("rev", TensorType(float32, (2, 3)), axes=(2,))
    with pytest.raises(ShapeError, match="repeat an axis"):
        out_type("rev", TensorType(float32, (2, 3)), axes=(1, 1))


def test_rev_grad():
    check_grad("rev", [sample((2, 3, 2), np.float64)], axes=(0, 2))


def test_codegen_is_the_movement_lowering():
    for op in ["broadcast_in_dim", "reshape", "transpose", "slice", "pad", "concatenate", "rev"]:
        prim = primitive.get(op)
        assert prim.family == "movement"
        assert prim.codegen == {"numba": "@movement", "triton": "@movement"}

"""dot_general: shape rule, numpy reference and gradient rule against naive loops and torch."""
import itertools
import string

import numpy as np
import pytest

from kernelflow.ir import DTypeError, GraphBuilder, ShapeError, TensorType, as_dtype, get_primitive
from kernelflow.ir.interpret import interpret

from gradcheck import exact_linear_vjp

RNG = np.random.default_rng(0)

# (lhs shape, rhs shape, contract, batch)
CASES = [
    ((3, 4), (4, 5), ((1,), (0,)), ((), ())),                       # matmul
    ((4,), (4,), ((0,), (0,)), ((), ())),                           # vector dot -> scalar
    ((3,), (2,), ((), ()), ((), ())),                               # outer product
    ((3, 4), (3, 4), ((0, 1), (0, 1)), ((), ())),                   # full contraction
    ((2, 3, 4), (2, 4, 5), ((2,), (1,)), ((0,), (0,))),             # batched matmul
    ((3, 2, 4, 5), (5, 4, 6), ((2, 3), (1, 0)), ((), ())),          # two contract dims, crossed order
    ((4, 2, 3, 5), (3, 5, 2, 6), ((3,), (1,)), ((1, 2), (2, 0))),   # two batch dims, not leading
    ((2, 3, 4), (4, 2), ((0, 2), (1, 0)), ((), ())),                # contract dims given out of order
    ((5, 2, 3), (3, 2), ((1, 2), (1, 0)), ((), ())),
    ((2, 3, 4), (2, 3, 4), ((2,), (2,)), ((0, 1), (0, 1))),         # batched dot
    ((2, 3), (3, 2), ((), ()), ((0,), (1,))),                       # batch with no contraction
]


def naive_dot_general(lhs, rhs, contract, batch):
    """Loops over every output index and every contracted index; follows the jax spec literally."""
    (lc, rc), (lb, rb) = contract, batch
    lfree = [d for d in range(lhs.ndim) if d not in lc + lb]
    rfree = [d for d in range(rhs.ndim) if d not in rc + rb]
    out_shape = ([lhs.shape[d] for d in lb] + [lhs.shape[d] for d in lfree]
                 + [rhs.shape[d] for d in rfree])
    out = np.zeros(out_shape, dtype=lhs.dtype)
    csizes = [lhs.shape[d] for d in lc]
    for idx in itertools.product(*[range(n) for n in out_shape]):
        bi, li, ri = idx[:len(lb)], idx[len(lb):len(lb) + len(lfree)], idx[len(lb) + len(lfree):]
        acc = 0
        for ci in itertools.product(*[range(n) for n in csizes]):
            lidx, ridx = [0] * lhs.ndim, [0] * rhs.ndim
            for d, i in zip(lb, bi):
                lidx[d] = i
            for d, i in zip(rb, bi):
                ridx[d] = i
            for d, i in zip(lfree, li):
                lidx[d] = i
            for d, i in zip(rfree, ri):
                ridx[d] = i
            for d, i in zip(lc, ci):
                lidx[d] = i
            for d, i in zip(rc, ci):
                ridx[d] = i
            acc += lhs[tuple(lidx)] * rhs[tuple(ridx)]
        out[idx] = acc
    return out


def einsum_spec(lhs_ndim, rhs_ndim, contract, batch):
    """The einsum string of a dot_general, for torch.einsum."""
    (lc, rc), (lb, rb) = contract, batch
    letters = iter(string.ascii_lowercase)
    lsub, rsub = [None] * lhs_ndim, [None] * rhs_ndim
    for ld, rd in zip(lb + lc, rb + rc):
        lsub[ld] = rsub[rd] = next(letters)
    for i in range(lhs_ndim):
        lsub[i] = lsub[i] or next(letters)
    for i in range(rhs_ndim):
        rsub[i] = rsub[i] or next(letters)
    out = ([lsub[d] for d in lb] + [lsub[d] for d in range(lhs_ndim) if d not in lb + lc]
           + [rsub[d] for d in range(rhs_ndim) if d not in rb + rc])
    return f"{''.join(lsub)},{''.join(rsub)}->{''.join(out)}"


def random(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(-5, 6, size=shape).astype(dtype)


def emit(lhs_type, rhs_type, **attrs):
    b = GraphBuilder()
    return b.dot_general(b.add_input(lhs_type), b.add_input(rhs_type), **attrs)


def f32(*shape):
    return TensorType(as_dtype("f32"), shape)


# -- shape rule ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_shape_rule_matches_naive(lhs_shape, rhs_shape, contract, batch):
    out = emit(f32(*lhs_shape), f32(*rhs_shape), contract=contract, batch=batch)
    expected = naive_dot_general(np.zeros(lhs_shape), np.zeros(rhs_shape), contract, batch)
    assert out.shape == expected.shape
    assert out.dtype == as_dtype("f32")


def test_shape_rule_batch_order_follows_attribute():
    out = emit(f32(2, 3, 7), f32(3, 2, 7), contract=((2,), (2,)), batch=((1, 0), (0, 1)))
    assert out.shape == (3, 2)


@pytest.mark.parametrize("lhs, rhs, contract, batch, error, words", [
    (f32(3, 4), f32(5, 6), ((1,), (0,)), ((), ()), ShapeError, ["[3, 4]", "[5, 6]", "dim 1", "dim 0"]),
    (f32(2, 3, 4), f32(5, 4, 6), ((2,), (1,)), ((0,), (0,)), ShapeError, ["batch", "[2, 3, 4]", "[5, 4, 6]"]),
    (f32(3, 4), f32(4, 5), ((2,), (0,)), ((), ()), ShapeError, ["out of range", "[3, 4]"]),
    (f32(3, 4), f32(4, 5), ((1,), (-1,)), ((), ()), ShapeError, ["out of range"]),
    (f32(3, 3), f32(3, 3), ((1, 1), (0, 1)), ((), ()), ShapeError, ["repeat"]),
    (f32(3, 3), f32(3, 3), ((1,), (0,)), ((1,), (1,)), ShapeError, ["repeat"]),
    (f32(3, 4), f32(4, 5), ((1,), (0, 1)), ((), ()), ShapeError, ["contract"]),
    (f32(3, 4), f32(4, 5), (1, 0), ((), ()), ShapeError, ["contract"]),
    (f32(3, 4), TensorType(as_dtype("f64"), (4, 5)), ((1,), (0,)), ((), ()), DTypeError, ["f32", "f64"]),
    (TensorType(as_dtype("bool"), (3, 4)), TensorType(as_dtype("bool"), (4, 5)), ((1,), (0,)), ((), ()),
     DTypeError, ["bool"]),
])
def test_shape_rule_errors(lhs, rhs, contract, batch, error, words):
    with pytest.raises(error) as info:
        emit(lhs, rhs, contract=contract, batch=batch)
    message = str(info.value)
    assert message.startswith("dot_general(")
    for w in words:
        assert w in message


def test_missing_attribute_is_rejected():
    b = GraphBuilder()
    with pytest.raises(TypeError):
        b.dot_general(b.add_input(f32(3, 4)), b.add_input(f32(4, 5)), contract=((1,), (0,)))


# -- reference -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_reference_matches_naive_loops(lhs_shape, rhs_shape, contract, batch, dtype):
    lhs, rhs = random(lhs_shape, dtype), random(rhs_shape, dtype)
    out = get_primitive("dot_general").reference(lhs, rhs, contract=contract, batch=batch)
    expected = naive_dot_general(lhs, rhs, contract, batch)
    assert out.dtype == np.dtype(dtype) and out.shape == expected.shape
    if np.dtype(dtype).kind == "f":
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_reference_matches_torch_einsum(lhs_shape, rhs_shape, contract, batch, dtype):
    torch = pytest.importorskip("torch")
    lhs, rhs = random(lhs_shape, dtype), random(rhs_shape, dtype)
    out = get_primitive("dot_general").reference(lhs, rhs, contract=contract, batch=batch)
    expected = torch.einsum(einsum_spec(lhs.ndim, rhs.ndim, contract, batch),
                            torch.from_numpy(lhs), torch.from_numpy(rhs)).numpy()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


def test_reference_is_torch_matmul_for_batched_matmul():
    torch = pytest.importorskip("torch")
    lhs, rhs = random((3, 4, 5), "float64"), random((3, 5, 2), "float64")
    out = get_primitive("dot_general").reference(lhs, rhs, contract=((2,), (1,)), batch=((0,), (0,)))
    np.testing.assert_allclose(out, torch.matmul(torch.from_numpy(lhs), torch.from_numpy(rhs)).numpy(),
                               rtol=1e-12)


# -- gradient rule -------------------------------------------------------------------------------
def grad_by_rule(arrays, g, **attrs):
    """Apply dot_general's gradient rule in a graph and run it with the reference interpreter."""
    b = GraphBuilder()
    inputs = [b.add_input(TensorType(as_dtype(a.dtype), a.shape)) for a in arrays]
    node = b.emit_node("dot_general", *inputs, **attrs)
    g_in = b.add_input(node.out.type)
    grads = get_primitive("dot_general").grad(b, g_in, node)
    for v, a in zip(grads, arrays):
        assert v.type == TensorType(as_dtype(a.dtype), a.shape)
    return interpret(b.finish(grads), [*arrays, g])


def naive_vjp(arrays, g, which, contract, batch):
    """d<g, dot_general(lhs, rhs)>/d arrays[which], exactly (dot_general is linear in each operand)."""
    return exact_linear_vjp(lambda *a: naive_dot_general(*a, contract, batch), arrays, which, g)


@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_grad_rule_matches_naive_vjp(lhs_shape, rhs_shape, contract, batch):
    lhs, rhs = random(lhs_shape, "float64"), random(rhs_shape, "float64")
    g = random(naive_dot_general(lhs, rhs, contract, batch).shape, "float64")
    dlhs, drhs = grad_by_rule([lhs, rhs], g, contract=contract, batch=batch)
    np.testing.assert_allclose(dlhs, naive_vjp([lhs, rhs], g, 0, contract, batch), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(drhs, naive_vjp([lhs, rhs], g, 1, contract, batch), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_grad_rule_matches_torch_autograd(lhs_shape, rhs_shape, contract, batch):
    torch = pytest.importorskip("torch")
    lhs, rhs = random(lhs_shape, "float32"), random(rhs_shape, "float32")
    lt = torch.from_numpy(lhs).requires_grad_()
    rt = torch.from_numpy(rhs).requires_grad_()
    out = torch.einsum(einsum_spec(lhs.ndim, rhs.ndim, contract, batch), lt, rt)
    g = random(tuple(out.shape), "float32")
    expected = torch.autograd.grad(out, (lt, rt), torch.from_numpy(g))
    got = grad_by_rule([lhs, rhs], g, contract=contract, batch=batch)
    for a, e in zip(got, expected):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-5, atol=1e-5)


# -- gradients through the autodiff pass against finite differences ------------------------------
@pytest.mark.parametrize("lhs_shape, rhs_shape, contract, batch", CASES)
def test_gradcheck_first_and_second_order(lhs_shape, rhs_shape, contract, batch):
    from gradcheck import check_primitive_grad
    check_primitive_grad("dot_general", [random(lhs_shape, "float64"), random(rhs_shape, "float64")],
                         order=2, contract=contract, batch=batch)

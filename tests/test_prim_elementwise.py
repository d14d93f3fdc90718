"""Elementwise primitives: shape/dtype rules, references against independent formulas, gradients."""
import math

import numpy as np
import pytest

from gradcheck import check_primitive_grad, one_node_graph
from kernelflow.ir import DTypeError, GraphBuilder, ShapeError, TensorType, interpret, primitive
from kernelflow.ir import types as T

SHAPES = [(), (1,), (0,), (3, 1), (2, 0, 3), (4, 5)]
rng = np.random.default_rng(42)


def ref(name, *arrays, **attrs):
    return primitive.get(name).reference(*arrays, **attrs)


# Independent formulations: Python's math module applied element by element, in float64.
SCALAR = {
    "neg": lambda x: -x, "exp": math.exp, "log": math.log, "log1p": math.log1p, "expm1": math.expm1,
    "tanh": math.tanh, "logistic": lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0,
    "sqrt": math.sqrt, "rsqrt": lambda x: 1 / math.sqrt(x), "abs": abs,
    "sign": lambda x: float((x > 0) - (x < 0)), "sin": math.sin, "cos": math.cos, "floor": math.floor,
    "erf": math.erf,
}
POSITIVE = {"log", "log1p", "sqrt", "rsqrt"}


@pytest.mark.parametrize("name", sorted(SCALAR))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_unary_reference_matches_scalar_math(name, dtype, shape):
    x = rng.standard_normal(shape) * 3
    if name in POSITIVE:
        x = np.abs(x) + 0.1
    x = x.astype(dtype)
    got = ref(name, x)
    want = np.array([SCALAR[name](float(v)) for v in x.reshape(-1)]).reshape(shape)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got, want, rtol=2e-6 if dtype == np.float32 else 1e-14, atol=1e-30)


def test_logistic_saturates_without_overflow_warnings():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], np.float32)
    with np.errstate(all="raise"):
        got = ref("logistic", x)
    np.testing.assert_array_equal(got, np.array([0, 1 / (1 + math.exp(50)), 0.5, 1, 1], np.float32))


@pytest.mark.parametrize("name", ["exp", "tanh", "log", "sqrt", "erf", "floor", "logistic"])
def test_float_only_unary_rejects_integers(name):
    b = GraphBuilder()
    x = b.add_input(TensorType(T.int32, (3,)))
    with pytest.raises(DTypeError, match=f"{name}\\(i32\\[3\\]\\)"):
        b.emit(name, x)


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "maximum": max, "minimum": min}


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_binary_reference_matches_python_arithmetic(name, dtype, shape):
    a = (rng.standard_normal(shape) * 2).astype(dtype)
    b = (rng.standard_normal(shape) * 2).astype(dtype)
    if name == "pow":
        a = np.abs(a) + 0.5
    got = ref(name, a, b)
    want = np.array([BINARY[name](float(x), float(y)) for x, y in zip(a.reshape(-1), b.reshape(-1))]).reshape(shape)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=3e-6 if dtype == np.float32 else 1e-14)


def test_integer_division_floors_like_python():
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    got = ref("div", a, b)
    assert got.dtype == np.int32
    assert got.tolist() == [x // y for x, y in zip(a.tolist(), b.tolist())]


@pytest.mark.parametrize("name, py", [("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")])
def test_comparisons_give_bool(name, py):
    a = np.array([1.0, 2.0, np.nan, 3.0], np.float32)
    b = np.array([1.0, 3.0, np.nan, 2.0], np.float32)
    got = ref(name, a, b)
    assert got.dtype == np.bool_
    assert got.tolist() == [eval(f"x {py} y") for x, y in zip(a.tolist(), b.tolist())]
    b_ = GraphBuilder()
    x = b_.add_input(TensorType(T.float32, (4,)))
    assert b_.emit(name, x, x).type == TensorType(T.bool_, (4,))


def test_binary_shape_and_dtype_mismatch_errors_name_the_operands():
    b = GraphBuilder()
    x = b.add_input(TensorType(T.float32, (2, 3)))
    y = b.add_input(TensorType(T.float32, (3, 2)))
    z = b.add_input(TensorType(T.float64, (2, 3)))
    with pytest.raises(ShapeError, match=r"add\(f32\[2,3\], f32\[3,2\]\).*\[2, 3\], \[3, 2\]"):
        b.add(x, y)
    with pytest.raises(DTypeError, match=r"mul\(f32\[2,3\], f64\[2,3\]\).*f32, f64"):
        b.mul(x, z)


def test_select_and_cast():
    p = np.array([True, False, True])
    a = np.array([1.0, 2.0, 3.0], np.float32)
    c = np.array([-1.0, -2.0, -3.0], np.float32)
    assert ref("select", p, a, c).tolist() == [1.0, -2.0, 3.0]
    assert ref("cast", np.array([1.7, -1.7]), dtype=T.int32).tolist() == [1, -1]  # truncation, as numpy
    assert ref("cast", np.array([1.7]), dtype=T.float32).dtype == np.float32
    b = GraphBuilder()
    x = b.add_input(TensorType(T.float32, (3,)))
    with pytest.raises(DTypeError, match="predicate must be bool"):
        b.select(x, x, x)
    assert b.cast(x, "f16").type == TensorType(T.float16, (3,))


DIFFERENTIABLE_UNARY = ["neg", "exp", "log", "log1p", "expm1", "tanh", "logistic", "sqrt", "rsqrt", "abs",
                        "sin", "cos", "erf"]


@pytest.mark.parametrize("name", DIFFERENTIABLE_UNARY)
def test_unary_gradients_first_and_second_order(name):
    x = rng.standard_normal((3, 4))
    if name in POSITIVE:
        x = np.abs(x) + 0.5
    check_primitive_grad(name, [x], order=2)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_gradients_first_and_second_order(name):
    a = rng.standard_normal((2, 3))
    b = rng.standard_normal((2, 3))
    if name == "pow":
        a = np.abs(a) + 0.5
    check_primitive_grad(name, [a, b], order=2)


def test_select_and_cast_gradients():
    a, b = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    check_primitive_grad("select", [a > 0, a, b], order=2)
    check_primitive_grad("cast", [a], dtype=T.float64)


@pytest.mark.parametrize("name", ["sign", "floor", "eq", "ne", "lt", "le", "gt", "ge"])
def test_nondifferentiable_ops_give_zero_gradient(name):
    from kernelflow.passes.autodiff import vjp_graph
    x = rng.standard_normal((3,))
    args = [x] if primitive.get(name).family == "unary" else [x, x[::-1].copy()]
    g = one_node_graph(name, args, {})
    if g.outputs[0].dtype != T.float64:  # compares: make the output differentiable via cast
        b = GraphBuilder()
        ins = [b.add_input(v.type) for v in g.inputs]
        g = b.finish([b.cast(b.emit(name, *ins), T.float64)])
    vg = vjp_graph(g, list(range(len(args))))
    grads = interpret(vg, args + [np.ones(3)])[1:]
    for gr in grads:
        np.testing.assert_array_equal(gr, 0)


def test_maximum_ties_split_the_gradient_like_torch():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 1.0, 4.0])
    from kernelflow.passes.autodiff import vjp_graph
    vg = vjp_graph(one_node_graph("maximum", [a, b], {}), [0, 1])
    _, ga, gb = interpret(vg, [a, b, np.ones(3)])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    torch.maximum(ta, tb).sum().backward()
    np.testing.assert_array_equal(ga, ta.grad.numpy())
    np.testing.assert_array_equal(gb, tb.grad.numpy())

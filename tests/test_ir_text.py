"""The IR text form: exact round trip of random well-typed graphs, and a parser that only ever raises ParseError."""
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelflow.ir import (DTypeError, GraphBuilder, ParseError, ShapeError, SourceLoc, TensorType,
                           interpret, parse, print_graph, verify)
from kernelflow.ir import types as T

FLOAT_DTYPES = [T.float16, T.float32, T.float64]
ALL = [T.float16, T.float32, T.float64, T.int8, T.int32, T.int64, T.uint8, T.uint32, T.bool_]
UNARY = ["neg", "exp", "log", "log1p", "expm1", "tanh", "logistic", "sqrt", "rsqrt", "abs", "sign",
         "sin", "cos", "floor", "erf"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"]

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


def array_for(draw, dtype, shape):
    n = int(np.prod(shape))
    if dtype.kind == "bool":
        vals = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    elif dtype.kind == "float":
        width = 16 if dtype.bits == 16 else dtype.bits
        vals = draw(st.lists(st.floats(width=width, allow_nan=True, allow_infinity=True), min_size=n, max_size=n))
    else:
        info = np.iinfo(dtype.np_dtype)
        vals = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
    return np.array(vals, dtype=dtype.np_dtype).reshape(shape)


@st.composite
def graphs(draw):
    name = draw(st.sampled_from(["main", "f", "<lambda>", "my graph", "a.b_c"]))
    b = GraphBuilder(name)
    values = [b.add_input(TensorType(draw(st.sampled_from(ALL)), draw(shapes)))
              for _ in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(0, 12))):
        loc = draw(st.one_of(st.none(), st.builds(
            SourceLoc, st.text(string.printable + "é∑", max_size=12), st.integers(0, 10**6))))
        kind = draw(st.sampled_from(["unary", "binary", "constant", "cast", "reduce", "reshape",
                                     "transpose", "broadcast", "select"]))
        x = draw(st.sampled_from(values))
        try:
            with b.at(loc):
                if kind == "unary":
                    v = b.emit(draw(st.sampled_from(UNARY)), x)
                elif kind == "binary":
                    v = b.emit(draw(st.sampled_from(BINARY)), x, draw(st.sampled_from(values)))
                elif kind == "constant":
                    dt = draw(st.sampled_from(ALL))
                    shape = draw(st.sampled_from([(), (3,), (2, 2), (5, 4)]))  # (5,4) prints as base64
                    v = b.constant(array_for(draw, dt, shape))
                elif kind == "cast":
                    v = b.emit("cast", x, dtype=draw(st.sampled_from(ALL)))
                elif kind == "reduce":
                    axes = tuple(sorted(draw(st.sets(st.integers(0, max(x.ndim - 1, 0)), max_size=x.ndim))))
                    v = b.emit(draw(st.sampled_from(["reduce_sum", "reduce_max"])), x, axes=axes)
                elif kind == "reshape":
                    v = b.reshape(x, shape=(x.type.size,))
                elif kind == "transpose":
                    v = b.transpose(x, perm=tuple(draw(st.permutations(range(x.ndim)))))
                elif kind == "broadcast":
                    v = b.broadcast_in_dim(x, shape=(2,) + x.shape, dims=tuple(range(1, x.ndim + 1)))
                else:
                    p = b.emit("gt", x, x)
                    v = b.select(p, x, draw(st.sampled_from(values)))
        except (ShapeError, DTypeError):
            continue
        values.append(v)
    outs = draw(st.lists(st.sampled_from(values), min_size=0, max_size=3))
    return b.finish(outs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_print_parse_round_trip_is_exact(g):
    verify(g)
    text = print_graph(g)
    g2 = verify(parse(text))
    assert print_graph(g2) == text
    assert g2 == g


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_parser_raises_only_parse_error_on_random_text(text):
    try:
        parse(text)
    except ParseError:
        pass


SAMPLE = """graph f(%0: f32[2,3], %1: f32[3]) -> (f32[2,3], f32[]) {
  %2: f32[2,3] = broadcast_in_dim(%1) {dims=[1], shape=[2, 3]} loc("model.py":4)
  %3: f32[2,3] = mul(%0, %2) loc("model.py":4)
  %4: f32[] = constant() {value=dense<f32[]>[0.5]}
  %5: f32[] = reduce_sum(%3) {axes=[0, 1]}
  %6: f32[] = mul(%5, %4)  # a comment the parser skips
  return %3, %6
}
"""


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SAMPLE) - 1), st.integers(1, 20), st.text(alphabet=string.printable, max_size=5))
def test_parser_raises_only_parse_error_on_mutated_text(start, length, junk):
    mutated = SAMPLE[:start] + junk + SAMPLE[start + length:]
    try:
        verify(parse(mutated))
    except ParseError:
        pass


@pytest.mark.parametrize("cut", range(0, len(SAMPLE), 7))
def test_truncated_text_is_a_parse_error(cut):
    with pytest.raises(ParseError):
        parse(SAMPLE[:cut])


def test_sample_parses_runs_and_keeps_comments_out_of_the_canonical_text():
    g = verify(parse(SAMPLE))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.array([1, 2, 3], np.float32)
    prod, half_sum = interpret(g, [x, y])
    np.testing.assert_array_equal(prod, x * y)
    assert half_sum == np.float32(0.5) * (x * y).sum()
    assert "#" not in print_graph(g)
    assert g.nodes[1].loc == SourceLoc("model.py", 4)


@pytest.mark.parametrize("text, line, column, words", [
    ("graph f(%0: f32[2]) -> (f32[2]) {\n  %1: f32[2] = exp(%9)\n  return %1\n}", 2, 20, "before it is defined"),
    ("graph f(%0: f32[2]) -> (f32[2]) {\n  %1: f32[3] = exp(%0)\n  return %1\n}", 2, 3, "declared f32[3]"),
    ("graph f(%0: f32[2]) -> (f32[2]) {\n  %1: f32[2] = frob(%0)\n  return %1\n}", 2, 16, "unknown op"),
    ("graph f(%0: q7[2]) -> () {\n  return\n}", 1, 13, "unknown dtype"),
    ("graph f(%0: f32[2]) -> (f32[2]) {\n  %0: f32[2] = exp(%0)\n  return %0\n}", 2, 3, "defined twice"),
    ("graph f(%0: f32[2]) -> (f64[2]) {\n  return %0\n}", 2, 3, "declared result types"),
    ("graph f(%0: i32[2]) -> (i32[2]) {\n  %1: i32[2] = exp(%0)\n  return %1\n}", 2, 3, "float"),
])
def test_parse_errors_name_line_and_column(text, line, column, words):
    with pytest.raises(ParseError) as e:
        parse(text)
    assert (e.value.line, e.value.column) == (line, column)
    assert words in str(e.value)


def test_large_and_special_constants_round_trip_bit_exactly():
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    arrays = [rng.standard_normal((7, 5)).astype(np.float32), np.array([np.nan, -np.inf, -0.0, 1e-45], np.float32),
              rng.integers(-2**62, 2**62, (20,), dtype=np.int64), np.array(np.pi), rng.random((4, 5)) > 0.5,
              rng.standard_normal(9).astype(np.float16)]
    outs = [b.constant(a) for a in arrays]
    g = parse(print_graph(b.finish(outs)))
    for a, got in zip(arrays, interpret(g, [])):
        assert got.dtype == a.dtype
        assert got.tobytes() == a.tobytes()


def test_the_example_in_docs_ir_md_parses_and_is_canonical():
    import pathlib
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "ir.md").read_text()
    text = doc.split("```\ngraph ", 1)[1].split("```", 1)[0]
    text = "graph " + text
    g = verify(parse(text))
    assert print_graph(g) == text
    w, x = np.ones((4, 3), np.float32), np.ones((8, 4), np.float32)
    np.testing.assert_allclose(interpret(g, [w, x])[0], np.tanh(x @ w + 1.0), rtol=1e-6)

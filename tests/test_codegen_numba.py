"""Differential tests of the numba backend: every primitive, compiled, against the reference interpreter.

Each case builds a small graph with GraphBuilder, compiles it with ``compile_graph(backend="numba")`` and
compares with ``interpret`` (the numpy references). Tolerances: float32 rtol 2e-5 / atol 1e-6 (the kernels
compute transcendentals in double and round once, numpy in float32: both are within a few ulp), float64
rtol 1e-12, integers, bools and random bits exact. Elementwise primitives run in fused kernels, movement
ops as index maps inside a kernel (followed by ``neg`` so there is a kernel), the rest as library or
numpy steps. A registry test makes sure no primitive is left without a case.
"""
from __future__ import annotations

import numpy as np
import pytest

from kernelflow.ir import GraphBuilder, TensorType, as_dtype, float32, float64, int32, int64, uint32
from kernelflow.ir.interpret import interpret
from kernelflow.ir.primitive import all_primitives
from kernelflow.runtime import compile_graph

TOL = {"f32": dict(rtol=2e-5, atol=1e-6), "f64": dict(rtol=1e-12, atol=1e-13)}


def build(inputs, fn, name="case"):
    b = GraphBuilder(name)
    vals = [b.add_input(TensorType(as_dtype(d), tuple(s))) for s, d in inputs]
    outs = fn(b, *vals)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def check(graph, args, **tol):
    exe = compile_graph(graph)
    got = exe(*args)
    want = interpret(graph, args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if w.dtype.kind == "f":
            t = tol or TOL[as_dtype(w.dtype).name if as_dtype(w.dtype).name in TOL else "f32"]
            np.testing.assert_allclose(g, w, **t)
        else:
            np.testing.assert_array_equal(g, w)
    return exe


def rand(shape, dtype=np.float32, lo=-2.0, hi=2.0, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.uniform(lo, hi, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(int(lo), int(hi), shape).astype(dtype)


# -- elementwise --------------------------------------------------------------------------------
UNARY_FLOAT = ["neg", "exp", "log", "log1p", "expm1", "tanh", "logistic", "sqrt", "rsqrt", "abs", "sign",
               "sin", "cos", "floor", "erf"]
POSITIVE_ONLY = {"log", "sqrt", "rsqrt"}
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_unary_float_ops_in_one_multi_output_kernel(dtype):
    def fn(b, x, pos):
        return [b.emit(op, pos if op in POSITIVE_ONLY else x) for op in UNARY_FLOAT]
    g = build([((5, 7), dtype), ((5, 7), dtype)], fn)
    x = rand((5, 7), as_dtype(dtype).np_dtype, -3, 3)
    x[0, :3] = [0.0, -0.0, 2.5]  # sign of zeros, floor of exact values
    pos = rand((5, 7), as_dtype(dtype).np_dtype, 0.05, 4, seed=1)
    exe = check(g, [x, pos])
    assert len(exe.kernels) == 2  # one kernel per input read (siblings reading the same buffer)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_binary_compare_select_cast(dtype):
    def fn(b, x, y):
        outs = [b.emit(op, x, y) for op in BINARY if op != "pow"]
        outs.append(b.pow(b.abs(x), y))
        outs += [b.emit(op, x, y) for op in COMPARE]
        outs.append(b.select(b.lt(x, y), x, y))
        outs += [b.cast(x, "i32"), b.cast(x, "bool"), b.cast(x, "f64" if dtype == "f32" else "f32")]
        return outs
    g = build([((4, 6), dtype), ((4, 6), dtype)], fn)
    x, y = rand((4, 6), as_dtype(dtype).np_dtype, -3, 3), rand((4, 6), as_dtype(dtype).np_dtype, -3, 3, 1)
    x[0, 0] = y[0, 0]  # ties for compares and maximum
    check(g, [x, y])


def test_ieee_special_values():
    """NaN propagates through maximum/minimum and reductions; x/0 is inf; sign(nan) is nan."""
    def fn(b, x, y):
        return [b.maximum(x, y), b.minimum(x, y), b.div(x, y), b.sign(x),
                b.reduce_max(x, axes=(0,)), b.reduce_min(y, axes=(0,))]
    g = build([((6,), "f32"), ((6,), "f32")], fn)
    x = np.array([np.nan, 1.0, -np.inf, 0.0, 2.0, 1.0], np.float32)
    y = np.array([1.0, np.nan, 0.0, 0.0, np.inf, -0.0], np.float32)
    check(g, [x, y], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_row_max_min_reductions_propagate_nan(dtype):
    """Max/min reductions accumulate with llvm.maximum/minimum (vectorized): rows long enough to run
    the vector loop and its remainder, a NaN in a lane, in the remainder, first or last; -inf and
    +inf rows; checked against numpy's max/min (an oracle independent of the interpreter)."""
    x = rand((9, 1000 + 13), as_dtype(dtype).np_dtype, -50, 50)
    x[1, 7] = x[2, -1] = x[3, 0] = x[4, 500] = np.nan
    x[5] = -np.inf
    x[6] = np.inf
    x[7, ::3] = np.nan
    g = build([(x.shape, dtype)], lambda b, v: [b.reduce_max(v, axes=(1,)), b.reduce_min(v, axes=(1,)),
                                                  b.reduce_max(v, axes=(0,))])
    got = compile_graph(g)(x)
    for out, want in zip(got, [x.max(axis=1), x.min(axis=1), x.max(axis=0)]):
        np.testing.assert_array_equal(out, want)


def _row(b, r, shape):
    """A per-row value (rows,) broadcast along the last dim of ``shape``."""
    return b.emit("broadcast_in_dim", r, shape=shape, dims=(0,))


def _softmax_parts(b, x):
    e = b.exp(b.sub(x, _row(b, b.reduce_max(x, axes=(1,)), x.shape)))
    return e, b.div(e, _row(b, b.reduce_sum(e, axes=(1,)), x.shape))


def _np_softmax(x):
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    return e, e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("shape", [(7, 300), (400, 1100)])  # serial; parallel (> PARALLEL_MIN_WORK)
def test_row_kernel_stash_in_output_and_scratch(shape):
    """The exps of a softmax are stashed once: in the output row when the last phase stores a whole
    row (also when the output takes the input's memory in place), in row scratch otherwise (the
    stash feeds a reduction only, or a store that is not the last phase). Oracle: float64 numpy."""
    x = rand(shape, lo=-8, hi=8)

    def in_place(b, x):  # x * 2 is an intermediate: the softmax may overwrite it
        return [_softmax_parts(b, b.mul(x, b.full_like(x, 2.0)))[1]]
    g = build([(shape, "f32")], in_place)
    exe = compile_graph(g)
    src = exe.ir("kernels")
    assert "stash %" in src and "np.empty" not in src.split("def k")[-1]  # the row kernel borrows its output
    np.testing.assert_allclose(exe(x)[0], _np_softmax(2 * x)[1], rtol=1e-5, atol=1e-7)

    def scratch(b, x):
        e, sm = _softmax_parts(b, x)
        r2 = b.reduce_sum(b.mul(sm, sm), axes=(1,))          # phase 2: needs the exps again
        later = b.div(e, _row(b, r2, x.shape))              # phase 3: and again, after sm's store
        return [sm, b.reduce_sum(b.mul(e, sm), axes=(1,)), later]
    e, sm = _np_softmax(x)
    r2 = (sm * sm).sum(axis=1, keepdims=True)
    exe = compile_graph(build([(shape, "f32")], scratch))
    assert "# stash %" in exe.ir("kernels")  # the last phase's store (``later``) lends its row
    for out, want in zip(exe(x), [sm, (e * sm).sum(axis=1), e / r2]):
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)
    exe = compile_graph(build([(shape, "f32")], lambda b, x: scratch(b, x)[1]))  # no row store at all
    assert "row scratch" in exe.ir("kernels")
    np.testing.assert_allclose(exe(x)[0], (e * sm).sum(axis=1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["f32", "f64", "i32"])
@pytest.mark.parametrize("rows", [37, 9001])
def test_column_reductions_loop_rows_inside(dtype, rows):
    """Reductions over the leading axis (bias gradients) run with the rows in the inner loop (unit
    stride) and one accumulator per column; a row-level epilogue (the mean) and a per-column factor;
    NaN in one column propagates through max. Oracle: numpy over axis 0. 9001 rows make the kernel
    parallel: each thread then owns a block of columns (129 columns do not split evenly)."""
    npd = as_dtype(dtype).np_dtype
    x = rand((rows, 129), npd, -50, 50)
    w = rand((129,), npd, 1, 5, seed=1)
    if dtype != "i32":
        x[5, 3] = np.nan

    def fn(b, x, w):
        scaled = b.mul(x, b.emit("broadcast_in_dim", w, shape=x.shape, dims=(1,)))
        total = b.reduce_sum(scaled, axes=(0,))
        return [total, b.div(total, b.full_like(total, rows)), b.reduce_max(x, axes=(0,)),
                b.reduce_min(x, axes=(0,))]
    exe = compile_graph(build([(x.shape, dtype), (w.shape, dtype)], fn))
    assert "column reduction" in exe.ir("kernels")
    assert ("prange" in exe.ir("kernels")) == (rows > 1000)
    got = exe(x, w)
    total = (x * w).sum(axis=0, dtype=np.float64)
    wants = [total, total / rows if dtype != "i32" else (x * w).sum(axis=0) // rows, x.max(axis=0),
             x.min(axis=0)]
    for out, want in zip(got, wants):
        if dtype == "i32":
            np.testing.assert_array_equal(out, want)
        else:
            # a sum of `rows` terms in order: rounding grows with the count (bound: rows * eps * max term)
            bound = np.finfo(npd).eps * rows * np.nanmax(np.abs(x * w))
            np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == "f32" else 1e-12, atol=bound)


@pytest.mark.parametrize("dtype", ["i32", "u8"])
def test_integer_ops(dtype):
    def fn(b, x, y):
        outs = [b.emit(op, x, y) for op in BINARY if op != "pow"]
        outs += [b.abs(x), b.sign(x), b.neg(x), b.cast(x, "f32"), b.cast(x, "bool"),
                 b.select(b.ge(x, y), x, y), b.reduce_sum(x, axes=(1,)), b.reduce_max(y, axes=(0,))]
        return outs
    g = build([((3, 8), dtype), ((3, 8), dtype)], fn)
    lo = -100 if dtype == "i32" else 0
    x, y = rand((3, 8), as_dtype(dtype).np_dtype, lo, 100), rand((3, 8), as_dtype(dtype).np_dtype, lo, 5, 1)
    y[0, :3] = 0  # integer division by zero is 0, as in numpy
    check(g, [x, y])


# -- every primitive, one small case each --------------------------------------------------------
def _movement(op, **attrs):
    return lambda b, x: b.neg(b.emit(op, x, **attrs))


W = (3, 2, 3, 3)
CONV = dict(stride=(1, 1), padding=(1, 0, 1, 1), dilation=(1, 1), groups=1)
POOL = dict(window=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0))
CASES = {
    # movement: folded into the kernel's index maps
    "broadcast_in_dim": ([((4, 1), "f32")], lambda b, x: b.neg(b.broadcast_in_dim(x, shape=(2, 4, 5), dims=(1, 2)))),
    "reshape": ([((4, 6), "f32")], _movement("reshape", shape=(2, 3, 4))),
    "transpose": ([((3, 4, 5), "f32")], _movement("transpose", perm=(2, 0, 1))),
    "slice": ([((7, 9), "f32")], _movement("slice", start=(1, 2), limit=(7, 9), stride=(2, 3))),
    "rev": ([((4, 5), "f32")], _movement("rev", axes=(1, 0))),
    "pad": ([((3, 4), "f32")], _movement("pad", low=(1, 0), high=(0, 2), interior=(1, 1), value=0.5)),
    "concatenate": ([((2, 3), "f32"), ((2, 4), "f32")], lambda b, x, y: b.neg(b.concatenate(x, y, axis=1))),
    # reductions
    "reduce_sum": ([((4, 5, 6), "f32")], lambda b, x: [b.reduce_sum(x, axes=(1,)), b.reduce_sum(x, axes=(0, 2))]),
    "reduce_max": ([((4, 5, 6), "f32")], lambda b, x: [b.reduce_max(x, axes=(2,)), b.reduce_max(x, axes=(0, 1, 2))]),
    "reduce_min": ([((4, 5, 6), "f32")], lambda b, x: [b.reduce_min(x, axes=(0,))]),
    "argmax": ([((4, 5), "f32")], lambda b, x: [b.argmax(x, axis=1, dtype="i32"), b.argmax(x, axis=0, dtype="i64")]),
    # indexing
    "gather": ([((4, 5), "f32"), ((2, 3), "i32")], lambda b, x, i: b.neg(b.gather(x, i, axis=1))),
    "scatter_add": ([((4, 5), "f32"), ((3,), "i32"), ((4, 3), "f32")],
                    lambda b, x, i, u: b.neg(b.scatter_add(x, i, u, axis=1))),
    # sources
    "constant": ([((2, 3), "f32")], lambda b, x: b.add(x, b.constant(np.arange(6, dtype=np.float32).reshape(2, 3)))),
    "iota": ([((3, 4), "f32")], lambda b, x: [b.add(x, b.iota(shape=(3, 4), dimension=1, dtype="f32")),
                                              b.iota(shape=(3, 4), dimension=0, dtype="i32")]),
    "random_bits": ([((2,), "u32")], lambda b, k: [b.random_bits(k, shape=(3, 5)),
                                                   b.cast(b.random_bits(k, shape=(4,)), "f32")]),
    # contraction
    "dot_general": ([((2, 4, 5), "f32"), ((2, 5, 3), "f32"), ((5, 4), "f32")],
                    lambda b, x, y, z: [b.dot_general(x, y, contract=((2,), (1,)), batch=((0,), (0,))),
                                        b.dot_general(z, y, contract=((0,), (1,)), batch=((), ())),
                                        b.dot_general(x, z, contract=((1, 2), (1, 0)), batch=((), ()))]),
    # window
    # (followed by a kernel, so their results feed kernels, not just the caller)
    "conv2d": ([((2, 2, 6, 6), "f32"), (W, "f32")], lambda b, x, w: b.neg(b.conv2d(x, w, **CONV))),
    "conv2d_input_grad": ([((2, 3, 5, 6), "f32"), (W, "f32")],
                          lambda b, g, w: b.exp(b.conv2d_input_grad(g, w, input_shape=(2, 2, 6, 6), **CONV))),
    "conv2d_weight_grad": ([((2, 2, 6, 6), "f32"), ((2, 3, 5, 6), "f32")],
                           lambda b, x, g: b.conv2d_weight_grad(x, g, weight_shape=W, **CONV)),
    "reduce_window_max": ([((1, 2, 4, 4), "f32")], lambda b, x: b.neg(b.reduce_window_max(x, **POOL))),
    "reduce_window_sum": ([((1, 2, 4, 4), "f32")], lambda b, x: b.reduce_window_sum(x, **POOL)),
    "select_and_scatter_add": ([((1, 2, 4, 4), "f32"), ((1, 2, 2, 2), "f32")],
                               lambda b, x, g: b.select_and_scatter_add(x, g, **POOL)),
    "select_and_gather": ([((1, 2, 4, 4), "f32"), ((1, 2, 4, 4), "f32")],
                          lambda b, x, t: b.abs(b.select_and_gather(x, t, **POOL))),
    "reduce_window_sum_transpose": ([((1, 2, 2, 2), "f32")],
                                    lambda b, g: b.reduce_window_sum_transpose(g, input_shape=(1, 2, 4, 4), **POOL)),
}
ELEMENTWISE_COVERED = set(UNARY_FLOAT) | set(BINARY) | set(COMPARE) | {"select", "cast"}


def _args_for(inputs, seed=0):
    out = []
    for i, (shape, d) in enumerate(inputs):
        np_dtype = as_dtype(d).np_dtype
        if d == "u32":
            out.append(np.array([7, 42], np.uint32))
        elif d in ("i32", "i64"):
            out.append(rand(shape, np_dtype, -3, 3, seed + i))
        else:
            out.append(rand(shape, np_dtype, -2, 2, seed + i))
    return out


@pytest.mark.parametrize("op", sorted(CASES))
def test_primitive(op):
    inputs, fn = CASES[op]
    g = build(inputs, fn, name=op)
    check(g, _args_for(inputs))


def test_every_primitive_has_a_case():
    missing = set(all_primitives()) - set(CASES) - ELEMENTWISE_COVERED
    assert not missing, f"primitives without a numba differential case: {sorted(missing)}"


def test_float64_reductions_and_dot():
    def fn(b, x, y):
        return [b.reduce_sum(b.exp(x), axes=(1,)),
                b.dot_general(x, y, contract=((1,), (0,)), batch=((), ())),
                b.reduce_max(x, axes=(0,))]
    g = build([((6, 9), "f64"), ((9, 4), "f64")], fn)
    check(g, [rand((6, 9), np.float64), rand((9, 4), np.float64, seed=2)])


def test_movement_chain_folds_into_one_kernel():
    """reshape -> transpose -> slice -> rev -> broadcast, all index maps of one kernel."""
    def fn(b, x, y):
        f = b.reshape(x, shape=(6, 4))
        t = b.transpose(f, perm=(1, 0))                               # (4, 6)
        s = b.slice(t, start=(0, 1), limit=(4, 6), stride=(2, 2))     # (2, 3)
        r = b.rev(s, axes=(0, 1))
        bb = b.broadcast_in_dim(r, shape=(2, 5, 3), dims=(0, 2))
        return b.mul(bb, y)
    g = build([((4, 6), "f32"), ((2, 5, 3), "f32")], fn)
    exe = check(g, [rand((4, 6)), rand((2, 5, 3), seed=1)])
    assert len(exe.kernels) == 1


def test_reshape_that_merges_permuted_dims_still_runs():
    """A reshape merging dims that a transpose permuted is no affine index map: it is materialised."""
    def fn(b, x):
        return b.exp(b.reshape(b.transpose(x, perm=(1, 0)), shape=(30,)))
    g = build([((5, 6), "f32")], fn)
    exe = check(g, [rand((5, 6))])
    assert "not an index map" in exe.explain()


def test_scalar_and_zero_size_values():
    def fn(b, s, x, e):
        return [b.mul(s, s), b.reduce_sum(x, axes=(0, 1)), b.exp(e), b.reduce_sum(e, axes=(0,))]
    g = build([((), "f32"), ((3, 4), "f32"), ((0, 3), "f32")], fn)
    check(g, [np.float32(1.5).reshape(()), rand((3, 4)), np.zeros((0, 3), np.float32)])


# -- window loop kernels (kernelflow/codegen/numba/window.py) against the numpy references -------------
CONV_CASES = [  # (x shape, w shape, attrs): padding, stride, dilation and groups, each on its own and mixed
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)),
    ((2, 1, 10, 10), (6, 1, 5, 5), dict(stride=(1, 1), padding=(2, 2, 2, 2), dilation=(1, 1), groups=1)),
    ((1, 4, 11, 9), (6, 2, 3, 2), dict(stride=(2, 3), padding=(1, 2, 0, 1), dilation=(2, 1), groups=2)),
    ((3, 2, 7, 7), (2, 2, 2, 3), dict(stride=(3, 2), padding=(2, 0, 1, 3), dilation=(1, 2), groups=1)),
]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
def test_conv_lowering_matches_interpreter(xs, ws, attrs, dtype):
    """conv2d (im2col + GEMM), its input gradient (GEMM + col2im) and weight gradient (one GEMM with
    the batch in the contraction), with a bias/relu consumer kernel, against the einsum references."""
    def fn(b, x, w):
        y = b.conv2d(x, w, **attrs)
        dx = b.conv2d_input_grad(y, w, input_shape=xs, **attrs)
        dw = b.conv2d_weight_grad(x, y, weight_shape=ws, **attrs)
        return [b.maximum(y, b.zeros_like(y)), dx, b.neg(dw)]
    g = build([(xs, dtype), (ws, dtype)], fn)
    exe = check(g, [rand(xs, as_dtype(dtype).np_dtype), rand(ws, as_dtype(dtype).np_dtype, seed=1)],
                **({"rtol": 1e-4, "atol": 1e-5} if dtype == "f32" else {}))
    assert "_win_conv2d" in exe.source and "_ref_conv2d" not in exe.source


POOL_CASES = [
    dict(window=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0)),
    dict(window=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)),     # overlapping windows
    dict(window=(2, 3), stride=(1, 2), padding=(1, 0, 2, 1)),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("dtype", ["f32", "f64", "i32"])
def test_pool_kernels_match_interpreter(attrs, dtype):
    """Max/sum pooling and their gradients, with ties (small integers) so the FIRST maximum matters."""
    xs = (2, 3, 7, 8)
    x = np.random.default_rng(0).integers(-3, 3, xs).astype(as_dtype(dtype).np_dtype)
    ps = interpret(build([(xs, dtype)], lambda b, x: b.reduce_window_max(x, **attrs)), [x])[0].shape
    gp = np.random.default_rng(1).integers(-4, 5, ps).astype(x.dtype)
    t = np.random.default_rng(2).integers(-4, 5, xs).astype(x.dtype)

    def fn(b, x, g, t):
        return [b.reduce_window_max(x, **attrs), b.select_and_scatter_add(x, g, **attrs),
                b.select_and_gather(x, t, **attrs), b.reduce_window_sum(x, **attrs),
                b.reduce_window_sum_transpose(g, input_shape=xs, **attrs)]
    exe = check(build([(xs, dtype), (ps, dtype), (xs, dtype)], fn), [x, gp, t])
    assert "_ref_" not in exe.source


def test_max_pool_nan_and_inf_follow_the_reference():
    """A NaN is the maximum of its window (and takes the gradient); -inf windows stay -inf."""
    attrs = dict(window=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0))
    x = rand((1, 2, 4, 4))
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 2:, 2:] = -np.inf
    g = rand((1, 2, 2, 2), seed=1)

    def fn(b, x, g):
        return [b.reduce_window_max(x, **attrs), b.select_and_scatter_add(x, g, **attrs)]
    check(build([((1, 2, 4, 4), "f32"), ((1, 2, 2, 2), "f32")], fn), [x, g])


# -- vectorizable float32 transcendentals (helpers.kf_exp ...) against numpy's validation tables ------
UMATH_DATA = __import__("pathlib").Path(np.__file__).parent / "_core" / "tests" / "data"
APPROX = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "tanh": "tanh", "logistic": None}
# float32-arithmetic helpers: max error in ulp against the float64 value (exp 0.77 on 25M inputs; tanh
# 0.93 and logistic 0.80 measured on every float32; see helpers.py)
F32_ARITHMETIC_ULP = {"exp": 1.0, "tanh": 1.0, "logistic": 1.0}


def _run_unary(op, x):
    g = build([(x.shape, "f32")], lambda b, v: b.emit(op, v), name=f"approx_{op}")
    return compile_graph(g)(x)[0]


@pytest.mark.parametrize("op", sorted(APPROX))
def test_f32_transcendentals_within_one_ulp(op):
    """Max error 1 ulp against numpy's validation tables (correctly rounded values; the logistic has
    no table), and correctly rounded against a float64 oracle on random bit patterns and [-20, 20]
    (exp, tanh and logistic, computed in float32: within F32_ARITHMETIC_ULP of the float64 value)."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        rng.uniform(-20, 20, 50_000).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 88.7, -103.9], np.float32)])
    table = APPROX[op]
    if table is not None:
        path = UMATH_DATA / f"umath-validation-set-{table}.csv"
        if not path.exists():
            pytest.skip(f"{path.name} not shipped in this numpy wheel (the float64 oracle below still runs)")
        rows = [line.split(",") for line in path.read_text().splitlines() if line.startswith("np.float32")]
        tx = np.array([int(r[1], 16) for r in rows], np.uint32).view(np.float32)
        want = np.array([int(r[2], 16) for r in rows], np.uint32).view(np.float32)
        got = _run_unary(op, tx)
        finite = np.isfinite(want)
        assert np.array_equal(got[~finite], want[~finite], equal_nan=True)
        err = np.abs(got[finite].astype(np.float64) - want[finite]) / np.spacing(np.abs(want[finite]))
        assert err.max() <= 1.0, (op, tx[finite][err.argmax()])
    oracle = {"exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh,
              "logistic": lambda d: 1 / (1 + np.exp(-d))}[op]
    with np.errstate(all="ignore"):
        want = oracle(x.astype(np.float64)).astype(np.float32)
    got = _run_unary(op, x)
    if op in F32_ARITHMETIC_ULP:  # computed in float32 (helpers._exp_f32 ...): not correctly rounded,
        with np.errstate(all="ignore"):  # within a documented bound of the float64 value
            exact = oracle(x.astype(np.float64))
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite])
        err = np.abs(got[finite] - exact[finite]) / np.spacing(np.abs(want[finite]))
        assert err.max() <= F32_ARITHMETIC_ULP[op], (op, x[finite][err.argmax()], err.max())
        assert np.array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0])) or op != "tanh"  # odd: keeps -0.0
        return
    np.testing.assert_array_equal(got, want)  # NaN positions equal too; -0.0 == 0.0 here, checked below
    assert np.array_equal(np.signbit(got[x == 0]), np.signbit(want[x == 0])) or op in ("exp", "log", "logistic")

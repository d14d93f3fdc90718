"""Window primitives (conv2d, pooling and their transposes): shape rules, references and gradient rules
against naive index loops (always) and torch.nn.functional / torch.autograd (when torch is installed)."""
import numpy as np
import pytest

from kernelflow.ir import DTypeError, GraphBuilder, ShapeError, TensorType, as_dtype, get_primitive
from kernelflow.ir.interpret import interpret

from gradcheck import exact_linear_vjp

RNG = np.random.default_rng(1)


def random(shape, dtype="float64"):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(-5, 6, size=shape).astype(dtype)


def tt(shape, dtype="f32"):
    return TensorType(as_dtype(dtype), tuple(shape))


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-11)


# -- naive oracles: explicit index loops -----------------------------------------------------------
def out_size(size, k, s, lo, hi, d=1):
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def conv_terms(x_shape, w_shape, stride, padding, dilation, groups):
    """Every (output index, input index, weight index) triple of a conv2d sum, padding left out."""
    n_, c_, h_, w_ = x_shape
    o_, cg_, kh, kw = w_shape
    oh_ = out_size(h_, kh, stride[0], padding[0], padding[1], dilation[0])
    ow_ = out_size(w_, kw, stride[1], padding[2], padding[3], dilation[1])
    og_ = o_ // groups
    for n in range(n_):
        for o in range(o_):
            for oh in range(oh_):
                for ow in range(ow_):
                    for cg in range(cg_):
                        for i in range(kh):
                            for j in range(kw):
                                h = oh * stride[0] - padding[0] + i * dilation[0]
                                w = ow * stride[1] - padding[2] + j * dilation[1]
                                if 0 <= h < h_ and 0 <= w < w_:
                                    c = (o // og_) * cg_ + cg
                                    yield (n, o, oh, ow), (n, c, h, w), (o, cg, i, j)


def conv_out_shape(x_shape, w_shape, stride, padding, dilation):
    return (x_shape[0], w_shape[0],
            out_size(x_shape[2], w_shape[2], stride[0], padding[0], padding[1], dilation[0]),
            out_size(x_shape[3], w_shape[3], stride[1], padding[2], padding[3], dilation[1]))


def naive_conv2d(x, w, stride, padding, dilation, groups):
    out = np.zeros(conv_out_shape(x.shape, w.shape, stride, padding, dilation), dtype=x.dtype)
    for oi, xi, wi in conv_terms(x.shape, w.shape, stride, padding, dilation, groups):
        out[oi] += x[xi] * w[wi]
    return out


def naive_conv2d_input_grad(g, w, input_shape, stride, padding, dilation, groups):
    out = np.zeros(input_shape, dtype=g.dtype)
    for oi, xi, wi in conv_terms(input_shape, w.shape, stride, padding, dilation, groups):
        out[xi] += g[oi] * w[wi]
    return out


def naive_conv2d_weight_grad(x, g, weight_shape, stride, padding, dilation, groups):
    out = np.zeros(weight_shape, dtype=x.dtype)
    for oi, xi, wi in conv_terms(x.shape, weight_shape, stride, padding, dilation, groups):
        out[wi] += x[xi] * g[oi]
    return out


def pool_windows(x_shape, window, stride, padding):
    """For every output index, the in-range input indices of its window in row-major order."""
    n_, c_, h_, w_ = x_shape
    oh_ = out_size(h_, window[0], stride[0], padding[0], padding[1])
    ow_ = out_size(w_, window[1], stride[1], padding[2], padding[3])
    for n in range(n_):
        for c in range(c_):
            for oh in range(oh_):
                for ow in range(ow_):
                    positions = []
                    for i in range(window[0]):
                        for j in range(window[1]):
                            h, w = oh * stride[0] - padding[0] + i, ow * stride[1] - padding[2] + j
                            if 0 <= h < h_ and 0 <= w < w_:
                                positions.append((n, c, h, w))
                    yield (n, c, oh, ow), positions


def pooled_shape(x_shape, window, stride, padding):
    return (x_shape[0], x_shape[1], out_size(x_shape[2], window[0], stride[0], padding[0], padding[1]),
            out_size(x_shape[3], window[1], stride[1], padding[2], padding[3]))


def first_max(x, positions):
    best = positions[0]
    for p in positions[1:]:
        if x[p] > x[best]:  # strict: ties keep the earlier position
            best = p
    return best


def naive_max_pool(x, window, stride, padding):
    out = np.zeros(pooled_shape(x.shape, window, stride, padding), dtype=x.dtype)
    for oi, positions in pool_windows(x.shape, window, stride, padding):
        out[oi] = max(x[p] for p in positions)
    return out


def naive_select_and_scatter_add(x, g, window, stride, padding):
    out = np.zeros_like(x)
    for oi, positions in pool_windows(x.shape, window, stride, padding):
        out[first_max(x, positions)] += g[oi]
    return out


def naive_select_and_gather(x, t, window, stride, padding):
    out = np.zeros(pooled_shape(x.shape, window, stride, padding), dtype=x.dtype)
    for oi, positions in pool_windows(x.shape, window, stride, padding):
        out[oi] = t[first_max(x, positions)]
    return out


def naive_sum_pool(x, window, stride, padding):
    out = np.zeros(pooled_shape(x.shape, window, stride, padding), dtype=x.dtype)
    for oi, positions in pool_windows(x.shape, window, stride, padding):
        for p in positions:
            out[oi] += x[p]
    return out


def naive_sum_pool_transpose(g, window, stride, padding, input_shape):
    out = np.zeros(input_shape, dtype=g.dtype)
    for oi, positions in pool_windows(input_shape, window, stride, padding):
        for p in positions:
            out[p] += g[oi]
    return out


def grad_by_rule(op, arrays, cotangent, **attrs):
    """Apply ``op``'s gradient rule in a graph and run it with the reference interpreter;
    None entries stay None."""
    b = GraphBuilder()
    inputs = [b.add_input(TensorType(as_dtype(a.dtype), a.shape)) for a in arrays]
    node = b.emit_node(op, *inputs, **attrs)
    g = b.add_input(node.out.type)
    grads = get_primitive(op).grad(b, g, node)
    assert len(grads) == len(arrays)
    live = [v for v in grads if v is not None]
    for v, a in zip(grads, arrays):
        if v is not None:
            assert v.type == TensorType(as_dtype(a.dtype), a.shape)
    results = iter(interpret(b.finish(live), [*arrays, cotangent]))
    return [None if v is None else next(results) for v in grads]


def reference(op, *arrays, **attrs):
    """Run the reference of ``op`` and check it returns exactly the type its shape rule declares."""
    b = GraphBuilder()
    out = b.emit(op, *[b.add_input(TensorType(as_dtype(a.dtype), a.shape)) for a in arrays], **attrs)
    result = get_primitive(op).reference(*arrays, **attrs)
    assert result.shape == out.shape and result.dtype == out.dtype.np_dtype
    return result


# -- conv2d configurations: (x shape, w shape, stride, padding, dilation, groups) -------------------
CONVS = [
    ((1, 2, 5, 5), (3, 2, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 4, 6, 7), (6, 2, 2, 3), (2, 1), (1, 2, 0, 1), (1, 2), 2),     # everything at once
    ((1, 3, 5, 5), (3, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),     # depthwise
    ((1, 2, 5, 4), (4, 1, 2, 2), (2, 2), (0, 1, 1, 0), (1, 1), 2),     # depthwise, channel multiplier 2
    ((2, 3, 5, 5), (4, 3, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),     # 1x1 kernel, stride 2
    ((1, 1, 7, 6), (1, 1, 3, 2), (3, 2), (0, 1, 2, 0), (2, 1), 1),     # stride does not divide the extent
]
CONV_IDS = ["plain", "all", "depthwise", "depthwise_x2", "1x1_stride2", "ragged"]


def conv_attrs(stride, padding, dilation, groups):
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def torch_conv(torch, x, w, stride, padding, dilation, groups):
    top, bottom, left, right = padding
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (left, right, top, bottom)), w,
                                      stride=stride, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONVS, ids=CONV_IDS)
def test_conv2d_family_matches_naive_loops(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    a = conv_attrs(stride, padding, dilation, groups)
    x, w = random(x_shape, dtype), random(w_shape, dtype)
    y = reference("conv2d", x, w, **a)
    np.testing.assert_allclose(y, naive_conv2d(x, w, **a), **tol(dtype))
    g = random(y.shape, dtype)
    np.testing.assert_allclose(reference("conv2d_input_grad", g, w, input_shape=x_shape, **a),
                               naive_conv2d_input_grad(g, w, x_shape, **a), **tol(dtype))
    np.testing.assert_allclose(reference("conv2d_weight_grad", x, g, weight_shape=w_shape, **a),
                               naive_conv2d_weight_grad(x, g, w_shape, **a), **tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONVS, ids=CONV_IDS)
def test_conv2d_family_matches_torch(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    torch = pytest.importorskip("torch")
    a = conv_attrs(stride, padding, dilation, groups)
    x, w = random(x_shape, dtype), random(w_shape, dtype)
    xt, wt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
    yt = torch_conv(torch, xt, wt, stride, padding, dilation, groups)
    np.testing.assert_allclose(reference("conv2d", x, w, **a), yt.detach().numpy(), **tol(dtype))
    g = random(tuple(yt.shape), dtype)
    gx, gw = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(g))
    np.testing.assert_allclose(reference("conv2d_input_grad", g, w, input_shape=x_shape, **a),
                               gx.numpy(), **tol(dtype))
    np.testing.assert_allclose(reference("conv2d_weight_grad", x, g, weight_shape=w_shape, **a),
                               gw.numpy(), **tol(dtype))


def test_conv2d_symmetric_padding_matches_torch_padding_argument():
    torch = pytest.importorskip("torch")
    x, w = random((2, 4, 6, 5)), random((4, 2, 3, 3))
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=(2, 1),
                                          padding=(2, 1), dilation=(1, 2), groups=2).numpy()
    got = reference("conv2d", x, w, stride=(2, 1), padding=(2, 2, 1, 1), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# Small configurations for the gradient rules (the oracle loops over basis vectors).
GRAD_CONVS = [CONVS[0], ((1, 2, 4, 5), (2, 1, 2, 2), (2, 1), (1, 0, 0, 1), (1, 2), 2),
              ((1, 1, 5, 4), (1, 1, 2, 2), (3, 2), (0, 1, 1, 0), (2, 1), 1)]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", GRAD_CONVS)
def test_conv_grad_rules_match_exact_vjps(x_shape, w_shape, stride, padding, dilation, groups):
    """All three conv ops are bilinear, so <c, f(e_i, ...)> over basis vectors e_i is the exact VJP."""
    a = conv_attrs(stride, padding, dilation, groups)
    x, w = random(x_shape), random(w_shape)
    g = random(conv_out_shape(x_shape, w_shape, stride, padding, dilation))

    def conv(x_, w_):
        return naive_conv2d(x_, w_, **a)

    def input_grad(g_, w_):
        return naive_conv2d_input_grad(g_, w_, x_shape, **a)

    def weight_grad(x_, g_):
        return naive_conv2d_weight_grad(x_, g_, w_shape, **a)

    for op, f, arrays, extra in [("conv2d", conv, [x, w], {}),
                                 ("conv2d_input_grad", input_grad, [g, w], {"input_shape": x_shape}),
                                 ("conv2d_weight_grad", weight_grad, [x, g], {"weight_shape": w_shape})]:
        c = random(f(*arrays).shape)
        got = grad_by_rule(op, arrays, c, **extra, **a)
        for which in range(2):
            np.testing.assert_allclose(got[which], exact_linear_vjp(f, arrays, which, c),
                                       rtol=1e-11, atol=1e-11, err_msg=f"{op} operand {which}")


def test_conv_input_grad_second_order_matches_torch_double_backward():
    torch = pytest.importorskip("torch")
    x_shape, w_shape, stride, padding, dilation, groups = CONVS[1]
    a = conv_attrs(stride, padding, dilation, groups)
    x, w = torch.from_numpy(random(x_shape)), torch.from_numpy(random(w_shape)).requires_grad_()
    g = torch.from_numpy(random(conv_out_shape(x_shape, w_shape, stride, padding, dilation))).requires_grad_()
    x.requires_grad_()
    (gx,) = torch.autograd.grad(torch_conv(torch, x, w, stride, padding, dilation, groups), x, g,
                                create_graph=True)
    c = torch.from_numpy(random(x_shape))
    dg, dw = torch.autograd.grad(gx, (g, w), c)
    got = grad_by_rule("conv2d_input_grad", [g.detach().numpy(), w.detach().numpy()], c.numpy(),
                       input_shape=x_shape, **a)
    np.testing.assert_allclose(got[0], dg.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(got[1], dw.numpy(), rtol=1e-11, atol=1e-11)


# -- pooling configurations: (x shape, window, stride, padding) ------------------------------------
POOLS = [
    ((2, 3, 5, 5), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((1, 2, 6, 7), (3, 3), (1, 2), (1, 1, 1, 1)),
    ((1, 2, 5, 6), (3, 2), (2, 3), (2, 0, 1, 1)),    # asymmetric padding
    ((1, 1, 4, 4), (1, 1), (1, 1), (0, 0, 0, 0)),
    ((1, 2, 7, 5), (3, 2), (2, 1), (0, 2, 1, 0)),    # overlapping windows
]
POOL_IDS = ["2x2s2", "3x3pad1", "asym", "1x1", "overlap"]


def pool_attrs(window, stride, padding):
    return dict(window=window, stride=stride, padding=padding)


def ties(shape, dtype="float64"):
    """Few distinct values, so most windows hold several maxima."""
    return RNG.integers(0, 3, size=shape).astype(dtype)


@pytest.mark.parametrize("make", [random, ties], ids=["distinct", "ties"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS, ids=POOL_IDS)
def test_max_pool_family_matches_naive_loops(x_shape, window, stride, padding, dtype, make):
    a = pool_attrs(window, stride, padding)
    x = make(x_shape, dtype)
    y = reference("reduce_window_max", x, **a)
    np.testing.assert_array_equal(y, naive_max_pool(x, **a))
    g, t = random(y.shape, dtype), random(x_shape, dtype)
    np.testing.assert_allclose(reference("select_and_scatter_add", x, g, **a),
                               naive_select_and_scatter_add(x, g, **a), **tol(dtype))
    np.testing.assert_array_equal(reference("select_and_gather", x, t, **a), naive_select_and_gather(x, t, **a))


def test_max_pool_ties_route_to_first_maximum():
    x = np.zeros((1, 1, 2, 4))  # two 2x2 windows, all equal
    x[0, 0, 1, 2] = x[0, 0, 1, 3] = 1.0  # second window: tie in its bottom row
    g = np.array([[[[10.0, 20.0]]]])
    got = reference("select_and_scatter_add", x, g, window=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0))
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 10.0
    expected[0, 0, 1, 2] = 20.0
    np.testing.assert_array_equal(got, expected)


def test_max_pool_never_selects_padding():
    """Windows whose real elements are all -inf still route to a real element (as torch does)."""
    x = np.full((1, 1, 3, 3), -np.inf)
    a = pool_attrs((2, 2), (1, 1), (1, 1, 1, 1))
    g = random(pooled_shape(x.shape, **a))
    np.testing.assert_array_equal(reference("reduce_window_max", x, **a), np.full(g.shape, -np.inf))
    np.testing.assert_allclose(reference("select_and_scatter_add", x, g, **a),
                               naive_select_and_scatter_add(x, g, **a), rtol=1e-12)


@pytest.mark.parametrize("make", [random, ties], ids=["distinct", "ties"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS, ids=POOL_IDS)
def test_max_pool_family_matches_torch(x_shape, window, stride, padding, dtype, make):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    a = pool_attrs(window, stride, padding)
    x = make(x_shape, dtype)
    xt = torch.from_numpy(x).requires_grad_()
    top, bottom, left, right = padding
    padded = functional.pad(xt, (left, right, top, bottom), value=float("-inf"))
    yt = functional.max_pool2d(padded, window, stride)
    np.testing.assert_array_equal(reference("reduce_window_max", x, **a), yt.detach().numpy())
    g = random(tuple(yt.shape), dtype)
    (gx,) = torch.autograd.grad(yt, xt, torch.from_numpy(g))
    np.testing.assert_allclose(reference("select_and_scatter_add", x, g, **a), gx.numpy(), **tol(dtype))
    # select_and_gather(x, t) is the forward-mode derivative of max pooling along t
    t = random(x_shape, dtype)
    tangent = torch.func.jvp(lambda v: functional.max_pool2d(
        functional.pad(v, (left, right, top, bottom), value=float("-inf")), window, stride),
        (torch.from_numpy(x),), (torch.from_numpy(t),))[1]
    np.testing.assert_allclose(reference("select_and_gather", x, t, **a), tangent.numpy(), **tol(dtype))


def test_max_pool_symmetric_padding_matches_torch_padding_argument():
    torch = pytest.importorskip("torch")
    x = ties((2, 2, 6, 5))
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.nn.functional.max_pool2d(xt, (3, 2), (2, 1), padding=(1, 1))
    a = pool_attrs((3, 2), (2, 1), (1, 1, 1, 1))
    np.testing.assert_array_equal(reference("reduce_window_max", x, **a), yt.detach().numpy())
    g = random(tuple(yt.shape))
    (gx,) = torch.autograd.grad(yt, xt, torch.from_numpy(g))
    np.testing.assert_allclose(reference("select_and_scatter_add", x, g, **a), gx.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS, ids=POOL_IDS)
def test_sum_pool_family_matches_naive_loops(x_shape, window, stride, padding, dtype):
    a = pool_attrs(window, stride, padding)
    x = random(x_shape, dtype)
    y = reference("reduce_window_sum", x, **a)
    np.testing.assert_allclose(y, naive_sum_pool(x, **a), **tol(dtype))
    g = random(y.shape, dtype)
    np.testing.assert_allclose(reference("reduce_window_sum_transpose", g, input_shape=x_shape, **a),
                               naive_sum_pool_transpose(g, input_shape=x_shape, **a), **tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS, ids=POOL_IDS)
def test_sum_pool_family_matches_torch_avg_pool(x_shape, window, stride, padding, dtype):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    a = pool_attrs(window, stride, padding)
    x = random(x_shape, dtype)
    xt = torch.from_numpy(x).requires_grad_()
    top, bottom, left, right = padding
    yt = functional.avg_pool2d(functional.pad(xt, (left, right, top, bottom)), window, stride) \
        * (window[0] * window[1])
    np.testing.assert_allclose(reference("reduce_window_sum", x, **a), yt.detach().numpy(), **tol(dtype))
    g = random(tuple(yt.shape), dtype)
    (gx,) = torch.autograd.grad(yt, xt, torch.from_numpy(g))
    np.testing.assert_allclose(reference("reduce_window_sum_transpose", g, input_shape=x_shape, **a),
                               gx.numpy(), **tol(dtype))


def test_sum_pool_matches_torch_avg_pool_count_include_pad():
    torch = pytest.importorskip("torch")
    x = random((2, 3, 5, 6))
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), (3, 2), (2, 2), padding=(1, 1),
                                              count_include_pad=True).numpy() * 6
    got = reference("reduce_window_sum", x, window=(3, 2), stride=(2, 2), padding=(1, 1, 1, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS[1:3], ids=POOL_IDS[1:3])
def test_pool_grad_rules_match_exact_vjps(x_shape, window, stride, padding):
    a = pool_attrs(window, stride, padding)
    x = ties(x_shape)
    y_shape = pooled_shape(x_shape, **a)
    g, t = random(y_shape), random(x_shape)

    # reduce_window_max: piecewise linear, the rule is the first-maximum selection
    (dx,) = grad_by_rule("reduce_window_max", [x], g, **a)
    np.testing.assert_allclose(dx, naive_select_and_scatter_add(x, g, **a), rtol=1e-12)

    def scatter(g_):
        return naive_select_and_scatter_add(x, g_, **a)

    def gather(t_):
        return naive_select_and_gather(x, t_, **a)

    c = random(x_shape)
    dx, dg = grad_by_rule("select_and_scatter_add", [x, g], c, **a)
    assert dx is None
    np.testing.assert_allclose(dg, exact_linear_vjp(scatter, [g], 0, c), rtol=1e-12, atol=1e-12)
    c = random(y_shape)
    dx, dt = grad_by_rule("select_and_gather", [x, t], c, **a)
    assert dx is None
    np.testing.assert_allclose(dt, exact_linear_vjp(gather, [t], 0, c), rtol=1e-12, atol=1e-12)

    def sum_pool(x_):
        return naive_sum_pool(x_, **a)

    def sum_pool_transpose(g_):
        return naive_sum_pool_transpose(g_, input_shape=x_shape, **a)

    (dx,) = grad_by_rule("reduce_window_sum", [x], g, **a)
    np.testing.assert_allclose(dx, exact_linear_vjp(sum_pool, [x], 0, g), rtol=1e-12, atol=1e-12)
    (dg,) = grad_by_rule("reduce_window_sum_transpose", [g], t, input_shape=x_shape, **a)
    np.testing.assert_allclose(dg, exact_linear_vjp(sum_pool_transpose, [g], 0, t), rtol=1e-12, atol=1e-12)


# -- shape rules -------------------------------------------------------------------------------------
CONV_OK = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)


def emit(op, *types, **attrs):
    b = GraphBuilder()
    return b.emit(op, *[b.add_input(t) for t in types], **attrs)


def test_conv_shape_rules():
    out = emit("conv2d", tt((2, 4, 6, 7)), tt((6, 2, 2, 3)), stride=(2, 1), padding=(1, 2, 0, 1),
               dilation=(1, 2), groups=2)
    assert out.type == tt((2, 6, 4, 4))
    assert emit("conv2d_input_grad", tt((2, 6, 4, 4)), tt((6, 2, 2, 3)), input_shape=(2, 4, 6, 7),
                stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2).type == tt((2, 4, 6, 7))
    # with stride 2 two input heights give the same output height; input_shape decides
    assert emit("conv2d_input_grad", tt((2, 6, 4, 4)), tt((6, 2, 2, 3)), input_shape=(2, 4, 5, 7),
                stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2).type == tt((2, 4, 5, 7))
    assert emit("conv2d_weight_grad", tt((2, 4, 6, 7), "f64"), tt((2, 6, 4, 4), "f64"),
                weight_shape=(6, 2, 2, 3), stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2),
                groups=2).type == tt((6, 2, 2, 3), "f64")


@pytest.mark.parametrize("x, w, attrs, error, words", [
    (tt((4, 6, 7)), tt((6, 4, 2, 3)), {}, ShapeError, ["rank 4", "[4, 6, 7]"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2)), {}, ShapeError, ["rank 4", "[6, 4, 2]"]),
    (tt((1, 4, 6, 7)), tt((6, 3, 2, 2)), {}, ShapeError, ["[6, 3, 2, 2]", "[1, 4, 6, 7]", "4 input channels"]),
    (tt((1, 4, 6, 7)), tt((6, 1, 2, 2)), {"groups": 3}, ShapeError, ["groups=3", "[1, 4, 6, 7]"]),
    (tt((1, 4, 6, 7)), tt((5, 2, 2, 2)), {"groups": 2}, ShapeError, ["groups=2", "[5, 2, 2, 2]"]),
    (tt((1, 4, 3, 7)), tt((6, 4, 4, 2)), {}, ShapeError, ["kernel [4, 2]", "[1, 4, 3, 7]", "stride"]),
    (tt((1, 4, 5, 7)), tt((6, 4, 3, 2)), {"dilation": (3, 1)}, ShapeError, ["dilation [3, 1]", "padding"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"stride": (0, 1)}, ShapeError, ["stride"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"stride": (1, 1, 1)}, ShapeError, ["stride"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"padding": (1, 1)}, ShapeError, ["padding"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"padding": (-1, 0, 0, 0)}, ShapeError, ["padding"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"dilation": (0, 1)}, ShapeError, ["dilation"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2)), {"groups": 0}, ShapeError, ["groups"]),
    (tt((1, 4, 6, 7)), tt((6, 4, 2, 2), "f64"), {}, DTypeError, ["f32", "f64"]),
    (tt((1, 4, 6, 7), "bool"), tt((6, 4, 2, 2), "bool"), {}, DTypeError, ["bool"]),
])
def test_conv2d_errors(x, w, attrs, error, words):
    with pytest.raises(error) as info:
        emit("conv2d", x, w, **{**CONV_OK, **attrs})
    message = str(info.value)
    assert message.startswith("conv2d(")
    for word in words:
        assert word in message


def test_conv_grad_errors():
    with pytest.raises(ShapeError, match=r"cotangent.*\[1, 6, 5, 5\].*expected \[1, 6, 5, 6\]"):
        emit("conv2d_input_grad", tt((1, 6, 5, 5)), tt((6, 4, 2, 2)), input_shape=(1, 4, 6, 7), **CONV_OK)
    with pytest.raises(ShapeError, match="input_shape"):
        emit("conv2d_input_grad", tt((1, 6, 5, 6)), tt((6, 4, 2, 2)), input_shape=(4, 6, 7), **CONV_OK)
    with pytest.raises(ShapeError, match=r"cotangent.*expected \[1, 6, 4, 6\]"):
        emit("conv2d_weight_grad", tt((1, 4, 6, 7)), tt((1, 6, 5, 6)), weight_shape=(6, 4, 3, 2), **CONV_OK)
    with pytest.raises(ShapeError, match="input channels"):
        emit("conv2d_weight_grad", tt((1, 4, 6, 7)), tt((1, 6, 5, 6)), weight_shape=(6, 3, 2, 2), **CONV_OK)
    with pytest.raises(DTypeError, match="f64"):
        emit("conv2d_weight_grad", tt((1, 4, 6, 7)), tt((1, 6, 5, 6), "f64"), weight_shape=(6, 4, 2, 2),
             **CONV_OK)


def test_pool_shape_rules():
    a = pool_attrs((3, 2), (2, 3), (2, 0, 1, 1))
    x = tt((1, 2, 5, 6))
    pooled = tt(pooled_shape((1, 2, 5, 6), **a))
    assert pooled.shape == (1, 2, 3, 3)
    assert emit("reduce_window_max", x, **a).type == pooled
    assert emit("reduce_window_sum", x, **a).type == pooled
    assert emit("select_and_scatter_add", x, pooled, **a).type == x
    assert emit("select_and_gather", x, x, **a).type == pooled
    assert emit("reduce_window_sum_transpose", pooled, input_shape=(1, 2, 5, 6), **a).type == x
    # sum pooling accepts padding as large as the window (it pads with zeros)
    assert emit("reduce_window_sum", x, **pool_attrs((2, 2), (1, 1), (2, 2, 2, 2))).shape == (1, 2, 8, 9)


@pytest.mark.parametrize("op, types, attrs, error, words", [
    ("reduce_window_max", [tt((2, 5, 6))], {}, ShapeError, ["rank 4", "[2, 5, 6]"]),
    ("reduce_window_sum", [tt((1, 2, 5, 6))], {"window": (6, 2)}, ShapeError,
     ["window [6, 2]", "[1, 2, 5, 6]", "stride [1, 1]", "padding [0, 0, 0, 0]"]),
    ("reduce_window_max", [tt((1, 2, 5, 6))], {"padding": (2, 0, 0, 0)}, ShapeError,
     ["padding [2, 0, 0, 0]", "window [2, 2]"]),
    ("reduce_window_max", [tt((1, 2, 5, 6))], {"window": (2, 2, 2)}, ShapeError, ["window"]),
    ("reduce_window_sum", [tt((1, 2, 5, 6))], {"stride": (1, 0)}, ShapeError, ["stride"]),
    ("reduce_window_max", [tt((1, 2, 5, 6), "bool")], {}, DTypeError, ["bool"]),
    ("select_and_scatter_add", [tt((1, 2, 5, 6)), tt((1, 2, 4, 4))], {}, ShapeError,
     ["[1, 2, 4, 4]", "expected [1, 2, 4, 5]"]),
    ("select_and_scatter_add", [tt((1, 2, 5, 6)), tt((1, 2, 4, 5), "f64")], {}, DTypeError, ["f64"]),
    ("select_and_gather", [tt((1, 2, 5, 6)), tt((1, 2, 4, 5))], {}, ShapeError,
     ["[1, 2, 4, 5]", "expected [1, 2, 5, 6]"]),
    ("reduce_window_sum_transpose", [tt((1, 2, 4, 4))], {"input_shape": (1, 2, 5, 6)}, ShapeError,
     ["[1, 2, 4, 4]", "expected [1, 2, 4, 5]"]),
])
def test_pool_errors(op, types, attrs, error, words):
    full = {**pool_attrs((2, 2), (1, 1), (0, 0, 0, 0)), **attrs}
    if op != "reduce_window_sum_transpose":
        full.pop("input_shape", None)
    with pytest.raises(error) as info:
        emit(op, *types, **full)
    message = str(info.value)
    assert message.startswith(op + "(")
    for word in words:
        assert word in message


# -- gradients through the autodiff pass against finite differences --------------------------------
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", GRAD_CONVS)
def test_conv_gradcheck(x_shape, w_shape, stride, padding, dilation, groups):
    from gradcheck import check_primitive_grad
    a = conv_attrs(stride, padding, dilation, groups)
    x, w = random(x_shape), random(w_shape)
    g = random(conv_out_shape(x_shape, w_shape, stride, padding, dilation))
    check_primitive_grad("conv2d", [x, w], order=2, **a)
    check_primitive_grad("conv2d_input_grad", [g, w], order=2, input_shape=x_shape, **a)
    check_primitive_grad("conv2d_weight_grad", [x, g], order=2, weight_shape=w_shape, **a)


@pytest.mark.parametrize("x_shape, window, stride, padding", POOLS[1:3], ids=POOL_IDS[1:3])
def test_pool_gradcheck(x_shape, window, stride, padding):
    """Max pooling is smooth away from ties, so distinct random values (gaps >> eps) are used."""
    from gradcheck import check_primitive_grad
    a = pool_attrs(window, stride, padding)
    x = random(x_shape)
    y_shape = pooled_shape(x_shape, **a)
    check_primitive_grad("reduce_window_max", [x], order=2, **a)
    check_primitive_grad("select_and_scatter_add", [x, random(y_shape)], order=2, **a)
    check_primitive_grad("select_and_gather", [x, random(x_shape)], order=2, **a)
    check_primitive_grad("reduce_window_sum", [x], order=2, **a)
    check_primitive_grad("reduce_window_sum_transpose", [random(y_shape)], order=2, input_shape=x_shape, **a)

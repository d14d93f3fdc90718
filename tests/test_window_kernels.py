"""The CPU window kernels (kernelflow/codegen/numba/window.py), called directly, against the numpy
references of the primitives (kernelflow/ir/primitives/window.py: einsum over sliding-window views).

Convolutions have two implementations, direct loops over a batch-innermost copy and im2col + GEMM;
a shape rule picks one. Each case runs both (the rule's thresholds patched), serial and with the
channel loop split over threads, so every path is compared whatever the rule would pick.
Max pooling cases include ties (the FIRST maximum in row-major order wins), NaN (wins, the first NaN),
-inf, signed zeros and windows clipped by padding.
"""
from __future__ import annotations

import numpy as np
import pytest

from kernelflow.codegen.numba import window
from kernelflow.ir import get_primitive

RNG = np.random.default_rng(5)


def ref(op, *arrays, **attrs):
    return get_primitive(op).reference(*arrays, **attrs)


def random(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


def conv_attrs(stride, padding, dilation, groups):
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


# (x shape, w shape, stride, padding (top, bottom, left, right), dilation, groups)
CONVS = [
    ((4, 1, 12, 12), (6, 1, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),       # LeNet conv1 (25 taps: 8+8+8+1)
    ((3, 6, 9, 9), (16, 6, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),        # LeNet conv2 (150 taps)
    ((2, 3, 9, 8), (4, 3, 3, 3), (1, 1), (1, 0, 2, 1), (1, 1), 1),         # asymmetric padding
    ((2, 4, 11, 10), (6, 2, 3, 2), (2, 1), (1, 2, 0, 1), (2, 1), 2),       # vertical stride, dilation, groups
    ((2, 2, 9, 10), (4, 2, 2, 3), (1, 1), (0, 3, 2, 0), (3, 2), 1),        # dilation both ways, tall padding
    ((2, 3, 7, 7), (3, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),         # depthwise
    ((1, 2, 6, 7), (4, 1, 1, 4), (3, 1), (0, 1, 3, 3), (1, 1), 2),         # padding >= kernel extent
    ((3, 5, 6, 6), (7, 5, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),         # 1x1 kernel (5 taps: 4+1)
    ((2, 3, 9, 11), (2, 3, 3, 3), (2, 3), (1, 1, 2, 0), (1, 2), 1),        # horizontal stride: GEMM only
]
IDS = ["lenet1", "lenet2", "asym_pad", "stride_dil_groups", "dilation", "depthwise", "wide_pad", "1x1",
       "stride_w"]


@pytest.fixture(params=["direct", "direct_threads", "gemm"])
def path(request, monkeypatch):
    """Force one convolution implementation (the rule's thresholds patched)."""
    if request.param == "gemm":
        monkeypatch.setattr(window, "DIRECT_MAX_GROUP_CHANNELS", -1)
    else:
        monkeypatch.setattr(window, "DIRECT_MAX_GROUP_CHANNELS", 1 << 30)
        monkeypatch.setattr(window, "DIRECT_MIN_ROW", 0)
    monkeypatch.setattr(window, "THREADS_MIN_MACS", 0 if request.param == "direct_threads" else 1 << 62)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups", CONVS, ids=IDS)
def test_conv_family_matches_reference(path, x_shape, w_shape, stride, padding, dilation, groups, dtype):
    attrs = conv_attrs(stride, padding, dilation, groups)
    x, w = random(x_shape, dtype), random(w_shape, dtype)
    y = ref("conv2d", x, w, **attrs)
    g = random(y.shape, dtype)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    scratch = {}  # shared by the three ops, as in an executable (distinct keys)
    for _ in range(2):  # the second call reuses the scratch buffers
        out = np.full(y.shape, np.nan, dtype)
        window.run_conv2d(x, w, out, scratch, 0, **attrs)
        np.testing.assert_allclose(out, y, **tol)
        dx = np.full(x_shape, np.nan, dtype)
        window.run_conv2d_input_grad(g, w, dx, scratch, 1, input_shape=x_shape, **attrs)
        np.testing.assert_allclose(dx, ref("conv2d_input_grad", g, w, input_shape=x_shape, **attrs), **tol)
        dw = np.full(w_shape, np.nan, dtype)
        window.run_conv2d_weight_grad(x, g, dw, scratch, 2, weight_shape=w_shape, **attrs)
        np.testing.assert_allclose(dw, ref("conv2d_weight_grad", x, g, weight_shape=w_shape, **attrs), **tol)


def test_conv_matches_torch_on_lenet_shapes():
    """LeNet's two convolutions at batch 64 (the W6 benchmark), forward and both gradients, by the
    rule's own choice of implementation, against torch.nn.functional / autograd."""
    torch = pytest.importorskip("torch")
    for x_shape, w_shape, pad in [((64, 1, 28, 28), (6, 1, 5, 5), 2), ((64, 6, 14, 14), (16, 6, 5, 5), 0)]:
        attrs = conv_attrs((1, 1), (pad,) * 4, (1, 1), 1)
        x, w = random(x_shape, np.float32), random(w_shape, np.float32)
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        yt = torch.nn.functional.conv2d(xt, wt, padding=pad)
        g = random(tuple(yt.shape), np.float32)
        yt.backward(torch.tensor(g))
        out = np.empty(yt.shape, np.float32)
        dx, dw = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
        window.run_conv2d(x, w, out, {}, 0, **attrs)
        window.run_conv2d_input_grad(g, w, dx, {}, 0, input_shape=x_shape, **attrs)
        window.run_conv2d_weight_grad(x, g, dw, {}, 0, weight_shape=w_shape, **attrs)
        for got, want in [(out, yt.detach().numpy()), (dx, xt.grad.numpy()), (dw, wt.grad.numpy())]:
            # float32 sums of up to 50K terms in different orders: errors scale with the largest sum
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=3e-5 * np.abs(want).max())


def test_conv_rule_picks_direct_for_small_channel_counts():
    """The documented rule: direct loops for LeNet's convs, GEMM for many channels, a horizontal
    stride, or a short output row (batch 1, narrow image)."""
    assert window._direct((64, 16, 10, 10), (16, 6, 5, 5), (1, 1), 1)
    assert window._direct((64, 6, 28, 28), (6, 1, 5, 5), (1, 1), 1)
    assert not window._direct((64, 128, 8, 8), (128, 128, 3, 3), (1, 1), 1)
    assert not window._direct((64, 16, 10, 10), (16, 6, 5, 5), (1, 2), 1)
    assert not window._direct((1, 16, 10, 10), (16, 6, 5, 5), (1, 1), 1)
    assert window._direct((8, 256, 32, 32), (256, 1, 3, 3), (1, 1), 256)  # depthwise: 1 channel per group


# -- max pooling ---------------------------------------------------------------------------------
POOLS = [  # (x shape, window, stride, padding)
    ((3, 4, 8, 10), (2, 2), (2, 2), (0, 0, 0, 0)),     # LeNet's
    ((9, 2, 7, 11), (2, 3), (3, 3), (0, 0, 0, 0)),     # gaps between windows, remainders, batch 9
    ((2, 3, 9, 9), (3, 3), (2, 2), (1, 1, 1, 1)),      # overlapping, clipped by padding
    ((2, 2, 7, 8), (2, 3), (1, 2), (1, 0, 2, 1)),      # asymmetric padding, stride 1 rows
    ((1, 2, 5, 13), (1, 4), (3, 3), (0, 0, 3, 2)),     # windows mostly padding at the ends
    ((2, 1, 6, 6), (3, 2), (3, 2), (0, 0, 0, 0)),      # a remainder row no window covers
]
POOL_IDS = ["lenet", "gaps", "overlap_pad", "asym", "wide_pad", "remainder"]


def pool_input(shape, dtype, kind):
    if kind == "ties":  # few distinct values: many windows with a tied maximum
        return RNG.integers(-2, 2, shape).astype(dtype)
    x = random(shape, dtype) if np.dtype(dtype).kind == "f" else RNG.integers(-100, 100, shape).astype(dtype)
    if kind == "special":
        flat = x.reshape(-1)
        picks = RNG.choice(flat.size, size=(4, flat.size // 6), replace=False)
        flat[picks[0]] = np.nan
        flat[picks[1]] = -np.inf
        flat[picks[2]] = 0.0
        flat[picks[3]] = -0.0
    return x


@pytest.fixture(params=["by_window", "batch_inner"])
def pool_path(request, monkeypatch):
    """Force select_and_scatter_add's implementation for windows that do not overlap nor pad."""
    monkeypatch.setattr(window, "POOL_MIN_BATCH", 1 << 30 if request.param == "by_window" else 1)
    return request.param


@pytest.mark.parametrize("kind", ["random", "ties", "special"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int8, np.uint8])
@pytest.mark.parametrize("x_shape, window_hw, stride, padding", POOLS, ids=POOL_IDS)
def test_max_pool_family_matches_reference(pool_path, x_shape, window_hw, stride, padding, dtype, kind):
    if kind == "special" and np.dtype(dtype).kind != "f":
        pytest.skip("NaN, inf and signed zeros are float values")
    attrs = dict(window=window_hw, stride=stride, padding=padding)
    x = pool_input(x_shape, dtype, kind)
    pooled = ref("reduce_window_max", x, **attrs)
    g = pool_input(pooled.shape, dtype, "random")
    t = pool_input(x_shape, dtype, "random")

    out = np.zeros(pooled.shape, dtype)
    window.run_reduce_window_max(x, out, {}, 0, **attrs)
    np.testing.assert_array_equal(out, pooled)
    if np.dtype(dtype).kind == "f":  # the value AT the first maximum, down to the sign of a zero
        first = ref("select_and_gather", x, x, **attrs)
        np.testing.assert_array_equal(np.signbit(out), np.signbit(first))
    dx = np.full(x_shape, 7, dtype)
    window.run_select_and_scatter_add(x, g, dx, {}, 0, **attrs)
    want = ref("select_and_scatter_add", x, g, **attrs)
    if np.dtype(dtype).kind == "f":  # overlapping windows add in another order
        np.testing.assert_allclose(dx, want, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(dx, want)
    gathered = np.full(pooled.shape, 7, dtype)
    window.run_select_and_gather(x, t, gathered, {}, 0, **attrs)
    np.testing.assert_array_equal(gathered, ref("select_and_gather", x, t, **attrs))


def test_max_pool_all_nan_and_all_inf_windows(pool_path):
    attrs = dict(window=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0))
    x = np.array([[[[np.nan, np.nan, -np.inf, -np.inf],
                    [np.nan, 1.0, -np.inf, -np.inf]]]], np.float32)
    g = np.array([[[[3.0, 5.0]]]], np.float32)
    out = np.zeros((1, 1, 1, 2), np.float32)
    window.run_reduce_window_max(x, out, {}, 0, **attrs)
    np.testing.assert_array_equal(out, ref("reduce_window_max", x, **attrs))
    dx = np.zeros_like(x)
    window.run_select_and_scatter_add(x, g, dx, {}, 0, **attrs)
    np.testing.assert_array_equal(dx, ref("select_and_scatter_add", x, g, **attrs))

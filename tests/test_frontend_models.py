"""Models written in plain numpy: traced by kf.jit and run by the interpreter, they must compute what
the same Python code computes when it runs directly on numpy arrays."""
import numpy as np
import pytest

import kernelflow as kf

rng = np.random.default_rng(2)


def run_both(fn, *args, rtol=1e-5, atol=1e-6):
    expected = fn(*args)
    got = kf.jit(fn, backend="interpret")(*args)
    e_leaves, e_tree = kf.tree_flatten(expected)
    g_leaves, g_tree = kf.tree_flatten(got)
    assert e_tree == g_tree
    for e, g in zip(e_leaves, g_leaves):
        e = np.asarray(e)
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype, e.dtype)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return got


def logistic_regression(w, b, x, y):
    z = x @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    eps = 1e-7
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    accuracy = np.mean((p > 0.5) == (y > 0.5))
    return loss, accuracy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logistic_regression(dtype):
    x = rng.standard_normal((16, 5)).astype(dtype)
    y = (rng.random(16) > 0.5).astype(dtype)
    w = rng.standard_normal(5).astype(dtype)
    b = dtype(0.1)
    run_both(logistic_regression, w, b, x, y)


def mlp_cross_entropy(params, x, labels):
    h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    logits = h @ params["w2"] + params["b2"]
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    n = x.shape[0]
    loss = -log_probs[np.arange(n), labels].mean()
    predictions = log_probs.argmax(axis=1)
    return loss, predictions


def test_two_layer_mlp_with_fancy_index_cross_entropy():
    params = {"w1": rng.standard_normal((8, 16)).astype(np.float32) * 0.3, "b1": np.zeros(16, np.float32),
              "w2": rng.standard_normal((16, 10)).astype(np.float32) * 0.3, "b2": np.full(10, 0.01, np.float32)}
    x = rng.standard_normal((32, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 32)
    run_both(mlp_cross_entropy, params, x, labels)


def conv_net(params, x):
    h = kf.conv2d(x, params["c1"], params["cb1"], padding=1)
    h = np.maximum(h, 0)
    h = kf.max_pool2d(h, 2)
    h = kf.conv2d(h, params["c2"], stride=1, padding="same")
    h = np.tanh(h)
    h = kf.avg_pool2d(h, 2)
    h = h.reshape(h.shape[0], -1)
    logits = h @ params["w"] + params["b"]
    return kf.log_softmax(logits, axis=-1)


def test_small_conv_net():
    params = {"c1": rng.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.5,
              "cb1": rng.standard_normal(4).astype(np.float32) * 0.1,
              "c2": rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3,
              "w": rng.standard_normal((6 * 2 * 2, 3)).astype(np.float32) * 0.3,
              "b": np.zeros(3, np.float32)}
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    run_both(conv_net, params, x)


def test_conv_net_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    params = {"c1": rng.standard_normal((4, 1, 3, 3)), "cb1": rng.standard_normal(4),
              "c2": rng.standard_normal((6, 4, 3, 3)), "w": rng.standard_normal((24, 3)), "b": rng.standard_normal(3)}
    x = rng.standard_normal((2, 1, 8, 8))
    got = kf.jit(conv_net, backend="interpret")(params, x)
    t = {k: torch.tensor(v) for k, v in params.items()}
    h = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), t["c1"], t["cb1"], padding=1)), 2)
    h = F.avg_pool2d(torch.tanh(F.conv2d(h, t["c2"], padding="same")), 2)
    expected = F.log_softmax(h.reshape(2, -1) @ t["w"] + t["b"], dim=-1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def rnn(params, xs):
    """An Elman RNN unrolled by a Python loop over time steps (iteration over axis 0)."""
    h = np.zeros((xs.shape[1], params["wh"].shape[0]), xs.dtype)
    outputs = []
    for x in xs:
        h = np.tanh(x @ params["wx"] + h @ params["wh"] + params["b"])
        outputs.append(h)
    return np.stack(outputs), h


def test_unrolled_rnn():
    params = {"wx": rng.standard_normal((3, 5)) * 0.5, "wh": rng.standard_normal((5, 5)) * 0.5,
              "b": rng.standard_normal(5) * 0.1}
    xs = rng.standard_normal((6, 2, 3))
    run_both(rnn, params, xs, rtol=1e-12)

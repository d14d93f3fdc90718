"""Composite ops (written once from primitives) against independent formulas (scipy, torch, loops), both
eagerly on numpy arrays and traced."""
import numpy as np
import pytest
import scipy.special

import kernelflow as kf

rng = np.random.default_rng(3)
X = rng.standard_normal((4, 5, 6))
X32 = X.astype(np.float32)


def both(fn, *args, **kwargs):
    """fn eagerly and traced (interpreter); they must agree; returns the eager result."""
    eager = fn(*args, **kwargs)
    traced = kf.jit(lambda *a: fn(*a, **kwargs), backend="interpret")(*args)
    eager = np.asarray(eager)
    assert traced.shape == eager.shape and traced.dtype == eager.dtype
    np.testing.assert_allclose(traced, eager, rtol=1e-6, atol=1e-7)
    return eager


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family(axis):
    np.testing.assert_allclose(both(kf.softmax, X, axis=axis), scipy.special.softmax(X, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(both(kf.log_softmax, X, axis=axis), scipy.special.log_softmax(X, axis=axis),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both(kf.logsumexp, X, axis=axis), scipy.special.logsumexp(X, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(both(kf.logsumexp, X, axis=(axis, 2) if axis % 3 != 2 else None, keepdims=True),
                               scipy.special.logsumexp(X, axis=(axis % 3, 2) if axis % 3 != 2 else None,
                                                       keepdims=True), rtol=1e-12)


def test_softmax_family_is_stable_and_keeps_float32():
    big = np.array([[1000.0, 1001.0, -np.inf], [-1000.0, -1000.0, -1000.0]], np.float32)
    s = both(kf.softmax, big)
    assert s.dtype == np.float32 and np.isfinite(s).all()
    np.testing.assert_allclose(s, scipy.special.softmax(big.astype(np.float64), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(both(kf.logsumexp, big, axis=1),
                               scipy.special.logsumexp(big.astype(np.float64), axis=1), rtol=1e-6)
    assert both(kf.logsumexp, np.full((2, 3), -np.inf)).item() == -np.inf
    assert both(kf.logsumexp, X32).dtype == np.float32


def test_mean_var():
    np.testing.assert_allclose(both(kf.mean, X, axis=(0, 2)), X.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(both(kf.var, X, axis=-1, keepdims=True), np.var(X, axis=-1, keepdims=True),
                               rtol=1e-12)
    np.testing.assert_allclose(both(kf.var, X, ddof=1), np.var(X, ddof=1), rtol=1e-12)


def test_activations_against_torch():
    torch = pytest.importorskip("torch")
    t = torch.tensor(X)
    np.testing.assert_allclose(both(kf.relu, X), torch.relu(t).numpy())
    np.testing.assert_allclose(both(kf.sigmoid, X), torch.sigmoid(t).numpy(), rtol=1e-12)
    np.testing.assert_allclose(both(kf.gelu, X), torch.nn.functional.gelu(t).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(both(kf.gelu, X, approximate=True),
                               torch.nn.functional.gelu(t, approximate="tanh").numpy(), rtol=1e-12, atol=1e-15)
    assert both(kf.gelu, X32).dtype == np.float32
    assert both(kf.sigmoid, X32).dtype == np.float32


def test_layer_norm_against_torch():
    torch = pytest.importorskip("torch")
    gamma = rng.standard_normal(6)
    beta = rng.standard_normal(6)
    expected = torch.nn.functional.layer_norm(torch.tensor(X), (6,), torch.tensor(gamma), torch.tensor(beta),
                                              eps=1e-5).numpy()
    np.testing.assert_allclose(both(kf.layer_norm, X, gamma, beta), expected, rtol=1e-10, atol=1e-12)
    expected2 = torch.nn.functional.layer_norm(torch.tensor(X), (5, 6), eps=1e-3).numpy()
    np.testing.assert_allclose(both(kf.layer_norm, X, eps=1e-3, axis=(-2, -1)), expected2, rtol=1e-10, atol=1e-12)


def test_one_hot():
    labels = np.array([[0, 3], [2, 1]])
    expected = np.eye(4, dtype=np.float32)[labels]
    got = both(kf.one_hot, labels, n=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(both(kf.one_hot, labels, n=4, dtype=np.int32), expected.astype(np.int32))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_against_torch(reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    logits = rng.standard_normal((7, 5))
    labels = rng.integers(0, 5, 7)
    expected = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), reduction=reduction).numpy()
    np.testing.assert_allclose(both(kf.cross_entropy, logits, labels, reduction=reduction), expected, rtol=1e-12)
    probs = scipy.special.softmax(rng.standard_normal((7, 5)), axis=1)
    expected = F.cross_entropy(torch.tensor(logits), torch.tensor(probs), reduction=reduction).numpy()
    np.testing.assert_allclose(both(kf.cross_entropy, logits, probs, reduction=reduction), expected, rtol=1e-12)
    logits4 = rng.standard_normal((2, 5, 3, 4))
    labels4 = rng.integers(0, 5, (2, 3, 4))
    expected = F.cross_entropy(torch.tensor(logits4), torch.tensor(labels4), reduction=reduction).numpy()
    np.testing.assert_allclose(both(kf.cross_entropy, logits4, labels4, reduction=reduction), expected, rtol=1e-12)


def test_cross_entropy_matches_a_loop():
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    loop = np.mean([-(logits[i, labels[i]] - np.log(np.sum(np.exp(logits[i].astype(np.float64)))))
                    for i in range(6)])
    got = both(kf.cross_entropy, logits, labels)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, loop, rtol=1e-6)


CONVS = [dict(), dict(stride=2), dict(padding=1), dict(padding=(2, 0), stride=(1, 2)), dict(dilation=2, padding=2),
         dict(groups=2), dict(padding="same"), dict(padding="same", dilation=(2, 1)), dict(padding="valid")]


@pytest.mark.parametrize("kw", CONVS, ids=[str(k) for k in CONVS])
def test_conv2d_against_torch(kw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 4 // kw.get("groups", 1), 3, 2))
    b = rng.standard_normal(6)
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw).numpy()
    np.testing.assert_allclose(both(kf.conv2d, x, w, b, **kw), expected, rtol=1e-10, atol=1e-12)


def test_conv2d_unbatched_and_float32():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    got = both(kf.conv2d, x, w, padding=1)
    assert got.dtype == np.float32
    expected = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=1), dict(kernel_size=(2, 3), stride=(1, 2)),
         dict(kernel_size=3, stride=2, padding=1)]


@pytest.mark.parametrize("kw", POOLS, ids=[str(k) for k in POOLS])
def test_pooling_against_torch(kw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 8))
    np.testing.assert_allclose(both(kf.max_pool2d, x, **kw),
                               torch.nn.functional.max_pool2d(torch.tensor(x), **kw).numpy())
    np.testing.assert_allclose(both(kf.avg_pool2d, x, **kw),
                               torch.nn.functional.avg_pool2d(torch.tensor(x), **kw).numpy(), rtol=1e-12)


def test_random_is_a_function_of_the_key():
    key = kf.random.key(42)
    bits = kf.random.bits(key, (1000,))
    assert bits.dtype == np.uint32
    u = both(kf.random.uniform, key, shape=(1000,))
    assert u.dtype == np.float32
    np.testing.assert_array_equal(u, (bits >> 8).astype(np.float32) / np.float32(2 ** 24))  # top 24 bits
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.05 and abs(u.var() - 1 / 12) < 0.02
    u64 = both(kf.random.uniform, key, shape=(3, 4), dtype=np.float64, minval=-2.0, maxval=3.0)
    np.testing.assert_allclose(u64, kf.random.bits(key, (3, 4)) / 2.0 ** 32 * 5.0 - 2.0, rtol=1e-15)
    k1, k2 = kf.random.split(key)
    assert not np.array_equal(kf.random.uniform(k1, (10,)), kf.random.uniform(k2, (10,)))
    np.testing.assert_array_equal(kf.random.uniform(k1, (10,)), kf.random.uniform(k1, (10,)))
    z = both(kf.random.normal, key, shape=(4000,))
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
    # Box-Muller from the same bits, written independently
    b = kf.random.bits(key, (2, 5)).astype(np.float64)
    u1, u2 = np.floor(b[0] / 256) / 2 ** 24, np.floor(b[1] / 256) / 2 ** 24
    np.testing.assert_allclose(kf.random.normal(key, (5,), np.float64),
                               np.sqrt(-2 * np.log(1 - b[0] / 2 ** 32)) * np.cos(2 * np.pi * b[1] / 2 ** 32),
                               rtol=1e-12)
    assert u1.shape == u2.shape


def test_random_key_traced_inside_jit():
    @kf.jit(backend="interpret")
    def f(key):
        k1, k2 = kf.random.split(key)
        return kf.random.uniform(k1, (3,)), kf.random.normal(k2, (2,))

    key = kf.random.key(7)
    k1, k2 = kf.random.split(key)
    a, b = f(key)
    np.testing.assert_array_equal(a, kf.random.uniform(k1, (3,)))
    np.testing.assert_array_equal(b, kf.random.normal(k2, (2,)))


def test_dropout():
    x = np.ones((200, 50), np.float32)
    key = kf.random.key(0)
    y = both(kf.dropout, x, key=key, rate=0.25)
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    mask = kf.random.uniform(key, x.shape) < 0.75
    np.testing.assert_array_equal(kept, mask)
    np.testing.assert_array_equal(kf.dropout(x, 0.0, key), x)


def test_cross_entropy_out_of_range_labels_never_pass_silently():
    import kernelflow as kf
    logits = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    bad = np.array([0, 1, 3, 2], np.int32)
    with pytest.raises(IndexError, match="label 3 is out of range for 3 classes"):
        kf.cross_entropy(logits, bad)
    per_row = kf.jit(lambda x, y: kf.cross_entropy(x, y, reduction="none"), backend="interpret")(logits, bad)
    assert np.isnan(per_row[2]) and np.isfinite(per_row[[0, 1, 3]]).all()


def test_cross_entropy_gradient_fuses_into_one_row_kernel():
    import kernelflow as kf
    logits = np.random.default_rng(2).standard_normal((8, 5)).astype(np.float32)
    labels = np.arange(8, dtype=np.int32) % 5
    step = kf.jit(kf.grad(lambda x, y: kf.cross_entropy(x, y)))
    assert len(step.lower(logits, labels).compile().kernels) == 1
    torch = pytest.importorskip("torch")
    t = torch.tensor(logits, requires_grad=True)
    torch.nn.functional.cross_entropy(t, torch.tensor(labels).long()).backward()
    np.testing.assert_allclose(step(logits, labels), t.grad.numpy(), rtol=1e-5, atol=1e-7)

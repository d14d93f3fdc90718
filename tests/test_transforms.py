"""kf.grad / value_and_grad / vjp / check_grads: against torch.autograd and central differences in float64,
eagerly and under kf.jit, composed with themselves (Hessian-vector products)."""
import numpy as np
import pytest

import kernelflow as kf

rng = np.random.default_rng(4)


def jit(fn, **kw):
    return kf.jit(fn, backend="interpret", **kw)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f at float64 array x (an independent oracle)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (float(f(xp)) - float(f(xm))) / (2 * eps)
    return g


def assert_tree_close(got, expected, rtol=1e-7, atol=1e-9):
    g_leaves, g_tree = kf.tree_flatten(got)
    e_leaves, e_tree = kf.tree_flatten(expected)
    assert g_tree == e_tree, (g_tree, e_tree)
    for g, e in zip(g_leaves, e_leaves):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape, (g.shape, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


# -- models, written in numpy ----------------------------------------------------------------------------
def mlp_loss(params, x, labels):
    h = np.tanh(x @ params["w1"] + params["b1"])
    logits = h @ params["w2"] + params["b2"]
    return kf.cross_entropy(logits, labels)


def mlp_params(dtype=np.float64):
    return {"w1": rng.standard_normal((5, 8)).astype(dtype) * 0.5, "b1": rng.standard_normal(8).astype(dtype) * 0.1,
            "w2": rng.standard_normal((8, 4)).astype(dtype) * 0.5, "b2": np.zeros(4, dtype)}


X = rng.standard_normal((6, 5))
LABELS = rng.integers(0, 4, 6)


def torch_mlp_grads(params, x, labels):
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = torch.tanh(torch.tensor(x) @ t["w1"] + t["b1"])
    loss = torch.nn.functional.cross_entropy(h @ t["w2"] + t["b2"], torch.tensor(labels))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in t.items()}


def test_grad_of_mlp_against_torch():
    params = mlp_params()
    loss, expected = torch_mlp_grads(params, X, LABELS)
    grads = kf.grad(mlp_loss)(params, X, LABELS)
    assert isinstance(grads, dict) and list(grads) == list(params)
    assert_tree_close(grads, expected, rtol=1e-10, atol=1e-12)
    value, grads2 = kf.value_and_grad(mlp_loss)(params, X, LABELS)
    np.testing.assert_allclose(value, loss, rtol=1e-12)
    assert_tree_close(grads2, expected, rtol=1e-10, atol=1e-12)


def test_jit_of_grad_equals_grad():
    params = mlp_params()
    eager = kf.grad(mlp_loss)(params, X, LABELS)
    traced = jit(kf.grad(mlp_loss))(params, X, LABELS)
    assert_tree_close(traced, eager, rtol=1e-12, atol=1e-14)
    value, grads = jit(kf.value_and_grad(mlp_loss))(params, X, LABELS)
    np.testing.assert_allclose(value, mlp_loss(params, X, LABELS), rtol=1e-12)
    assert_tree_close(grads, eager, rtol=1e-12, atol=1e-14)
    text = jit(kf.grad(mlp_loss)).lower(params, X, LABELS).ir()
    assert "tanh" in text and "dot_general" in text


def test_grad_float32():
    params = mlp_params(np.float32)
    x = X.astype(np.float32)
    grads = kf.grad(mlp_loss)(params, x, LABELS)
    assert all(g.dtype == np.float32 for g in grads.values())
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    assert_tree_close(grads, kf.grad(mlp_loss)(p64, X.astype(np.float32).astype(np.float64), LABELS),
                      rtol=1e-4, atol=1e-6)


def test_grad_against_finite_differences():
    w = rng.standard_normal((3, 4))

    def f(w):
        return np.sum(np.exp(np.sin(w) * 0.5) / (1 + w ** 2)) + np.max(w, axis=0).sum()

    np.testing.assert_allclose(kf.grad(f)(w), numeric_grad(f, w), rtol=1e-6, atol=1e-8)


def test_argnums_tuple_and_broadcasting():
    a = rng.standard_normal((3, 1))
    b = rng.standard_normal((4,))

    def f(a, b, c):
        return np.sum((a * b + c) ** 2)

    ga, gb = kf.grad(f, argnums=(0, 1))(a, b, 0.5)
    np.testing.assert_allclose(ga, numeric_grad(lambda a: f(a, b, 0.5), a), rtol=1e-6)
    np.testing.assert_allclose(gb, numeric_grad(lambda b: f(a, b, 0.5), b), rtol=1e-6)
    (gc,) = kf.grad(f, argnums=(2,))(a, b, np.float64(0.5))
    np.testing.assert_allclose(gc, np.sum(2 * (a * b + 0.5)), rtol=1e-12)
    gb_neg = kf.grad(f, argnums=-2)(a, b, 0.5)
    np.testing.assert_allclose(gb_neg, gb)


def test_has_aux():
    params = mlp_params()

    def f(params, x, labels):
        loss = mlp_loss(params, x, labels)
        logits = np.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        return loss, {"accuracy": np.mean(np.argmax(logits, axis=1) == labels), "logits": logits}

    grads, aux = kf.grad(f, has_aux=True)(params, X, LABELS)
    assert_tree_close(grads, kf.grad(mlp_loss)(params, X, LABELS), rtol=1e-12)
    expected_aux = f(params, X, LABELS)[1]
    assert_tree_close(aux, expected_aux, rtol=1e-12)
    (loss, aux2), grads2 = jit(kf.value_and_grad(f, has_aux=True))(params, X, LABELS)
    np.testing.assert_allclose(loss, mlp_loss(params, X, LABELS), rtol=1e-12)
    assert_tree_close(aux2, expected_aux, rtol=1e-12)
    assert_tree_close(grads2, grads, rtol=1e-12)


def test_aux_with_infinities_does_not_poison_gradients():
    def f(x):
        return np.sum(x ** 2), np.log(x * 0)     # aux is -inf everywhere
    x = rng.standard_normal(3)
    g, aux = kf.grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    assert np.all(aux == -np.inf)


def test_vjp_against_torch():
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((4, 2))

    def f(a, b):
        return {"prod": np.tanh(a @ b), "rowsum": np.exp(a).sum(axis=1)}

    out, vjp_fn = kf.vjp(f, a, b)
    assert_tree_close(out, f(a, b), rtol=1e-12)
    ct = {"prod": rng.standard_normal((3, 2)), "rowsum": rng.standard_normal(3)}
    ga, gb = vjp_fn(ct)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tout = (torch.tanh(ta @ tb) * torch.tensor(ct["prod"])).sum() + (torch.exp(ta).sum(1) * torch.tensor(ct["rowsum"])).sum()
    tout.backward()
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="structure"):
        vjp_fn(ct["prod"])


def test_vjp_has_aux_and_inside_jit():
    x = rng.standard_normal(5)

    def f(x):
        return np.sin(x) * x, np.cos(x)

    out, vjp_fn, aux = kf.vjp(f, x, has_aux=True)
    np.testing.assert_allclose(aux, np.cos(x))
    (g,) = vjp_fn(np.ones(5))
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-12)

    @jit
    def via_vjp(x, ct):
        _, fn = kf.vjp(lambda y: np.sin(y) * y, x)
        return fn(ct)[0]

    np.testing.assert_allclose(via_vjp(x, np.ones(5)), np.cos(x) * x + np.sin(x), rtol=1e-12)


def test_hessian_vector_product_against_finite_differences_of_gradients():
    params = mlp_params()
    v = {k: rng.standard_normal(p.shape) for k, p in params.items()}

    def directional(p):
        g = kf.grad(mlp_loss)(p, X, LABELS)
        return sum(np.sum(g[k] * v[k]) for k in g)

    hvp = kf.grad(directional)(params)
    jit_hvp = jit(kf.grad(directional))(params)
    eps = 1e-5
    plus = kf.grad(mlp_loss)({k: p + eps * v[k] for k, p in params.items()}, X, LABELS)
    minus = kf.grad(mlp_loss)({k: p - eps * v[k] for k, p in params.items()}, X, LABELS)
    expected = {k: (plus[k] - minus[k]) / (2 * eps) for k in params}
    assert_tree_close(hvp, expected, rtol=1e-5, atol=1e-8)
    assert_tree_close(jit_hvp, hvp, rtol=1e-12, atol=1e-14)


def test_grad_of_grad_scalar():
    f = lambda x: np.sum(np.sin(x) * x ** 3)   # noqa: E731
    x = rng.standard_normal(4)
    second = kf.grad(lambda x: kf.grad(f)(x).sum())(x)
    expected = -np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * x * np.sin(x)
    np.testing.assert_allclose(second, expected, rtol=1e-10)


def test_grad_closing_over_jit_tracers():
    w = rng.standard_normal((4, 3))

    @jit
    def f(w, x):
        scale = np.sum(x)                                    # a tracer of the jit trace
        g = kf.grad(lambda w: np.sum(np.tanh(x @ w)) * scale)(w)   # x and scale are captured
        return g

    x = rng.standard_normal((2, 4))
    expected = x.T @ (1 - np.tanh(x @ w) ** 2) * np.sum(x)
    np.testing.assert_allclose(f(w, x), expected, rtol=1e-12)


def test_jit_inside_grad():
    inner = jit(lambda w, x: np.tanh(x @ w))
    w = rng.standard_normal((4, 3))
    x = rng.standard_normal((2, 4))
    g = kf.grad(lambda w: np.sum(inner(w, x) ** 2))(w)
    np.testing.assert_allclose(g, numeric_grad(lambda w: np.sum(np.tanh(x @ w) ** 2), w), rtol=1e-6)


# -- whole models against torch ------------------------------------------------------------------------------
def test_logistic_regression_against_torch():
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((10, 3))
    y = (rng.random(10) > 0.5).astype(np.float64)
    w, b = rng.standard_normal(3), np.float64(0.2)

    def loss(w, b):
        p = kf.sigmoid(x @ w + b)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    gw, gb = kf.grad(loss, argnums=(0, 1))(w, b)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(torch.sigmoid(torch.tensor(x) @ tw + tb), torch.tensor(y)).backward()
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-10)


def lenet(params, x):
    h = kf.max_pool2d(kf.relu(kf.conv2d(x, params["c1"], params["b1"], padding=1)), 2)
    h = kf.avg_pool2d(np.tanh(kf.conv2d(h, params["c2"], params["b2"])), 2)
    h = h.reshape(h.shape[0], -1)
    return h @ params["w"] + params["b"]


def test_conv_net_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    params = {"c1": rng.standard_normal((3, 1, 3, 3)) * 0.5, "b1": rng.standard_normal(3) * 0.1,
              "c2": rng.standard_normal((4, 3, 3, 3)) * 0.3, "b2": rng.standard_normal(4) * 0.1,
              "w": rng.standard_normal((4, 5)) * 0.3, "b": np.zeros(5)}
    x = rng.standard_normal((2, 1, 10, 10))
    labels = np.array([1, 4])
    grads = jit(kf.grad(lambda p: kf.cross_entropy(lenet(p, x), labels)))(params)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    h = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), t["c1"], t["b1"], padding=1)), 2)
    h = F.avg_pool2d(torch.tanh(F.conv2d(h, t["c2"], t["b2"])), 2).reshape(2, -1)
    F.cross_entropy(h @ t["w"] + t["b"], torch.tensor(labels)).backward()
    assert_tree_close(grads, {k: v.grad.numpy() for k, v in t.items()}, rtol=1e-5, atol=1e-10)


def test_unrolled_lstm_against_torch():
    torch = pytest.importorskip("torch")
    n_in, n_h, steps, batch = 3, 4, 8, 2
    params = {"wx": rng.standard_normal((n_in, 4 * n_h)) * 0.4, "wh": rng.standard_normal((n_h, 4 * n_h)) * 0.4,
              "b": rng.standard_normal(4 * n_h) * 0.1}
    xs = rng.standard_normal((steps, batch, n_in))

    def loss(params, xs, lib):
        h = c = lib.zeros((batch, n_h), dtype=lib.float64)
        sig = torch.sigmoid if lib is torch else kf.sigmoid
        for x in xs:
            z = x @ params["wx"] + h @ params["wh"] + params["b"]
            i, f, g, o = (z[:, k * n_h:(k + 1) * n_h] for k in range(4))
            c = sig(f) * c + sig(i) * lib.tanh(g)
            h = sig(o) * lib.tanh(c)
        return (h ** 2).sum()

    grads = kf.grad(loss)(params, xs, np)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    loss(t, torch.tensor(xs), torch).backward()
    assert_tree_close(grads, {k: v.grad.numpy() for k, v in t.items()}, rtol=1e-5, atol=1e-12)


# -- composites: gradients by central differences ---------------------------------------------------------------
COMPOSITES = {
    "softmax": lambda x: np.sum(kf.softmax(x, axis=-1) * np.arange(4.0)),
    "log_softmax": lambda x: np.sum(kf.log_softmax(x, axis=0) ** 2),
    "logsumexp": lambda x: kf.logsumexp(x, axis=1).sum(),
    "cross_entropy": lambda x: kf.cross_entropy(x, np.array([0, 3, 1])),
    "layer_norm": lambda x: np.sum(kf.layer_norm(x, np.arange(1.0, 5.0), 0.5) ** 3),
    "gelu": lambda x: kf.gelu(x).sum(), "gelu_tanh": lambda x: kf.gelu(x, approximate=True).sum(),
    "sigmoid": lambda x: np.sum(kf.sigmoid(x) ** 2),
    "relu": lambda x: np.sum(kf.relu(x) * x), "var": lambda x: kf.var(x, axis=0).sum(),
    "indexing": lambda x: np.sum(x[np.arange(3), np.array([1, 0, 3])] * x[::-1, 1:3].sum()),
    "pool": lambda x: kf.max_pool2d(x.reshape(1, 1, 3, 4), 2, stride=1).sum()
    + kf.avg_pool2d(x.reshape(1, 1, 3, 4), (2, 3), padding=1).sum(),
    "where_clip": lambda x: np.sum(np.where(x > 0, x ** 2, np.clip(x, -0.3, 0.3))),
    "concat_pad": lambda x: np.sum(np.concatenate([x, np.pad(x, ((0, 0), (1, 0)))[:, :4]], axis=0) ** 2 * 0.5),
}


@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composite_gradients(name):
    x = rng.standard_normal((3, 4))
    kf.check_grads(COMPOSITES[name], (x,), order=1)


@pytest.mark.parametrize("name", ["softmax", "logsumexp", "layer_norm", "gelu", "cross_entropy"])
def test_composite_second_order(name):
    x = rng.standard_normal((3, 4))
    kf.check_grads(COMPOSITES[name], (x,), order=2, rtol=1e-4)


def test_conv2d_gradients_against_finite_differences():
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    f = lambda x, w: np.sum(np.tanh(kf.conv2d(x, w, stride=2, padding=1)))  # noqa: E731
    kf.check_grads(f, (x, w))


# -- check_grads itself and errors ----------------------------------------------------------------------------
def test_check_grads_reports_the_worst_element():
    x = np.array([0.1, 0.5, -0.2])

    def kink(x):
        return np.sum(np.where(x > 0.5, x, 0.0))   # step at 0.5: the derivative there is not the slope

    with pytest.raises(AssertionError) as e:
        kf.check_grads(kink, (x,))
    assert "x[1]" in str(e.value) and "numeric" in str(e.value)
    err = kf.check_grads(lambda x: np.sum(np.exp(x)), (x,))
    assert 0 <= err < 1e-6
    # integer arguments (labels) are not differentiated by default
    kf.check_grads(lambda x, labels: kf.cross_entropy(x, labels), (rng.standard_normal((2, 3)), np.array([2, 0])))


def test_grad_errors():
    with pytest.raises(TypeError, match="scalar"):
        kf.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match="float"):
        kf.grad(lambda x: np.sum(x))(np.arange(3))
    with pytest.raises(TypeError, match=r"params\['n'\].*int64"):
        kf.grad(lambda params: np.sum(params["w"]) * 2.0)({"w": np.ones(2), "n": np.arange(2)})
    with pytest.raises(TypeError, match="pair"):
        kf.grad(lambda x: np.sum(x), has_aux=True)(np.ones(2))
    with pytest.raises(TypeError, match="float loss"):
        kf.grad(lambda x: np.sum(x > 0))(np.ones(2))


def test_non_differentiated_arguments_may_be_anything():
    def f(x, labels, mode):
        loss = kf.cross_entropy(x, labels, reduction=mode)
        return loss
    x = rng.standard_normal((3, 4))
    g = kf.grad(f)(x, np.array([0, 1, 2]), "sum")
    np.testing.assert_allclose(g, numeric_grad(lambda x: f(x, np.array([0, 1, 2]), "sum"), x), rtol=1e-6)

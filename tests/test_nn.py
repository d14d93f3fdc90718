"""kf.nn layers against torch.nn with copied weights (forward, and gradients w.r.t. weights and inputs), and
the Sequential front: fit / evaluate / predict / save / load / callbacks."""
import numpy as np
import pytest

import kernelflow as kf
from kernelflow import nn

torch = pytest.importorskip("torch")

BACKEND = "interpret"  # the layers' graphs are under test here; the compiled backend is covered elsewhere


def as64(tree):
    return kf.tree_map(lambda a: np.asarray(a, np.float64), tree)


def run_layer(layer, params, x, cotangent, wrt_input=True):
    """Our forward and gradients of sum(output * cotangent) w.r.t. params (and x)."""
    forward = kf.jit(lambda p, x: layer.apply(p, x), backend=BACKEND)
    loss = lambda p, x: np.sum(layer.apply(p, x) * cotangent)  # noqa: E731
    argnums = (0, 1) if wrt_input else 0
    grads = kf.jit(kf.grad(loss, argnums=argnums), backend=BACKEND)(params, x)
    return forward(params, x), grads


def run_torch(module, x, cotangent, forward=None, wrt_input=True):
    module = module.double()
    xt = torch.tensor(x, requires_grad=wrt_input)
    out = forward(module, xt) if forward else module(xt)
    (out * torch.tensor(cotangent)).sum().backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return out.detach().numpy(), grads, (xt.grad.numpy() if wrt_input else None)


def set_weights(module, **arrays):
    module.double()  # before copying, so float64 weights stay exact
    with torch.no_grad():
        for name, value in arrays.items():
            getattr(module, name).copy_(torch.tensor(np.ascontiguousarray(value)))


def close(got, want, what=""):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10, err_msg=what)


def cotangent_for(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# -- Dense ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape", [(5, 7), (3, 4, 7)])
def test_dense(in_shape):
    layer = nn.Dense(6)
    params, out_shape = layer.init(kf.random.key(0), in_shape[1:])
    assert out_shape == in_shape[1:-1] + (6,)
    params = as64(params)
    params["bias"] = np.random.default_rng(2).standard_normal(6)
    x = np.random.default_rng(3).standard_normal(in_shape)
    cot = cotangent_for(in_shape[:-1] + (6,))
    out, (gp, gx) = run_layer(layer, params, x, cot)
    module = torch.nn.Linear(7, 6)
    set_weights(module, weight=params["kernel"].T, bias=params["bias"])
    want, tgrads, tgx = run_torch(module, x, cot)
    close(out, want)
    close(gp["kernel"], tgrads["weight"].T)
    close(gp["bias"], tgrads["bias"])
    close(gx, tgx)


def test_dense_initialisers_have_the_documented_scale():
    params, _ = nn.Dense(300, kernel_initializer="glorot_uniform").init(0, (200,))
    limit = np.sqrt(6 / 500)
    assert np.abs(params["kernel"]).max() <= limit and np.abs(params["kernel"]).max() > 0.95 * limit
    assert np.std(params["kernel"]) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    params, _ = nn.Dense(300, kernel_initializer="he_normal").init(0, (200,))
    assert np.std(params["kernel"]) == pytest.approx(np.sqrt(2 / 200), rel=0.02)
    assert params["bias"].tolist() == [0.0] * 300 and params["kernel"].dtype == np.float32
    again, _ = nn.Dense(300, kernel_initializer="he_normal").init(0, (200,))
    other, _ = nn.Dense(300, kernel_initializer="he_normal").init(1, (200,))
    np.testing.assert_array_equal(again["kernel"], params["kernel"])
    assert not np.array_equal(other["kernel"], params["kernel"])


# -- convolution and pooling ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=2),
                                    dict(groups=2, padding=(1, 2), stride=(1, 2))])
def test_conv2d(kwargs):
    layer = nn.Conv2D(4, 3, **kwargs)
    params, out_shape = layer.init(kf.random.key(1), (2, 9, 8))
    params = as64(params)
    params["bias"] = np.random.default_rng(2).standard_normal(4)
    x = np.random.default_rng(3).standard_normal((2, 2, 9, 8))
    cot = cotangent_for((2,) + out_shape)
    out, (gp, gx) = run_layer(layer, params, x, cot)
    torch_kwargs = {k: v for k, v in kwargs.items() if k != "padding"}
    module = torch.nn.Conv2d(2, 4, 3, padding=kwargs.get("padding", 0), **torch_kwargs)
    set_weights(module, weight=params["kernel"], bias=params["bias"])
    want, tgrads, tgx = run_torch(module, x, cot)
    assert out.shape == want.shape == (2,) + out_shape
    close(out, want)
    close(gp["kernel"], tgrads["weight"])
    close(gp["bias"], tgrads["bias"])
    close(gx, tgx)


@pytest.mark.parametrize("ours, theirs", [(nn.MaxPool2D, torch.nn.MaxPool2d), (nn.AvgPool2D, torch.nn.AvgPool2d)])
@pytest.mark.parametrize("args", [dict(pool_size=2), dict(pool_size=3, stride=2, padding=1),
                                  dict(pool_size=(2, 3), stride=1)])
def test_pooling(ours, theirs, args):
    layer = ours(**args)
    params, out_shape = layer.init(0, (3, 7, 8))
    assert params == {}
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 8))  # continuous values: no ties in max
    cot = cotangent_for((2,) + out_shape)
    out, (_, gx) = run_layer(layer, params, x, cot)
    module = theirs(args["pool_size"], stride=args.get("stride"), padding=args.get("padding", 0))
    want, _, tgx = run_torch(module, x, cot)
    assert out.shape == want.shape
    close(out, want)
    close(gx, tgx)


def test_flatten_and_activations():
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 5))
    for ours, theirs in [(nn.Flatten(), torch.nn.Flatten()), (nn.ReLU(), torch.nn.ReLU()),
                         (nn.Tanh(), torch.nn.Tanh()), (nn.Sigmoid(), torch.nn.Sigmoid()),
                         (nn.Softmax(), torch.nn.Softmax(dim=-1))]:
        params, out_shape = ours.init(0, x.shape[1:])
        cot = cotangent_for((3,) + out_shape)
        out, (_, gx) = run_layer(ours, params, x, cot)
        want, _, tgx = run_torch(theirs, x, cot)
        close(out, want, type(ours).__name__)
        close(gx, tgx, type(ours).__name__)


def test_layer_norm():
    layer = nn.LayerNorm(eps=1e-5)
    params, _ = layer.init(0, (4, 6))
    rng = np.random.default_rng(5)
    params = {"gamma": rng.standard_normal(6), "beta": rng.standard_normal(6)}
    x = rng.standard_normal((3, 4, 6)) * 3 + 1
    cot = cotangent_for((3, 4, 6))
    out, (gp, gx) = run_layer(layer, params, x, cot)
    module = torch.nn.LayerNorm(6, eps=1e-5)
    set_weights(module, weight=params["gamma"], bias=params["beta"])
    want, tgrads, tgx = run_torch(module, x, cot)
    close(out, want)
    close(gp["gamma"], tgrads["weight"])
    close(gp["beta"], tgrads["bias"])
    close(gx, tgx)


def test_embedding():
    layer = nn.Embedding(11, 5)
    params, out_shape = layer.init(kf.random.key(3), (4,))
    assert out_shape == (4, 5) and np.abs(params["embeddings"]).max() <= 0.05
    params = as64(params)
    ids = np.array([[0, 3, 3, 10], [7, 3, 1, 0]], dtype=np.int32)  # repeated ids: gradients accumulate
    cot = cotangent_for((2, 4, 5))
    out, gp = run_layer(layer, params, ids, cot, wrt_input=False)
    module = torch.nn.Embedding(11, 5)
    set_weights(module, weight=params["embeddings"])
    module = module.double()
    tout = module(torch.tensor(ids, dtype=torch.long))
    (tout * torch.tensor(cot)).sum().backward()
    close(out, tout.detach().numpy())
    close(gp["embeddings"], module.weight.grad.numpy())


# -- recurrent layers -----------------------------------------------------------------------------------
def _recurrent_case(ours, theirs, return_sequences, gates):
    F, H, T, N = 3, 5, 4, 2
    layer = ours(H, return_sequences=return_sequences)
    params, out_shape = layer.init(kf.random.key(4), (T, F))
    assert out_shape == ((T, H) if return_sequences else (H,))
    rng = np.random.default_rng(6)
    params = as64(params)
    params["bias"] = rng.standard_normal(gates * H) * 0.5
    if "recurrent_bias" in params:
        params["recurrent_bias"] = rng.standard_normal(gates * H) * 0.5
    x = rng.standard_normal((N, T, F))
    cot = cotangent_for((N,) + out_shape)
    out, (gp, gx) = run_layer(layer, params, x, cot)

    module = theirs(F, H, batch_first=True)
    if "recurrent_bias" in params:
        b_ih, b_hh = params["bias"], params["recurrent_bias"]
    else:  # torch's two biases only ever appear summed: split ours unevenly to check exactly that
        b_hh = rng.standard_normal(gates * H)
        b_ih = params["bias"] - b_hh
    set_weights(module, weight_ih_l0=params["kernel"].T, weight_hh_l0=params["recurrent_kernel"].T,
                bias_ih_l0=b_ih, bias_hh_l0=b_hh)

    def forward(m, xt):
        seq, _ = m(xt)
        return seq if return_sequences else seq[:, -1]

    want, tgrads, tgx = run_torch(module, x, cot, forward)
    close(out, want)
    close(gp["kernel"], tgrads["weight_ih_l0"].T)
    close(gp["recurrent_kernel"], tgrads["weight_hh_l0"].T)
    close(gp["bias"], tgrads["bias_ih_l0"])
    if "recurrent_bias" in params:
        close(gp["recurrent_bias"], tgrads["bias_hh_l0"])
    close(gx, tgx)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("ours, theirs, gates", [(nn.SimpleRNN, torch.nn.RNN, 1), (nn.LSTM, torch.nn.LSTM, 4),
                                                 (nn.GRU, torch.nn.GRU, 3)])
def test_recurrent(ours, theirs, gates, return_sequences):
    _recurrent_case(ours, theirs, return_sequences, gates)


def test_lstm_step_by_step_equals_scan():
    layer = nn.LSTM(4)
    params, _ = layer.init(0, (5, 3))
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    seq, (h, c) = layer.scan(params, x)
    state = layer.initial_state(2)
    for t in range(5):
        out, state = layer.step(params, x[:, t], state)
        np.testing.assert_allclose(out, seq[:, t], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state[1], c, rtol=1e-5, atol=1e-6)
    assert params["bias"][4:8].tolist() == [1.0] * 4  # forget gate bias starts at 1


# -- dropout ----------------------------------------------------------------------------------------------
def test_dropout():
    layer = nn.Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer.apply({}, x), x)  # inference: the identity
    f = kf.jit(lambda x, key: layer.apply({}, x, key=key, training=True), backend=BACKEND)
    y = f(x, kf.random.key(0))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(f(x, kf.random.key(0)), y)  # stateless: the key decides
    assert not np.array_equal(f(x, kf.random.key(1)), y)
    g = kf.jit(kf.grad(lambda x, key: np.sum(layer.apply({}, x, key=key, training=True) * 2.0)),
               backend=BACKEND)(x, kf.random.key(0))
    np.testing.assert_allclose(g, np.where(kept, 2 / 0.75, 0.0), rtol=1e-6)
    with pytest.raises(ValueError, match="needs a random key"):
        layer.apply({}, x, training=True)


# -- Sequential -------------------------------------------------------------------------------------------
def small_lenet():
    return nn.Sequential([nn.Conv2D(3, 3, padding=1), nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(4, 3), nn.Tanh(),
                          nn.AvgPool2D(2), nn.Flatten(), nn.Dense(8), nn.Sigmoid(), nn.Dense(5)], backend=BACKEND)


def torch_lenet(params):
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                            torch.nn.Linear(16, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 5))
    for ours, index in (("conv2d_0", 0), ("conv2d_3", 3)):
        set_weights(m[index], weight=params[ours]["kernel"], bias=params[ours]["bias"])
    for ours, index in (("dense_7", 7), ("dense_9", 9)):
        set_weights(m[index], weight=params[ours]["kernel"].T, bias=params[ours]["bias"])
    return m


def test_sequential_forward_and_gradient_match_torch():
    model = small_lenet()
    params, out_shape = model.init(kf.random.key(7), (1, 12, 12))
    assert out_shape == (5,) and set(params) == {"conv2d_0", "conv2d_3", "dense_7", "dense_9"}
    params = as64(params)
    x = np.random.default_rng(0).standard_normal((3, 1, 12, 12))
    labels = np.array([0, 4, 2], np.int32)
    loss = lambda p: np.mean(nn.losses.cross_entropy(model.apply(p, x), labels))  # noqa: E731
    value, grads = kf.jit(kf.value_and_grad(loss), backend=BACKEND)(params)
    m = torch_lenet(params).double()
    tloss = torch.nn.functional.cross_entropy(m(torch.tensor(x)), torch.tensor(labels, dtype=torch.long))
    tloss.backward()
    close(value, tloss.item())
    close(grads["conv2d_0"]["kernel"], m[0].weight.grad.numpy())
    close(grads["conv2d_3"]["bias"], m[3].bias.grad.numpy())
    close(grads["dense_7"]["kernel"], m[7].weight.grad.numpy().T)
    close(grads["dense_9"]["bias"], m[9].bias.grad.numpy())


def test_fit_step_equals_torch_sgd_step_with_l2():
    """One fit step (a full batch, SGD with momentum, an L2 penalty on one layer) is torch's step."""
    model = nn.Sequential([nn.Dense(6, l2=0.01), nn.Tanh(), nn.Dense(3)], backend=BACKEND)
    model.compile(loss="cross_entropy", optimizer=kf.optim.SGD(0.5, momentum=0.9), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.integers(0, 3, 10)
    model.build((4,), key=3)
    start = kf.tree_map(np.copy, model.params)
    history = model.fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0)

    lin1, lin2 = torch.nn.Linear(4, 6), torch.nn.Linear(6, 3)
    set_weights(lin1, weight=start["dense_0"]["kernel"].T, bias=start["dense_0"]["bias"])
    set_weights(lin2, weight=start["dense_2"]["kernel"].T, bias=start["dense_2"]["bias"])
    opt = torch.optim.SGD(list(lin1.parameters()) + list(lin2.parameters()), lr=0.5, momentum=0.9)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        logits = lin2(torch.tanh(lin1(torch.tensor(x, dtype=torch.float64))))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y)) + 0.01 * (lin1.weight ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(model.params["dense_0"]["kernel"], lin1.weight.detach().numpy().T, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(model.params["dense_2"]["bias"], lin2.bias.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert set(history) == {"loss", "accuracy"} and len(history["loss"]) == 2


def _blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    return (centers[y] + rng.standard_normal((n, 2)) * 0.5).astype(np.float32), y


def test_fit_evaluate_predict_on_a_ragged_last_batch():
    x, y = _blobs(100)
    model = nn.Sequential([nn.Dense(16), nn.ReLU(), nn.Dense(3)], backend=BACKEND)
    model.compile(loss="cross_entropy", optimizer=kf.optim.Adam(0.05), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=5, validation_data=(x[:30], y[:30]), verbose=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 5 for v in history.values())
    assert history["loss"][-1] < history["loss"][0] and history["accuracy"][-1] > 0.9
    # 100 examples in batches of 32: the last batch is padded, so the step is traced once
    assert model._steps["train"].trace_count == 1

    logits = model.predict(x, batch_size=32)
    assert logits.shape == (100, 3)
    result = model.evaluate(x, y, batch_size=32)
    want = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(y)).item()
    assert result["loss"] == pytest.approx(want, rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == y))
    assert model.evaluate(x, y, batch_size=7) == pytest.approx(result, rel=1e-5)


def test_mse_regression_and_steps_per_epoch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    model = nn.Sequential([nn.Dense(1)], backend=BACKEND)
    model.compile(loss="mse", optimizer=kf.optim.SGD(0.1))
    history = model.fit(x, y, batch_size=16, epochs=30, steps_per_epoch=2, verbose=0)
    assert model.step_count == 60
    assert history["loss"][-1] < 0.01 * history["loss"][0]
    np.testing.assert_allclose(model.params["dense_0"]["kernel"][:, 0], [1.0, -2.0, 0.5], atol=0.05)
    pred = model.predict(x)
    assert model.evaluate(x, y)["loss"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-5)


def test_dropout_in_a_model_trains_and_is_off_at_inference():
    x, y = _blobs(64)
    model = nn.Sequential([nn.Dense(16), nn.ReLU(), nn.Dropout(0.5), nn.Dense(16), nn.Dropout(0.2), nn.Dense(3)],
                          backend=BACKEND)
    model.compile(optimizer=kf.optim.Adam(0.02), metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=30, verbose=0)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    assert model.evaluate(x, y)["accuracy"] > 0.85


def test_save_and_load(tmp_path):
    x, y = _blobs(40)
    model = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(3)], backend=BACKEND)
    model.compile(optimizer=kf.optim.Adam(0.05), metrics=["accuracy"])
    model.fit(x, y, batch_size=20, epochs=2, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as f:
        assert sorted(f.files) == ["__input_shape__", "dense_0/bias", "dense_0/kernel", "dense_2/bias",
                                   "dense_2/kernel"]

    fresh = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(3)], backend=BACKEND)
    fresh.compile(optimizer=kf.optim.Adam(0.05), metrics=["accuracy"])
    fresh.load(path)  # builds itself from the recorded input shape
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))

    wider = nn.Sequential([nn.Dense(9), nn.ReLU(), nn.Dense(3)], backend=BACKEND)
    with pytest.raises(ValueError, match=r"dense_0/kernel: the file has shape \[2, 8\], the model \[2, 9\]"):
        wider.load(path)
    deeper = nn.Sequential([nn.Dense(8), nn.ReLU(), nn.Dense(3), nn.Dense(3)], backend=BACKEND)
    with pytest.raises(ValueError, match="missing dense_3/kernel"):
        deeper.load(path)
    other = nn.Sequential([nn.Dense(8), nn.Dense(3)], backend=BACKEND)
    with pytest.raises(ValueError, match="unexpected dense_2/kernel"):
        other.load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        fresh.load(tmp_path / "junk.npz")


class _Holder:
    params = None
    stop_training = False


def test_early_stopping_patience_and_restore():
    cb = nn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    model = _Holder()
    cb.on_train_begin(model)
    for epoch, value in enumerate([1.0, 0.8, 0.9, 0.85, 0.7]):
        model.params = {"epoch": epoch}
        cb.on_epoch_end(epoch, {"val_loss": value}, model)
        if model.stop_training:
            break
    assert cb.stopped_epoch == 3 and model.params == {"epoch": 1}
    acc = nn.EarlyStopping(monitor="val_accuracy", patience=0, min_delta=0.05)
    acc.on_train_begin(model)
    model.stop_training = False
    acc.on_epoch_end(0, {"val_accuracy": 0.5}, model)
    acc.on_epoch_end(1, {"val_accuracy": 0.53}, model)  # not better by more than min_delta
    assert model.stop_training and acc.mode == "max"
    with pytest.raises(KeyError, match="validation_data"):
        nn.EarlyStopping().on_epoch_end(0, {"loss": 1.0}, model)


def test_early_stopping_ends_fit():
    x, y = _blobs(40)
    model = nn.Sequential([nn.Dense(3)], backend=BACKEND)
    model.compile(optimizer=kf.optim.SGD(0.0))  # learns nothing: the loss never improves
    history = model.fit(x, y, batch_size=40, epochs=10, validation_data=(x, y), verbose=0,
                        callbacks=[nn.EarlyStopping(patience=2)])
    assert len(history["loss"]) == 3


def test_verbose_output(capsys, monkeypatch):
    from kernelflow.nn import progress
    monkeypatch.setattr(progress, "tqdm", None)
    x, y = _blobs(40)
    model = nn.Sequential([nn.Dense(3)], backend=BACKEND)
    model.compile(optimizer=kf.optim.SGD(0.1), metrics=["accuracy"])
    model.fit(x, y, batch_size=20, epochs=2, verbose=0)
    assert capsys.readouterr().err == ""
    model.fit(x, y, batch_size=20, epochs=2, verbose=2)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[1].startswith("Epoch 2/2") and "accuracy:" in err[1]


def test_helpful_errors():
    model = nn.Sequential([nn.Dense(3)], backend=BACKEND)
    x, y = _blobs(10)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y)
    model.compile(metrics=["accuracy"])
    with pytest.raises(TypeError, match="integer class labels"):
        model.fit(x, y.astype(np.float32))
    model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"examples of shape \[5\]"):
        model.evaluate(np.zeros((4, 5), np.float32), y[:4])
    with pytest.raises(ValueError, match="unknown metric"):
        model.compile(metrics=["f1"])
    with pytest.raises(TypeError, match="not a kf.nn layer"):
        nn.Sequential([nn.Dense(3), "relu"])
    with pytest.raises(ValueError, match="conv2d_0.*does not fit"):
        nn.Sequential([nn.Conv2D(2, 5)]).init(0, (1, 3, 3))
    with pytest.raises(ValueError, match="Conv2D expects images"):
        nn.Conv2D(2, 3).init(0, (8, 8))


def test_progress_bar_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    x, y = _blobs(40)
    model = nn.Sequential([nn.Dense(3)], backend=BACKEND)
    model.compile(optimizer=kf.optim.SGD(0.1), metrics=["accuracy"])
    model.fit(x, y, batch_size=10, epochs=2, validation_data=(x, y), verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "4/4" in err and "val_accuracy=" in err

"""kf.optim against torch.optim: the same 10-step parameter sequence from the same start and gradients."""
import numpy as np
import pytest

import kernelflow as kf
from kernelflow import optim

torch = pytest.importorskip("torch")

# (our optimizer, torch's, keyword arguments shared by both)
CASES = [
    ("SGD", "SGD", dict(lr=0.1)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adagrad", "Adagrad", dict()),
    ("Adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5)),
    ("RMSprop", "RMSprop", dict()),
    ("RMSprop", "RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.1)),
    ("RMSProp", "RMSprop", dict(momentum=0.9)),
    ("Adam", "Adam", dict()),
    ("Adam", "Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("AdamW", "AdamW", dict()),
    ("AdamW", "AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
]


def _start(dtype):
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(4).astype(dtype),
            "layers": [rng.standard_normal((2, 2)).astype(dtype)]}


def _grad(x, step, xp):
    """A gradient that depends on the current parameters and the step (the same formula for both)."""
    return xp.sin(x * 3.0) + 0.5 * x + 0.1 * step


def _run_ours(name, kwargs, dtype, steps=10, jit=False):
    opt = getattr(optim, name)(**kwargs)
    params = _start(dtype)
    state = opt.init(params)
    update = kf.jit(opt.update) if jit else opt.update
    history = []
    for step in range(steps):
        grads = {"w": _grad(params["w"], step, np), "b": _grad(params["b"], step, np),
                 "layers": [_grad(params["layers"][0], step, np)]}
        params, state = update(grads, state, params)
        history.append(params)
    return history, state


def _run_torch(name, kwargs, dtype, steps=10):
    start = _start(dtype)
    tensors = [torch.tensor(start["w"]), torch.tensor(start["b"]), torch.tensor(start["layers"][0])]
    for t in tensors:
        t.requires_grad_(True)
    opt = getattr(torch.optim, name)(tensors, **kwargs)
    history = []
    for step in range(steps):
        opt.zero_grad()
        for t in tensors:
            t.grad = _grad(t.detach(), step, torch).clone()
        opt.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    return history


@pytest.mark.parametrize("ours, theirs, kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_update_sequence_matches_torch(ours, theirs, kwargs, dtype, rtol):
    mine, state = _run_ours(ours, kwargs, dtype)
    reference = _run_torch(theirs, kwargs, dtype)
    for step, (p, (w, b, layer)) in enumerate(zip(mine, reference)):
        for got, want in ((p["w"], w), (p["b"], b), (p["layers"][0], layer)):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=f"step {step + 1}")
    assert state["step"] == 10 and state["step"].dtype == np.dtype(dtype)


def test_defaults_are_torchs():
    import inspect
    for ours, theirs in [("SGD", "SGD"), ("Adagrad", "Adagrad"), ("RMSprop", "RMSprop"), ("Adam", "Adam"),
                         ("AdamW", "AdamW")]:
        mine = inspect.signature(getattr(optim, ours)).parameters
        reference = inspect.signature(getattr(torch.optim, theirs)).parameters
        for name, p in mine.items():
            want = reference[name].default
            assert p.default == want, f"{ours}({name}={p.default}) but torch has {want}"


def test_state_is_a_pytree_of_arrays_and_nothing_is_mutated():
    opt = optim.Adam(0.1)
    params = _start(np.float32)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else [x.copy() for x in v]) for k, v in params.items()}
    state = opt.init(params)
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["exp_avg"]["layers"][0].shape == (2, 2)
    grads = {"w": np.ones((3, 4), np.float32), "b": np.ones(4, np.float32), "layers": [np.ones((2, 2), np.float32)]}
    new_params, new_state = opt.update(grads, state, params)
    np.testing.assert_array_equal(params["w"], before["w"])
    assert state["step"] == 0 and new_state["step"] == 1
    assert not np.allclose(new_params["w"], params["w"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD(lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)
    opt = optim.SGD(0.1, momentum=0.9)
    state = opt.init({"a": np.zeros(2)})
    with pytest.raises(ValueError, match="structure"):
        opt.update({"b": np.zeros(2)}, state, {"a": np.zeros(2)})


@pytest.mark.parametrize("ours, theirs, kwargs", [CASES[3], CASES[5], CASES[7], CASES[10], CASES[12]])
def test_update_traces_inside_jit(ours, theirs, kwargs):
    compiled, compiled_state = _run_ours(ours, kwargs, np.float32, steps=4, jit=True)
    eager, eager_state = _run_ours(ours, kwargs, np.float32, steps=4)
    for got, want in zip(compiled, eager):
        for k in ("w", "b"):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert float(compiled_state["step"]) == 4

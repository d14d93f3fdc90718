"""W7: one SGD training step of a character LSTM: vocab 65, hidden 256, 64 steps unrolled, batch 32.

Inputs are one-hot characters `xs` (T, B, V) and the next characters `ys` (T, B). Each step:
`a = xs[t] @ wx + h @ wh + b`, gates i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of the four H-wide slices
of `a`, `c = f*c + i*g`, `h = o*tanh(c)`, `logits = h @ wy + by`; the loss is the cross-entropy at every step,
averaged over all T*B predictions. h and c start at zero. The autodiff frameworks run exactly this loop; the
hand-written numpy version batches the input and output projections over all steps (the same arithmetic).
"""
from __future__ import annotations

import sys

import numpy as np

from ..harness import Tolerance, Workload
from ..peers import train_step_builders, train_view
from .common import log_softmax, numpy_cross_entropy_with_grad


def make_data(quick: bool) -> dict:
    steps, batch, vocab, hidden = (3, 2, 7, 8) if quick else (64, 32, 65, 256)
    rng = np.random.default_rng(7)
    scale = 1 / np.sqrt(hidden)
    params = {
        "wx": (rng.standard_normal((vocab, 4 * hidden)) * scale).astype(np.float32),
        "wh": (rng.standard_normal((hidden, 4 * hidden)) * scale).astype(np.float32),
        "b": (0.1 * rng.standard_normal(4 * hidden)).astype(np.float32),
        "wy": (rng.standard_normal((hidden, vocab)) * scale).astype(np.float32),
        "by": (0.1 * rng.standard_normal(vocab)).astype(np.float32),
    }
    tokens = rng.integers(0, vocab, (steps + 1, batch))
    xs = np.eye(vocab, dtype=np.float32)[tokens[:-1]]
    return {"params": params, "args": [xs, tokens[1:]], "lr": 0.5}


def loss_numpy_style(p, xs, ys):
    """The model as a kernelflow user writes it (kf.sigmoid for the gates, numpy for the rest)."""
    import kernelflow as kf
    steps, batch, _ = xs.shape
    hidden = p["wh"].shape[0]
    h = np.zeros((batch, hidden), np.float32)
    c = np.zeros((batch, hidden), np.float32)
    total = 0.0
    for t in range(steps):
        a = xs[t] @ p["wx"] + h @ p["wh"] + p["b"]
        i = kf.sigmoid(a[:, :hidden])
        f = kf.sigmoid(a[:, hidden:2 * hidden])
        g = np.tanh(a[:, 2 * hidden:3 * hidden])
        o = kf.sigmoid(a[:, 3 * hidden:])
        c = f * c + i * g
        h = o * np.tanh(c)
        logp = log_softmax(h @ p["wy"] + p["by"])
        total = total - logp[np.arange(batch), ys[t]].sum()
    return total / (steps * batch)


def loss_torch(p, xs, ys):
    import torch
    import torch.nn.functional as F
    steps, batch, _ = xs.shape
    hidden = p["wh"].shape[0]
    h = torch.zeros((batch, hidden))
    c = torch.zeros((batch, hidden))
    total = 0.0
    for t in range(steps):
        a = xs[t] @ p["wx"] + h @ p["wh"] + p["b"]
        i = torch.sigmoid(a[:, :hidden])
        f = torch.sigmoid(a[:, hidden:2 * hidden])
        g = torch.tanh(a[:, 2 * hidden:3 * hidden])
        o = torch.sigmoid(a[:, 3 * hidden:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        total = total + F.cross_entropy(h @ p["wy"] + p["by"], ys[t], reduction="sum")
    return total / (steps * batch)


def loss_jax(p, xs, ys):
    import jax
    import jax.numpy as jnp
    steps, batch, _ = xs.shape
    hidden = p["wh"].shape[0]
    h = jnp.zeros((batch, hidden), jnp.float32)
    c = jnp.zeros((batch, hidden), jnp.float32)
    total = 0.0
    for t in range(steps):          # unrolled, like the others (not lax.scan)
        a = xs[t] @ p["wx"] + h @ p["wh"] + p["b"]
        i = jax.nn.sigmoid(a[:, :hidden])
        f = jax.nn.sigmoid(a[:, hidden:2 * hidden])
        g = jnp.tanh(a[:, 2 * hidden:3 * hidden])
        o = jax.nn.sigmoid(a[:, 3 * hidden:])
        c = f * c + i * g
        h = o * jnp.tanh(c)
        logp = jax.nn.log_softmax(h @ p["wy"] + p["by"], axis=-1)
        total = total - jnp.sum(jnp.take_along_axis(logp, ys[t][:, None], axis=1))
    return total / (steps * batch)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def step_numpy(p, xs, ys, lr):
    """Hand-written forward and backpropagation through time."""
    steps, batch, vocab = xs.shape
    hidden = p["wh"].shape[0]
    x_proj = (xs.reshape(steps * batch, vocab) @ p["wx"]).reshape(steps, batch, 4 * hidden) + p["b"]
    hs = np.zeros((steps + 1, batch, hidden), np.float32)     # hs[t + 1] is h after step t; hs[0] = 0
    cs = np.zeros((steps + 1, batch, hidden), np.float32)
    gates = np.empty((steps, batch, 4 * hidden), np.float32)  # i, f, g, o after their nonlinearities
    tanh_c = np.empty((steps, batch, hidden), np.float32)
    for t in range(steps):
        a = x_proj[t] + hs[t] @ p["wh"]
        gates[t, :, :2 * hidden] = sigmoid(a[:, :2 * hidden])
        gates[t, :, 2 * hidden:3 * hidden] = np.tanh(a[:, 2 * hidden:3 * hidden])
        gates[t, :, 3 * hidden:] = sigmoid(a[:, 3 * hidden:])
        i, f, g, o = np.split(gates[t], 4, axis=1)
        cs[t + 1] = f * cs[t] + i * g
        tanh_c[t] = np.tanh(cs[t + 1])
        hs[t + 1] = o * tanh_c[t]
    h_all = hs[1:].reshape(steps * batch, hidden)
    logits = h_all @ p["wy"] + p["by"]
    loss, dlogits = numpy_cross_entropy_with_grad(logits, ys.reshape(-1), 1 / (steps * batch))

    grads = {"wy": h_all.T @ dlogits, "by": dlogits.sum(axis=0)}
    dh_from_output = (dlogits @ p["wy"].T).reshape(steps, batch, hidden)
    da = np.empty((steps, batch, 4 * hidden), np.float32)
    dh_next = np.zeros((batch, hidden), np.float32)
    dc_next = np.zeros((batch, hidden), np.float32)
    for t in range(steps - 1, -1, -1):
        i, f, g, o = np.split(gates[t], 4, axis=1)
        dh = dh_from_output[t] + dh_next
        dc = dc_next + dh * o * (1 - tanh_c[t] * tanh_c[t])
        da[t, :, :hidden] = dc * g * i * (1 - i)
        da[t, :, hidden:2 * hidden] = dc * cs[t] * f * (1 - f)
        da[t, :, 2 * hidden:3 * hidden] = dc * i * (1 - g * g)
        da[t, :, 3 * hidden:] = dh * tanh_c[t] * o * (1 - o)
        dc_next = dc * f
        dh_next = da[t] @ p["wh"].T
    da_all = da.reshape(steps * batch, 4 * hidden)
    grads["wx"] = xs.reshape(steps * batch, vocab).T @ da_all
    grads["wh"] = hs[:-1].reshape(steps * batch, hidden).T @ da_all
    grads["b"] = da_all.sum(axis=0)
    return loss, {name: p[name] - lr * grads[name] for name in p}


# Backpropagation through 64 steps accumulates rounding differences of 64 chained GEMMs: ~1e-5 relative.
W7 = Workload(
    key="W7", title="LSTM train step",
    description="SGD step, char LSTM, vocab 65, hidden 256, 64 steps unrolled, batch 32, "
                "cross-entropy at every step (mean), lr 0.5",
    make_data=make_data,
    builders=train_step_builders(sys.modules[__name__], uses=("sigmoid",)),
    tolerance=Tolerance(rtol=1e-3, atol_rel=1e-4),
    check_view=train_view,
    goal=("torch.compile", 0.8),
)

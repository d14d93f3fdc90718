"""W5: one SGD training step of an MLP, batch 128, 784-256-256-10, relu, mean softmax cross-entropy.

The step is forward + backward + update `p - lr * grad` of all six parameters, returning (loss, new params).
"""
from __future__ import annotations

import sys

import numpy as np

from ..harness import Tolerance, Workload
from ..peers import train_step_builders, train_view
from .common import cross_entropy, dense_params, numpy_cross_entropy_with_grad

LAYERS = 3


def make_data(quick: bool) -> dict:
    batch, sizes = (8, (20, 16, 16, 10)) if quick else (128, (784, 256, 256, 10))
    rng = np.random.default_rng(5)
    params = dense_params(rng, sizes)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    return {"params": params, "args": [x, y], "lr": 0.1}


def loss_numpy_style(params, x, y):
    """The model as a kernelflow user writes it: plain numpy, traced by kf.jit."""
    h = x
    for i in range(1, LAYERS + 1):
        h = h @ params[f"fc{i}_w"] + params[f"fc{i}_b"]
        if i < LAYERS:
            h = np.maximum(h, 0.0)
    return cross_entropy(h, y)


def loss_torch(params, x, y):
    import torch
    import torch.nn.functional as F
    h = x
    for i in range(1, LAYERS + 1):
        h = h @ params[f"fc{i}_w"] + params[f"fc{i}_b"]
        if i < LAYERS:
            h = torch.relu(h)
    return F.cross_entropy(h, y)


def loss_jax(params, x, y):
    import jax
    import jax.numpy as jnp
    h = x
    for i in range(1, LAYERS + 1):
        h = h @ params[f"fc{i}_w"] + params[f"fc{i}_b"]
        if i < LAYERS:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def step_numpy(params, x, y, lr):
    """Hand-written forward and backward."""
    pre, acts = [], [x]
    h = x
    for i in range(1, LAYERS + 1):
        z = h @ params[f"fc{i}_w"] + params[f"fc{i}_b"]
        pre.append(z)
        h = np.maximum(z, 0) if i < LAYERS else z
        acts.append(h)
    loss, grad = numpy_cross_entropy_with_grad(acts[-1], y, 1 / x.shape[0])
    new = {}
    for i in range(LAYERS, 0, -1):
        if i < LAYERS:
            grad = grad * (pre[i - 1] > 0)
        w = params[f"fc{i}_w"]
        new[f"fc{i}_w"] = w - lr * (acts[i - 1].T @ grad)
        new[f"fc{i}_b"] = params[f"fc{i}_b"] - lr * grad.sum(axis=0)
        if i > 1:
            grad = grad @ w.T
    return loss, new


# GEMMs of 784-long dot products summed in different blocked orders: ~1e-6 relative.
W5 = Workload(
    key="W5", title="MLP train step",
    description="SGD step, batch 128, 784-256-256-10 relu, mean softmax cross-entropy, lr 0.1",
    make_data=make_data,
    builders=train_step_builders(sys.modules[__name__]),
    tolerance=Tolerance(rtol=1e-3, atol_rel=1e-4),
    check_view=train_view,
    goal=("best peer", 0.8),
)

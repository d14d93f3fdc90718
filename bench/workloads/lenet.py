"""W6: one SGD training step of LeNet-5, batch 64, 1x28x28 inputs.

conv5x5(6, pad 2) -> relu -> maxpool2 -> conv5x5(16) -> relu -> maxpool2 -> flatten(400) -> 120 -> relu -> 84
-> relu -> 10 -> mean softmax cross-entropy; SGD on all ten parameters. Convolutions follow
torch.nn.functional (NCHW inputs, OIHW weights). Pooling comes after relu, so a 2x2 window of tied zeros
(where frameworks route the gradient differently) always sits where relu's gradient is zero anyway.
"""
from __future__ import annotations

import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..harness import Tolerance, Workload
from ..peers import train_step_builders, train_view
from .common import cross_entropy, dense_params, numpy_cross_entropy_with_grad


def make_data(quick: bool) -> dict:
    batch = 2 if quick else 64
    rng = np.random.default_rng(6)
    params = {
        "conv1_w": (rng.standard_normal((6, 1, 5, 5)) * np.sqrt(2 / 25)).astype(np.float32),
        "conv1_b": (0.1 * rng.standard_normal(6)).astype(np.float32),
        "conv2_w": (rng.standard_normal((16, 6, 5, 5)) * np.sqrt(2 / 150)).astype(np.float32),
        "conv2_b": (0.1 * rng.standard_normal(16)).astype(np.float32),
    }
    params.update(dense_params(rng, (400, 120, 84, 10)))
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return {"params": params, "args": [x, y], "lr": 0.05}


def dense_head(p, h, relu):
    h = relu(h @ p["fc1_w"] + p["fc1_b"])
    h = relu(h @ p["fc2_w"] + p["fc2_b"])
    return h @ p["fc3_w"] + p["fc3_b"]


def loss_numpy_style(p, x, y):
    """The model as a kernelflow user writes it."""
    import kernelflow as kf

    def relu(v):
        return np.maximum(v, 0.0)
    h = kf.max_pool2d(relu(kf.conv2d(x, p["conv1_w"], p["conv1_b"], padding=2)), 2)
    h = kf.max_pool2d(relu(kf.conv2d(h, p["conv2_w"], p["conv2_b"])), 2)
    return cross_entropy(dense_head(p, h.reshape(x.shape[0], 400), relu), y)


def loss_torch(p, x, y):
    import torch
    import torch.nn.functional as F
    h = F.max_pool2d(torch.relu(F.conv2d(x, p["conv1_w"], p["conv1_b"], padding=2)), 2)
    h = F.max_pool2d(torch.relu(F.conv2d(h, p["conv2_w"], p["conv2_b"])), 2)
    return F.cross_entropy(dense_head(p, h.reshape(x.shape[0], 400), torch.relu), y)


def loss_jax(p, x, y):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(v, w, b, pad):
        out = lax.conv_general_dilated(v, w, (1, 1), [(pad, pad), (pad, pad)],
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + b[None, :, None, None]

    def pool(v):
        return lax.reduce_window(v, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = pool(jax.nn.relu(conv(x, p["conv1_w"], p["conv1_b"], 2)))
    h = pool(jax.nn.relu(conv(h, p["conv2_w"], p["conv2_b"], 0)))
    logits = dense_head(p, h.reshape(x.shape[0], 400), jax.nn.relu)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


# --- numpy eager: im2col convolution and argmax pooling, forward and backward by hand --------------------

def conv_forward(x, w, b, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))            # n, c, ho, wo, kh, kw
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    out = cols @ w.reshape(o, -1).T + b                                   # (n*ho*wo, o)
    return np.ascontiguousarray(out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)), cols


def conv_backward(dout, cols, x_shape, w, pad, need_dx):
    n, c, h, wd = x_shape
    o, _, kh, kw = w.shape
    ho, wo = dout.shape[2:]
    dmat = dout.transpose(0, 2, 3, 1).reshape(n * ho * wo, o)
    dw = (dmat.T @ cols).reshape(w.shape)
    db = dmat.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dcols = (dmat @ w.reshape(o, -1)).reshape(n, ho, wo, c, kh, kw)
    dxp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.float32)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + ho, j:j + wo] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw, db


def pool_forward(x):
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    argmax = windows.argmax(axis=-1)
    return np.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0], argmax


def pool_backward(dout, argmax, x_shape):
    n, c, h, w = x_shape
    dwindows = np.zeros((n, c, h // 2, w // 2, 4), np.float32)
    np.put_along_axis(dwindows, argmax[..., None], dout[..., None], axis=-1)
    return dwindows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def step_numpy(p, x, y, lr):
    n = x.shape[0]
    a1, cols1 = conv_forward(x, p["conv1_w"], p["conv1_b"], 2)
    r1 = np.maximum(a1, 0)
    p1, arg1 = pool_forward(r1)
    a2, cols2 = conv_forward(p1, p["conv2_w"], p["conv2_b"], 0)
    r2 = np.maximum(a2, 0)
    p2, arg2 = pool_forward(r2)
    f0 = p2.reshape(n, 400)
    z1 = f0 @ p["fc1_w"] + p["fc1_b"]
    f1 = np.maximum(z1, 0)
    z2 = f1 @ p["fc2_w"] + p["fc2_b"]
    f2 = np.maximum(z2, 0)
    logits = f2 @ p["fc3_w"] + p["fc3_b"]
    loss, d = numpy_cross_entropy_with_grad(logits, y, 1 / n)

    g = {"fc3_w": f2.T @ d, "fc3_b": d.sum(axis=0)}
    d = (d @ p["fc3_w"].T) * (z2 > 0)
    g["fc2_w"], g["fc2_b"] = f1.T @ d, d.sum(axis=0)
    d = (d @ p["fc2_w"].T) * (z1 > 0)
    g["fc1_w"], g["fc1_b"] = f0.T @ d, d.sum(axis=0)
    d = (d @ p["fc1_w"].T).reshape(p2.shape)
    d = pool_backward(d, arg2, r2.shape) * (a2 > 0)
    d, g["conv2_w"], g["conv2_b"] = conv_backward(d, cols2, p1.shape, p["conv2_w"], 0, need_dx=True)
    d = pool_backward(d, arg1, r1.shape) * (a1 > 0)
    _, g["conv1_w"], g["conv1_b"] = conv_backward(d, cols1, x.shape, p["conv1_w"], 2, need_dx=False)
    return loss, {name: p[name] - lr * g[name] for name in p}


W6 = Workload(
    key="W6", title="LeNet5 train step",
    description="SGD step, batch 64, LeNet-5 on 1x28x28 (conv 6@5x5 pad 2, pool, conv 16@5x5, pool, "
                "400-120-84-10), relu, mean softmax cross-entropy, lr 0.05",
    make_data=make_data,
    builders=train_step_builders(sys.modules[__name__], uses=("conv2d", "max_pool2d")),
    tolerance=Tolerance(rtol=1e-3, atol_rel=1e-4),
    check_view=train_view,
    goal=("torch", 1.0),
)

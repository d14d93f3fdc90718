"""W3 row softmax and W4 layer_norm over a (4096, 1024) float32 matrix (16 MiB: it fits in L3 here).

Both are one pass of reductions per row followed by a pointwise pass; the floor is reading the input once and
writing the output once.
"""
from __future__ import annotations

import numpy as np

from ..harness import Tolerance, Workload
from ..peers import jax_function, kernelflow_function, numpy_function, torch_function

EPS = 1e-5


def make_softmax_data(quick: bool) -> dict:
    shape = (64, 128) if quick else (4096, 1024)
    x = 3 * np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    return {"args": [x]}


def make_layer_norm_data(quick: bool) -> dict:
    shape = (64, 128) if quick else (4096, 1024)
    rng = np.random.default_rng(4)
    x = 2 * rng.standard_normal(shape, dtype=np.float32) + 0.5
    gamma = 1 + 0.1 * rng.standard_normal(shape[-1], dtype=np.float32)
    beta = 0.1 * rng.standard_normal(shape[-1], dtype=np.float32)
    return {"args": [x, gamma, beta]}


def bytes_moved(data: dict) -> int:
    x = data["args"][0]
    return 2 * x.nbytes + sum(a.nbytes for a in data["args"][1:])


# --- W3 ---------------------------------------------------------------------------------------------------

def softmax_numpy(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_torch(x):
    import torch
    return torch.softmax(x, dim=-1)


def softmax_jax(x):
    import jax
    return jax.nn.softmax(x, axis=-1)


def softmax_kernelflow(x):
    import kernelflow as kf
    return kf.softmax(x, axis=-1)


# --- W4 ---------------------------------------------------------------------------------------------------

def layer_norm_numpy(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(var + EPS) * gamma + beta


def layer_norm_torch(x, gamma, beta):
    import torch.nn.functional as F
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps=EPS)


def layer_norm_jax(x, gamma, beta):
    import jax.numpy as jnp
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + EPS) * gamma + beta


def layer_norm_kernelflow(x, gamma, beta):
    import kernelflow as kf
    return kf.layer_norm(x, gamma, beta, eps=EPS)


# Sums over 1024 elements in different orders (pairwise, blocked, vectorized) differ by ~1e-7 relative.
ROW_TOLERANCE = Tolerance(rtol=1e-5, atol_rel=1e-6)

W3 = Workload(
    key="W3", title="row softmax",
    description="softmax over the last axis of a (4096, 1024) float32 matrix",
    make_data=make_softmax_data,
    builders={
        "numpy": lambda d: numpy_function(softmax_numpy, d["args"]),
        "torch": lambda d: torch_function(softmax_torch, d["args"]),
        "torch.compile": lambda d: torch_function(softmax_torch, d["args"], compiled=True),
        "jax.jit": lambda d: jax_function(softmax_jax, d["args"]),
        "kernelflow": lambda d: kernelflow_function(softmax_kernelflow, d["args"], uses=("softmax",)),
    },
    tolerance=ROW_TOLERANCE,
    bytes_moved=bytes_moved,
    goal=("torch", 1.0),
)

W4 = Workload(
    key="W4", title="layer_norm",
    description="layer_norm over the last axis of a (4096, 1024) float32 matrix, gamma/beta (1024,), eps 1e-5",
    make_data=make_layer_norm_data,
    builders={
        "numpy": lambda d: numpy_function(layer_norm_numpy, d["args"]),
        "torch": lambda d: torch_function(layer_norm_torch, d["args"]),
        "torch.compile": lambda d: torch_function(layer_norm_torch, d["args"], compiled=True),
        "jax.jit": lambda d: jax_function(layer_norm_jax, d["args"]),
        "kernelflow": lambda d: kernelflow_function(layer_norm_kernelflow, d["args"], uses=("layer_norm",)),
    },
    tolerance=ROW_TOLERANCE,
    bytes_moved=bytes_moved,
    goal=("torch", 1.0),
)

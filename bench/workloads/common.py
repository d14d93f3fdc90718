"""Pieces the training-step workloads share: parameter initialisation and the numpy-style cross-entropy."""
from __future__ import annotations

import numpy as np


def dense_params(rng: np.random.Generator, sizes: tuple[int, ...], prefix: str = "fc") -> dict:
    """He-initialised weights `(fan_in, fan_out)` and small non-zero biases, float32, for layers
    sizes[0] -> sizes[1] -> ...; names fc1_w, fc1_b, fc2_w, ..."""
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"{prefix}{i}_w"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(np.float32)
        params[f"{prefix}{i}_b"] = (0.1 * rng.standard_normal(fan_out)).astype(np.float32)
    return params


def log_softmax(z):
    """Plain numpy code: it runs eagerly on numpy arrays and traces under kf.jit."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer `labels` under softmax(`logits`), numpy style."""
    logp = log_softmax(logits)
    return -logp[np.arange(logits.shape[0]), labels].mean()


def numpy_cross_entropy_with_grad(logits: np.ndarray, labels: np.ndarray, scale: float):
    """Hand-written: sum of -log softmax(logits)[label] times `scale`, and its gradient w.r.t. logits."""
    rows = np.arange(logits.shape[0])
    logp = log_softmax(logits)
    loss = -logp[rows, labels].sum() * np.float32(scale)
    dlogits = np.exp(logp)
    dlogits[rows, labels] -= 1
    dlogits *= np.float32(scale)
    return loss, dlogits

"""Losses per example (so the fit loop can weight and average them) and the accuracy metric."""
from __future__ import annotations

import numpy as np


def _mean_over_example_axes(x):
    """[N, ...] -> [N]: the mean over every axis but the first (a sequence's loss is its per-step mean)."""
    return np.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def cross_entropy(logits, labels):
    """Per-example softmax cross-entropy of logits [N, ..., C] against integer labels [N, ...]."""
    import kernelflow as kf  # noqa: PLC0415
    log_probs = kf.log_softmax(logits, axis=-1)
    classes = np.arange(logits.shape[-1], dtype=labels.dtype)
    one_hot = (np.expand_dims(labels, -1) == classes).astype(log_probs.dtype)
    return _mean_over_example_axes(-np.sum(log_probs * one_hot, axis=-1))


def mse(predictions, targets):
    """Per-example mean squared error."""
    diff = predictions - targets
    return _mean_over_example_axes(diff * diff)


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example accuracy (numpy, outside the compiled step): argmax of the outputs equals the label
    (averaged over a sequence's steps)."""
    correct = (np.argmax(outputs, axis=-1) == labels).astype(np.float64)
    return correct.reshape(len(correct), -1).mean(axis=1)


METRICS = {"accuracy": accuracy}


def get_loss(loss):
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)} (or a function "
                         f"(outputs, targets) -> per-example losses [N])")
    return LOSSES[loss]

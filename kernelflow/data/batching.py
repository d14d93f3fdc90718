"""Mini-batches over arrays, optionally shuffled with a seeded generator."""
from __future__ import annotations

import numpy as np


def num_batches(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def batches(x, y=None, batch_size: int = 32, shuffle: bool = True, seed=None, drop_remainder: bool = False):
    """Yield ``(x_batch, y_batch)`` (or ``x_batch`` alone when ``y`` is None) along the first axis.

    ``shuffle`` draws one permutation per call from ``np.random.default_rng(seed)``; pass a different seed
    per epoch (for example ``seed=epoch``) for a different order each epoch. The last batch is smaller
    unless ``drop_remainder``.
    """
    x = np.asarray(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y have different lengths: {len(x)} and {len(y)}")
    n = len(x)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield (x[idx], y[idx]) if y is not None else x[idx]

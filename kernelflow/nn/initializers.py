"""Weight initialisers (Glorot, He, ...) and the random keys that drive them.

Initialisation happens once, eagerly, in numpy: a key (a u32[2] array such as ``kf.random.key(0)``, or a
plain int seed) seeds a ``numpy.random.Generator`` through ``SeedSequence``, so the same key gives the same
parameters on every machine. Training-time randomness (dropout) instead uses ``kf.random`` inside the
compiled graph.
"""
from __future__ import annotations

import math

import numpy as np


def key_words(key) -> list[int]:
    """The integers of a key: an int seed, or an unsigned array (a kf.random key)."""
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"a seed must be non-negative, got {key}")
        return [int(key)]
    array = np.asarray(key)
    if array.dtype.kind not in "ui" or array.size == 0:
        raise TypeError(f"a key must be an int seed or an integer array such as kf.random.key(0), got "
                        f"{array.dtype}{list(array.shape)}")
    return [int(w) for w in array.ravel()]


def rng_from_key(key) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(key_words(key)))


def split_key(key, num: int = 2) -> np.ndarray:
    """``num`` new keys (u32[num, 2]) derived from ``key``, for initialisation."""
    return rng_from_key(key).integers(0, 2**32, size=(num, 2), dtype=np.uint32)


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: Dense and recurrent kernels are [in, out]; conv kernels are OIHW, whose
    fans are channels times the receptive field (as in Keras and torch)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive = shape[2] * shape[3]
        return shape[1] * receptive, shape[0] * receptive
    if len(shape) == 1:
        return shape[0], shape[0]
    raise ValueError(f"no fan-in/fan-out convention for a weight of shape {list(shape)}")


def glorot_uniform(rng, shape, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(rng, shape, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(rng, shape, dtype=np.float32):
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(rng, shape, dtype=np.float32):
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def orthogonal(rng, shape, dtype=np.float32):
    """A (semi-)orthogonal matrix (Saxe et al.), Keras's default for recurrent kernels."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the decomposition unique, so the distribution is uniform
    return (q if rows >= cols else q.T).astype(dtype)


def small_uniform(rng, shape, dtype=np.float32):
    """uniform(-0.05, 0.05), Keras's default for embeddings."""
    return rng.uniform(-0.05, 0.05, size=shape).astype(dtype)


def zeros(rng, shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(rng, shape, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, orthogonal,
                                        small_uniform, zeros, ones)}


def get(initializer):
    """An initialiser from its name or itself (a callable ``(rng, shape, dtype) -> array``)."""
    if callable(initializer):
        return initializer
    if initializer not in INITIALIZERS:
        raise ValueError(f"unknown initializer {initializer!r}; known: {', '.join(INITIALIZERS)}")
    return INITIALIZERS[initializer]

"""Stateless random numbers: a key (u32[2]) in, the same numbers out on every backend.

Everything is built on the ``random_bits`` primitive (counter-based threefry2x32), so ``uniform(key, ...)``
gives bit-identical results eagerly, in the interpreter and in compiled code. Keys are split, never reused:
``k1, k2 = kf.random.split(key)``.
"""
from __future__ import annotations

import math

import numpy as np

from .ops import primitive_call
from .tracer import Tracer


def key(seed: int) -> np.ndarray:
    """A key from an integer seed (like jax.random.PRNGKey: the high and low 32 bits)."""
    if isinstance(seed, Tracer):
        raise TypeError("kf.random.key needs a Python int seed; split an existing key inside traced code")
    seed = int(seed)
    if seed < 0:
        seed &= (1 << 64) - 1
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32)


def _shape(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)


def bits(key, shape=()) -> np.ndarray:
    """uint32 random bits of ``shape``."""
    return primitive_call("random_bits", key, shape=_shape(shape))


def split(key, num: int = 2):
    """``num`` new keys (a u32[num, 2] array; iterate or index it)."""
    return bits(key, (num, 2))


def _unit_interval(b, dtype) -> np.ndarray:
    """Uniform floats in [0, 1) from uint32 bits, using as many bits as the dtype's mantissa holds exactly."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return b.astype(np.float64) * 2.0 ** -32
    mantissa = {np.dtype(np.float32): 24, np.dtype(np.float16): 11}.get(dtype)
    if mantissa is None:
        raise TypeError(f"kf.random: dtype {dtype} is not a supported float dtype (float16/32/64)")
    return (b // (1 << (32 - mantissa))).astype(dtype) * (2.0 ** -mantissa)


def uniform(key, shape=(), dtype=np.float32, minval=0.0, maxval=1.0):
    """Uniform numbers in [minval, maxval)."""
    u = _unit_interval(bits(key, shape), dtype)
    if minval == 0.0 and maxval == 1.0:
        return u
    return u * (maxval - minval) + minval


def normal(key, shape=(), dtype=np.float32):
    """Standard normal numbers (Box-Muller on two independent uniforms)."""
    shape = _shape(shape)
    b = bits(key, (2,) + shape)
    u1 = _unit_interval(b[0], dtype)
    u2 = _unit_interval(b[1], dtype)
    radius = np.sqrt(-2.0 * np.log(1.0 - u1))  # 1 - u1 is in (0, 1]: the log is finite
    return radius * np.cos((2 * math.pi) * u2)


def bernoulli(key, p=0.5, shape=()):
    """Booleans that are True with probability ``p``."""
    return uniform(key, shape, np.float32) < p

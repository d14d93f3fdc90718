"""Sources: ops whose values do not depend on differentiable inputs — constant, iota, random_bits.

random_bits is the counter-based threefry2x32 generator with 20 rounds (Salmon, Moraes, Dror, Shaw,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011), with the constants and rotations of
JAX's threefry2x32. Every backend must produce exactly the bits of the reference here.
"""
from __future__ import annotations

import numpy as np

from ..primitive import NONDIFFERENTIABLE, Primitive, register
from ..types import DTypeError, ShapeError, TensorType, as_dtype, type_of_array, uint32
from .movement import check_axis, check_shape_attr


# -- constant ----------------------------------------------------------------------------------
def _constant_rule(value):
    if not isinstance(value, np.ndarray):
        raise DTypeError(f"a constant's value must be a numpy array, got {type(value).__name__}")
    return type_of_array(value)


register(Primitive(
    "constant", "source", _constant_rule,
    lambda value: np.array(value, copy=True),  # a fresh, writable array: the attribute stays read-only
    lambda b, g, n: [], {"numba": "@constant", "triton": "@constant"}, attr_names=("value",),
    doc="the read-only array `value`"))


# -- iota --------------------------------------------------------------------------------------
def _iota_rule(shape, dimension, dtype):
    shape = check_shape_attr(shape)
    dimension = check_axis(dimension, len(shape), shape, "dimension")
    dtype = as_dtype(dtype)
    if dtype.kind not in ("float", "int", "uint"):
        raise DTypeError(f"iota needs a numeric dtype, got {dtype}")
    if dtype.is_integer and shape[dimension] - 1 > np.iinfo(dtype.np_dtype).max:
        raise DTypeError(f"iota along dim {dimension} of shape {list(shape)} overflows {dtype}")
    return TensorType(dtype, shape)


def _iota_ref(shape, dimension, dtype):
    shape = tuple(shape)
    line = np.arange(shape[dimension]).astype(as_dtype(dtype).np_dtype)
    along = [1] * len(shape)
    along[dimension] = shape[dimension]
    return np.broadcast_to(line.reshape(along), shape).copy()


register(Primitive(
    "iota", "source", _iota_rule, _iota_ref, NONDIFFERENTIABLE,
    {"numba": "@iota", "triton": "@iota"}, attr_names=("shape", "dimension", "dtype"),
    doc="out[..., i, ...] = i along `dimension`"))


# -- random_bits (threefry2x32-20) -------------------------------------------------------------
THREEFRY_PARITY = 0x1BD11BDA
THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key0, key1, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """threefry2x32 with 20 rounds on uint32 arrays (all arithmetic wraps modulo 2**32).

    Key schedule ks = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA). First x0 += ks[0], x1 += ks[1]. Then five
    groups s = 1..5 of four rounds, each round ``x0 += x1; x1 = rotl(x1, r); x1 ^= x0`` with r from
    (13, 15, 26, 6) for odd s and (17, 29, 16, 24) for even s; after group s, x0 += ks[s % 3] and
    x1 += ks[(s + 1) % 3] + s. Returns the two output words.
    """
    ks = (np.uint32(key0), np.uint32(key1), np.uint32(key0) ^ np.uint32(key1) ^ np.uint32(THREEFRY_PARITY))
    with np.errstate(over="ignore"):  # wrap-around is the definition, not an accident
        x0 = np.asarray(x0, dtype=np.uint32) + ks[0]
        x1 = np.asarray(x1, dtype=np.uint32) + ks[1]
        for s in range(1, 6):
            for r in THREEFRY_ROTATIONS[(s - 1) % 2]:
                x0 = x0 + x1
                x1 = _rotate_left(x1, r) ^ x0
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + np.uint32(s)
    return x0, x1


def _random_bits_rule(key: TensorType, shape):
    shape = check_shape_attr(shape)
    if key.dtype != uint32:
        raise DTypeError(f"the key must be u32, got {key.dtype}")
    if key.shape != (2,):
        raise ShapeError(f"the key must have shape [2], got {list(key.shape)}")
    return TensorType(uint32, shape)


def _random_bits_ref(key, shape):
    """out.flat[i] = threefry2x32(key, (i & 0xffffffff, i >> 32))[0], i the row-major flat index."""
    shape = tuple(shape)
    count = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
    low = (count & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    high = (count >> np.uint64(32)).astype(np.uint32)
    first, _ = threefry2x32(key[0], key[1], low, high)
    return first.reshape(shape)


register(Primitive(
    "random_bits", "source", _random_bits_rule, _random_bits_ref, NONDIFFERENTIABLE,
    {"numba": "@random_bits", "triton": "@random_bits"}, attr_names=("shape",),
    doc="random_bits(key: u32[2]) -> u32[shape]: element i (row-major) is the first output word of "
        "threefry2x32-20 with that key and counter (i mod 2**32, i div 2**32)"))

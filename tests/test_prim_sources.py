"""constant, iota and random_bits: shape rules through GraphBuilder and references against independent
formulations (index loops; a scalar Python threefry2x32; the Random123 known-answer vectors)."""
import numpy as np
import pytest

from kernelflow.ir import (DTypeError, GraphBuilder, ShapeError, TensorType, float32, int8, int32, primitive,
                           uint8, uint32, bool_)
from kernelflow.ir.types import type_of_array


def ref(op):
    return primitive.get(op).reference


def out_type(op, *types, **attrs):
    b = GraphBuilder()
    return b.emit(op, *[b.add_input(t) for t in types], **attrs).type


# -- constant ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array(2.5),
    np.zeros((0, 4), np.int32),
    np.array([True, False]),
    np.array([[7]], np.uint8),
])
def test_constant(value):
    b = GraphBuilder()
    v = b.emit("constant", value=value)
    assert v.type == TensorType(type_of_array(value).dtype, value.shape)
    attr = v.producer.attrs["value"]
    assert not attr.flags.writeable  # the builder stores attributes read-only
    out = ref("constant")(value=attr)
    assert out.dtype == value.dtype and out.shape == value.shape
    np.testing.assert_array_equal(out, value)
    assert out.flags.writeable and not np.shares_memory(out, attr)  # a copy the caller may write to
    assert primitive.get("constant").grad(b, None, v.producer) == []


def test_constant_errors():
    with pytest.raises(DTypeError, match="numpy array, got float"):
        GraphBuilder().emit("constant", value=1.5)
    with pytest.raises(DTypeError, match="not supported"):
        GraphBuilder().emit("constant", value=np.array([1 + 2j]))


# -- iota --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [float32, int32, uint8, int8])
@pytest.mark.parametrize("shape,dimension", [((5,), 0), ((2, 3), 0), ((2, 3), 1), ((1, 4, 1), 1),
                                             ((0, 3), 1), ((3, 0), 0), ((2, 3, 4), 2)])
def test_iota(shape, dimension, dtype):
    out = ref("iota")(shape=shape, dimension=dimension, dtype=dtype)
    assert type_of_array(out) == out_type("iota", shape=shape, dimension=dimension, dtype=dtype)
    for idx in np.ndindex(*shape):
        assert out[idx] == idx[dimension]
    assert out.flags.writeable


def test_iota_errors():
    with pytest.raises(ShapeError, match=r"dimension 2 is not an axis of shape \[2, 3\]"):
        out_type("iota", shape=(2, 3), dimension=2, dtype=int32)
    with pytest.raises(ShapeError, match=r"dimension 0 is not an axis of shape \[\]"):
        out_type("iota", shape=(), dimension=0, dtype=int32)
    with pytest.raises(DTypeError, match="numeric dtype, got bool"):
        out_type("iota", shape=(3,), dimension=0, dtype=bool_)
    with pytest.raises(DTypeError, match=r"iota along dim 0 of shape \[300\] overflows u8"):
        out_type("iota", shape=(300,), dimension=0, dtype=uint8)
    assert out_type("iota", shape=(256,), dimension=0, dtype=uint8) == TensorType(uint8, (256,))


# -- random_bits: an independent scalar threefry2x32-20 -----------------------------------------
MASK = 0xFFFFFFFF


def rotl32(v, r):
    return ((v << r) | (v >> (32 - r))) & MASK


def threefry2x32_scalar(key, counter):
    """Random123's threefry2x32 with 20 rounds, one Python-int step at a time (the injection schedule
    unrolled as the paper states it: a key injection after every 4 rounds)."""
    k0, k1 = key
    k2 = k0 ^ k1 ^ 0x1BD11BDA
    schedule = [k0, k1, k2]
    rotations = [13, 15, 26, 6, 17, 29, 16, 24]
    x0, x1 = (counter[0] + k0) & MASK, (counter[1] + k1) & MASK
    for rnd in range(20):
        x0 = (x0 + x1) & MASK
        x1 = rotl32(x1, rotations[rnd % 8]) ^ x0
        if rnd % 4 == 3:
            injection = rnd // 4 + 1
            x0 = (x0 + schedule[injection % 3]) & MASK
            x1 = (x1 + schedule[(injection + 1) % 3] + injection) & MASK
    return x0, x1


RANDOM123_VECTORS = [  # threefry2x32_20 known-answer tests of the Random123 distribution: key, ctr, out
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("key,counter,expected", RANDOM123_VECTORS)
def test_scalar_oracle_matches_the_random123_vectors(key, counter, expected):
    assert threefry2x32_scalar(key, counter) == expected


@pytest.mark.parametrize("key,counter,expected", RANDOM123_VECTORS)
def test_vectorised_threefry_matches_the_random123_vectors(key, counter, expected):
    from kernelflow.ir.primitives.sources import threefry2x32
    x0, x1 = threefry2x32(np.uint32(key[0]), np.uint32(key[1]),
                          np.array([counter[0]], np.uint32), np.array([counter[1]], np.uint32))
    assert (int(x0[0]), int(x1[0])) == expected


def test_vectorised_threefry_matches_the_scalar_oracle_on_random_words():
    """Both counter words, including high words the reference only uses beyond 2**32 elements."""
    from kernelflow.ir.primitives.sources import threefry2x32
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2 ** 32, size=(50, 4), dtype=np.uint64).astype(np.uint32)
    for k0, k1, c0, c1 in words:
        x0, x1 = threefry2x32(k0, k1, np.array([c0]), np.array([c1]))
        assert (int(x0[0]), int(x1[0])) == threefry2x32_scalar((int(k0), int(k1)), (int(c0), int(c1)))


@pytest.mark.parametrize("key", [(0, 0), (0xFFFFFFFF, 0xFFFFFFFF), (0x13198A2E, 0x03707344), (42, 7)])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (2, 3), (3, 1, 4), (0,), (2, 0, 3)])
def test_random_bits_reference(key, shape):
    key_array = np.array(key, np.uint32)
    out = ref("random_bits")(key_array, shape=shape)
    assert type_of_array(out) == out_type("random_bits", TensorType(uint32, (2,)), shape=shape)
    for flat, idx in enumerate(np.ndindex(*shape)):  # row-major flat index i -> counter (i, 0)
        assert int(out[idx]) == threefry2x32_scalar(key, (flat & MASK, flat >> 32))[0]


def test_random_bits_look_random():
    """Not a statistical test suite: every bit position is set about half the time, and different keys
    give different streams."""
    out = ref("random_bits")(np.array([1, 2], np.uint32), shape=(4096,))
    bits = (out[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.05)
    other = ref("random_bits")(np.array([1, 3], np.uint32), shape=(4096,))
    assert np.mean(out == other) < 0.01


def test_random_bits_errors():
    with pytest.raises(DTypeError, match=r"random_bits\(i32\[2\]\): the key must be u32, got i32"):
        out_type("random_bits", TensorType(int32, (2,)), shape=(3,))
    with pytest.raises(ShapeError, match=r"the key must have shape \[2\], got \[4\]"):
        out_type("random_bits", TensorType(uint32, (4,)), shape=(3,))
    with pytest.raises(ShapeError, match="non-negative"):
        out_type("random_bits", TensorType(uint32, (2,)), shape=(-3,))


def test_differentiability_and_codegen():
    for op, lowering in [("constant", "@constant"), ("iota", "@iota"), ("random_bits", "@random_bits")]:
        prim = primitive.get(op)
        assert prim.family == "source"
        assert prim.codegen == {"numba": lowering, "triton": lowering}
        assert prim.differentiable == (op == "constant")

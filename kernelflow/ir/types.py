"""Static types of IR values: a dtype and a fixed shape, printed as ``f32[8,3]``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ShapeError(ValueError):
    """A shape does not fit an operation (names the op, the shapes and the user's source line)."""


class DTypeError(TypeError):
    """A dtype does not fit an operation (names the op, the dtypes and the user's source line)."""


@dataclass(frozen=True)
class DType:
    """An element type. ``name`` is the short IR spelling (``f32``), ``numpy`` the numpy name."""

    name: str
    numpy_name: str
    kind: str  # 'float', 'int', 'uint' or 'bool'
    bits: int

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    # Tracing and the passes compare dtypes tens of thousands of times, nearly always a registry singleton
    # with itself: identity first, then the fields (as the dataclass would compare them).
    def __eq__(self, other):
        if self is other:
            return True
        if other.__class__ is not DType:
            return NotImplemented
        return (self.name, self.numpy_name, self.kind, self.bits) == (
            other.name, other.numpy_name, other.kind, other.bits)

    def __hash__(self) -> int:
        return hash(self.name)  # equal dtypes have equal names

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype; bfloat16 needs the optional ml_dtypes package."""
        known = _NP_DTYPES.get(self.numpy_name)
        if known is not None:
            return known
        if self.name == "bf16":
            try:
                import ml_dtypes  # noqa: PLC0415 - optional, only for bfloat16 on the CPU
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise DTypeError(
                    "bf16 values have no numpy dtype without the ml_dtypes package; "
                    "bfloat16 runs on the GPU backend, or install ml_dtypes") from e
            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.numpy_name)


float16 = DType("f16", "float16", "float", 16)
bfloat16 = DType("bf16", "bfloat16", "float", 16)
float32 = DType("f32", "float32", "float", 32)
float64 = DType("f64", "float64", "float", 64)
int8 = DType("i8", "int8", "int", 8)
int32 = DType("i32", "int32", "int", 32)
int64 = DType("i64", "int64", "int", 64)
uint8 = DType("u8", "uint8", "uint", 8)
uint32 = DType("u32", "uint32", "uint", 32)
bool_ = DType("bool", "bool", "bool", 8)

ALL_DTYPES = (float16, bfloat16, float32, float64, int8, int32, int64, uint8, uint32, bool_)
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_NUMPY = {d.numpy_name: d for d in ALL_DTYPES}
# numpy's dtype objects of the dtypes numpy has (bf16 has none without ml_dtypes), and what ``as_dtype``
# found for each argument it was given (tracing asks for the same few, thousands of times)
_NP_DTYPES = {d.numpy_name: np.dtype(d.numpy_name) for d in ALL_DTYPES if d.name != "bf16"}
_AS_DTYPE: dict = {}


def dtype_from_name(name: str) -> DType:
    """``'f32'`` -> float32. Raises DTypeError for unknown names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DTypeError(f"unknown dtype {name!r}; known: {', '.join(_BY_NAME)}") from None


def as_dtype(x) -> DType:
    """Convert a DType, an IR name ('f32'), or anything numpy accepts as a dtype, to a DType."""
    if isinstance(x, DType):
        return x
    try:
        return _AS_DTYPE[x]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        pass
    if isinstance(x, str) and x in _BY_NAME:
        return _BY_NAME[x]
    try:
        name = np.dtype(x).name
    except TypeError:
        raise DTypeError(f"{x!r} is not a dtype") from None
    if name not in _BY_NUMPY:
        raise DTypeError(
            f"dtype {name} is not supported by kernelflow; supported: "
            f"{', '.join(d.numpy_name for d in ALL_DTYPES)}")
    found = _BY_NUMPY[name]
    if isinstance(x, (np.dtype, type)) and len(_AS_DTYPE) < 256:  # numpy dtypes and scalar types only
        _AS_DTYPE[x] = found
    return found


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: element dtype and shape (a tuple of non-negative ints)."""

    dtype: DType
    shape: tuple[int, ...]

    def __post_init__(self):
        if not isinstance(self.dtype, DType):
            raise DTypeError(f"TensorType needs a DType, got {self.dtype!r}")
        shape = self.shape
        if type(shape) is tuple and all([type(d) is int and d >= 0 for d in shape]):
            return  # already canonical: the common case (shape rules pass tuples of ints)
        shape = tuple(shape)
        for d in shape:
            if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
                raise ShapeError(f"a shape holds non-negative ints, got {shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(str(d) for d in self.shape)}]"

    __repr__ = __str__


def type_of_array(a) -> TensorType:
    """The TensorType of a numpy array (or anything with .dtype and .shape)."""
    return TensorType(as_dtype(a.dtype), tuple(a.shape))

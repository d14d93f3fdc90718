"""Reader for the IDX files of MNIST and Fashion-MNIST (plain or gzip'd).

The format (LeCun's MNIST page): a 4-byte magic number ``00 00 TT NN`` where TT is the element type
(0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and NN the
number of dimensions; then NN big-endian uint32 sizes; then the elements, big-endian, row-major.
Every way a file can be wrong raises ``DataFileError`` naming the file and what is wrong with it.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataFileError(ValueError):
    """A data file that exists but cannot be read: truncated, corrupt, or not the expected format."""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":  # not gzip: a plain IDX file
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:
        raise DataFileError(f"{path}: the gzip stream is truncated ({len(raw)} bytes on disk): {e}") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataFileError(f"{path}: the gzip stream is corrupt: {e}") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array stored in the IDX bytes ``data``; ``name`` is used in error messages."""
    if len(data) < 4:
        raise DataFileError(f"{name}: too short for an IDX header ({len(data)} bytes, need at least 4)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataFileError(f"{name}: not an IDX file (magic number {data[:4].hex()} does not start with 0000)")
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise DataFileError(f"{name}: unknown IDX element type 0x{type_code:02x} (known: {known})")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFileError(f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, "
                            f"the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_size
    if actual < expected:
        raise DataFileError(f"{name}: truncated: shape {list(shape)} of {dtype.name} needs {expected} data bytes, "
                            f"the file has {actual}")
    if actual > expected:
        raise DataFileError(f"{name}: {actual - expected} unexpected bytes after the data of shape {list(shape)}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip'd or not; gzip is recognised by its magic bytes, not by the name)."""
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), path)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip'd when ``compress`` (default: when the name ends in .gz)."""
    path = os.fspath(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str[1:]
    if key not in codes:
        raise DataFileError(f"cannot store dtype {array.dtype} in IDX (supported: uint8, int8, int16, int32, "
                            f"float32, float64)")
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if compress else data)

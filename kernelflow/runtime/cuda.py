"""GPU memory without PyTorch: the CUDA driver API through ctypes, device arrays, device_put/device_get.

The driver (``libcuda.so``) is used in the device's primary context (the one Triton launches into).
``DeviceArray`` owns an allocation from a small caching pool (freed blocks are kept per size and reused,
as in PyTorch's allocator), exposes ``data_ptr()`` and ``dtype`` (what Triton's launcher reads) and
``__cuda_array_interface__`` (so CuPy, numba and PyTorch read it without a copy). Inputs that expose
``__cuda_array_interface__`` or ``__dlpack__`` on a CUDA device are used in place, without a copy.
Nothing here imports Triton.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from ..ir.types import as_dtype


class GPUUnavailableError(RuntimeError):
    """No usable NVIDIA GPU (or no CUDA driver) in this process."""



# -- the CUDA driver through ctypes -------------------------------------------------------------------
class _Cuda:
    """The few driver calls the runtime needs (cuMemAlloc, copies, synchronize), in the primary context."""

    def __init__(self):
        lib = None
        for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if lib is None:
            raise GPUUnavailableError("no CUDA driver (libcuda.so) in this process: the Triton backend needs an "
                                      "NVIDIA GPU; without one, set TRITON_INTERPRET=1 to run it on the CPU")
        self.lib = lib
        self.check(lib.cuInit(0), "cuInit")
        count = ctypes.c_int()
        self.check(lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
        if count.value == 0:
            raise GPUUnavailableError("the CUDA driver reports no GPU")
        self.device = ctypes.c_int()
        self.check(lib.cuDeviceGet(ctypes.byref(self.device), 0), "cuDeviceGet")
        self.context = ctypes.c_void_p()
        self.check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), self.device), "cuDevicePrimaryCtxRetain")
        self.make_current()
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, self.device)
        self.name = name.value.decode()
        self.pool: dict[int, list[int]] = {}
        self.lock = threading.Lock()

    def check(self, status: int, what: str):
        if status != 0:
            text = ctypes.c_char_p()
            try:
                self.lib.cuGetErrorString(status, ctypes.byref(text))
            except Exception:  # pragma: no cover - the driver always has it
                pass
            msg = text.value.decode() if text.value else f"error {status}"
            raise GPUUnavailableError(f"CUDA driver call {what} failed: {msg}")

    def make_current(self):
        self.check(self.lib.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def alloc(self, nbytes: int) -> int:
        nbytes = max(256, -(-nbytes // 256) * 256)  # pool by 256-byte granules
        with self.lock:
            free = self.pool.get(nbytes)
            if free:
                return free.pop()
        ptr = ctypes.c_uint64()
        status = self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(nbytes))
        if status != 0:  # out of memory: release the cached blocks and retry once
            self.empty_cache()
            self.check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cuMemAlloc")
        return ptr.value

    def release(self, ptr: int, nbytes: int):
        nbytes = max(256, -(-nbytes // 256) * 256)
        with self.lock:
            self.pool.setdefault(nbytes, []).append(ptr)

    def empty_cache(self):
        with self.lock:
            blocks = [p for ps in self.pool.values() for p in ps]
            self.pool.clear()
        for p in blocks:
            self.lib.cuMemFree_v2(ctypes.c_uint64(p))

    def to_device(self, dst: int, src: np.ndarray):
        self.check(self.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(dst), src.ctypes.data_as(ctypes.c_void_p),
                                            ctypes.c_size_t(src.nbytes)), "cuMemcpyHtoD")

    def to_host(self, dst: np.ndarray, src: int):
        self.check(self.lib.cuMemcpyDtoH_v2(dst.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(src),
                                            ctypes.c_size_t(dst.nbytes)), "cuMemcpyDtoH")

    def copy(self, dst: int, src: int, nbytes: int):
        self.check(self.lib.cuMemcpyDtoD_v2(ctypes.c_uint64(dst), ctypes.c_uint64(src), ctypes.c_size_t(nbytes)),
                   "cuMemcpyDtoD")

    def memset0(self, dst: int, nbytes: int):
        self.check(self.lib.cuMemsetD8_v2(ctypes.c_uint64(dst), ctypes.c_ubyte(0), ctypes.c_size_t(nbytes)),
                   "cuMemsetD8")

    def synchronize(self):
        self.check(self.lib.cuCtxSynchronize(), "cuCtxSynchronize")


_cuda: _Cuda | None = None
_cuda_error: Exception | None = None


def cuda() -> _Cuda:
    """The driver (initialised on first use); raises GPUUnavailableError with the reason."""
    global _cuda, _cuda_error
    if _cuda is None:
        if _cuda_error is not None:
            raise _cuda_error
        try:
            _cuda = _Cuda()
        except (GPUUnavailableError, AttributeError) as e:
            _cuda_error = e if isinstance(e, GPUUnavailableError) else GPUUnavailableError(str(e))
            raise _cuda_error from None
    return _cuda


def gpu_available() -> bool:
    try:
        cuda()
        return True
    except GPUUnavailableError:
        return False


# -- device arrays --------------------------------------------------------------------------------------
_CAI_TYPESTR = {"f2": "float16", "f4": "float32", "f8": "float64", "i1": "int8", "i4": "int32", "i8": "int64",
                "u1": "uint8", "u4": "uint32", "b1": "bool"}


class DeviceArray:
    """A C-contiguous array in GPU memory: owned (from the pool) or a view of another library's buffer."""

    def __init__(self, ptr: int, shape, dtype, owner: Any = None, pooled: bool = False):
        self.ptr = int(ptr)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.owner = owner        # keeps a foreign buffer alive
        self.pooled = pooled

    @classmethod
    def empty(cls, shape, dtype) -> "DeviceArray":
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return cls(cuda().alloc(nbytes), shape, dtype, pooled=True)

    def __del__(self):
        if self.pooled and _cuda is not None:
            _cuda.release(self.ptr, self.nbytes)
            self.pooled = False

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def data_ptr(self) -> int:  # what Triton's launcher reads
        return self.ptr

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None}

    def get(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        if out.nbytes:
            cuda().to_host(out, self.ptr)
        return out

    def __array__(self, dtype=None, copy=None):
        a = self.get()
        return a if dtype is None else a.astype(dtype)

    def view_as(self, dtype) -> "DeviceArray":
        return DeviceArray(self.ptr, self.shape, dtype, owner=self)

    def __repr__(self) -> str:
        return f"DeviceArray({self.dtype}{list(self.shape)} at 0x{self.ptr:x})"


def _from_cuda_array_interface(x) -> DeviceArray:
    cai = x.__cuda_array_interface__
    shape = tuple(cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None and tuple(strides) != tuple(np.empty(0, dtype).itemsize * s for s in _row_major(shape)):
        if any(d > 1 for d in shape):
            raise ValueError(f"a {type(x).__name__} with strides {strides} is not C-contiguous; the Triton backend "
                             "uses device inputs in place and needs them contiguous (copy it first)")
    return DeviceArray(cai["data"][0], shape, dtype, owner=x)


def _row_major(shape):
    strides, s = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = s
        s *= shape[i]
    return strides


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_DL_CUDA = 2
_DL_CODES = {0: "i", 1: "u", 2: "f", 6: "b"}


def _from_dlpack(x) -> DeviceArray:
    """Use a CUDA DLPack tensor in place (the capsule stays referenced by the DeviceArray)."""
    capsule = x.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    t = _DLTensor.from_address(get(capsule, b"dltensor"))
    if t.device.device_type != _DL_CUDA:
        raise ValueError("a DLPack tensor that is not on a CUDA device; pass a numpy array instead")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides and any(shape):
        strides = tuple(t.strides[i] for i in range(t.ndim))
        if any(s != r for s, r, d in zip(strides, _row_major(shape), shape) if d > 1):
            raise ValueError(f"a DLPack tensor with strides {strides} is not C-contiguous; copy it first")
    kind = _DL_CODES.get(t.dtype.code)
    if kind is None or t.dtype.lanes != 1:
        raise ValueError(f"unsupported DLPack dtype code {t.dtype.code}")
    dtype = np.dtype(bool) if kind == "b" else np.dtype(f"{kind}{t.dtype.bits // 8}")
    return DeviceArray((t.data or 0) + t.byte_offset, shape, dtype, owner=(x, capsule))


def as_device_array(x) -> DeviceArray | None:
    """``x`` as a DeviceArray without a copy, or None when it is not on the GPU."""
    if isinstance(x, DeviceArray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return _from_cuda_array_interface(x)
    if hasattr(x, "__dlpack_device__") and hasattr(x, "__dlpack__"):
        device_type, _ = x.__dlpack_device__()
        if int(device_type) == _DL_CUDA:
            return _from_dlpack(x)
    return None


def _map_tree(fn, tree):
    if isinstance(tree, dict):
        return type(tree)((k, _map_tree(fn, v)) for k, v in tree.items())
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*[_map_tree(fn, v) for v in tree])
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tree(fn, v) for v in tree)
    return fn(tree)


def _put_one(x) -> DeviceArray:
    d = as_device_array(x)
    if d is not None:
        return d
    a = np.ascontiguousarray(np.asarray(x))
    as_dtype(a.dtype)  # a clear error for dtypes kernelflow does not support
    out = DeviceArray.empty(a.shape, a.dtype)
    if a.nbytes:
        cuda().to_device(out.ptr, a)
    return out


def device_put(tree):
    """Copy numpy arrays (leaves of dicts/lists/tuples) to the GPU; device arrays are kept as they are."""
    return _map_tree(_put_one, tree)


def device_get(tree):
    """Copy device arrays back to numpy; other leaves are returned as numpy arrays."""
    return _map_tree(lambda x: x.get() if isinstance(x, DeviceArray) else np.asarray(x), tree)

"""The Triton backend's runtime: device buffers, ``device_put`` / ``device_get``, and running a program.

Device memory without PyTorch: the CUDA driver API through ctypes (``libcuda.so``), in the device's
primary context (the one Triton launches into). ``DeviceArray`` owns an allocation from a small
caching pool (freed blocks are kept per size and reused, as in PyTorch's allocator), exposes
``data_ptr()`` and ``dtype`` (what Triton's launcher reads) and ``__cuda_array_interface__`` (so CuPy,
numba and PyTorch can read it without a copy). Inputs that expose ``__cuda_array_interface__`` or
``__dlpack__`` on a CUDA device are used in place, without a copy.

Two ways to run a ``TritonProgram`` (kernelflow/codegen/triton/program.py):

* on an NVIDIA GPU: numpy inputs are copied to the device, device inputs are used in place, outputs
  stay on the device (``DeviceArray``; ``np.asarray`` or ``device_get`` copies them back). Block sizes
  are autotuned once per kernel over a few configurations (``triton.autotune``, results cached on disk).
* with ``TRITON_INTERPRET=1`` (no GPU needed): every kernel runs in Triton's CPU interpreter on numpy
  arrays wrapped in ``HostTensor``; numpy in, numpy out.

Generated modules are written under ``$KERNELFLOW_CACHE_DIR/triton`` (default ``~/.cache/kernelflow``),
named by the hash of their source, and Triton's own cache is kept under it too.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from ..codegen.triton import interpreting
from ..ir.graph import Graph
from ..ir.types import as_dtype


class GPUUnavailableError(RuntimeError):
    """No usable NVIDIA GPU (or no CUDA driver) in this process."""


# -- cache directory --------------------------------------------------------------------------------
def cache_dir() -> str:
    base = os.environ.get("KERNELFLOW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "kernelflow")
    path = os.path.join(base, "triton")
    os.makedirs(path, exist_ok=True)
    return path


def _use_our_triton_cache():
    """Keep Triton's compiled kernels (and autotuning results) under our cache unless the user chose."""
    if "TRITON_CACHE_DIR" not in os.environ:
        import triton  # noqa: PLC0415
        triton.knobs.cache.dir = os.path.join(cache_dir(), "triton-cache")


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


# -- the interpreter's view of numpy arrays -----------------------------------------------------------
class _HostStorage:
    def __init__(self, array: np.ndarray):
        self.array = array

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def cpu(self):
        return self   # already host memory: the interpreter works on it in place

    def copy_(self, other):
        return self


class HostTensor:
    """A numpy array in the shape Triton's interpreter expects of a tensor argument (it was written for
    torch tensors: data_ptr, dtype, untyped_storage, size, stride, ...). Kernels read and write the
    array in place."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def dtype(self):
        return self.array.dtype

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def untyped_storage(self):
        return _HostStorage(self.array)

    def storage_offset(self) -> int:
        return 0

    def size(self):
        return self.array.shape

    def stride(self):
        return tuple(s // max(1, self.array.itemsize) for s in self.array.strides)

    def new_empty(self, *args, **kwargs):
        return HostTensor(self.array)

    def set_(self, storage, offset, size, stride):
        self.array = storage.array
        return self

    def copy_(self, other):
        return self


_patched_interpreter = False


def _patch_interpreter_bf16():
    """Two bfloat16 gaps of Triton 3.9's interpreter (it stores bfloat16 as raw uint16), closed so it
    computes what the GPU computes:

    * ``tl.dot`` multiplies bfloat16 tiles as their uint16 bit patterns: widen them to float32 first
      (exact), as the tensor cores do with an fp32 accumulator;
    * float32 -> bfloat16 conversion truncates: round to nearest even, as ``cvt.rn.bf16.f32`` does.
    """
    global _patched_interpreter
    if _patched_interpreter:
        return
    _patched_interpreter = True
    import triton.language as tl  # noqa: PLC0415
    from triton.runtime import interpreter  # noqa: PLC0415

    builder = interpreter.interpreter_builder
    original = builder.create_dot

    def widen(h):
        if h.dtype.scalar == tl.bfloat16:
            bits = h.data.astype(np.uint32) << np.uint32(16)
            return interpreter.TensorHandle(bits.view(np.float32), tl.float32)
        return h

    def create_dot(a, b, d, *rest):
        return original(widen(a), widen(b), d, *rest)

    original_cast = builder.cast_impl

    def cast_impl(src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = np.asarray(src.data, np.float32).view(np.uint32)
            rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
            nan = np.isnan(src.data)
            out = np.where(nan, (bits >> np.uint32(16)) | np.uint32(0x40), rounded).astype(np.uint16)
            return interpreter.TensorHandle(out, tl.bfloat16)
        return original_cast(src, dst_type)

    builder.create_dot = create_dot
    builder.cast_impl = cast_impl
    builder.create_fp_trunc = cast_impl


# -- loading and launching kernels ---------------------------------------------------------------------
_modules: dict[str, Any] = {}


def load_kernel(kernel):
    """Import a generated kernel module (written to the cache folder, named by its hash); its function."""
    module = _modules.get(kernel.key)
    if module is None:
        import importlib.util  # noqa: PLC0415
        path = _write_kernel(kernel)
        name = f"kernelflow_triton_{kernel.key}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _modules[kernel.key] = module
    return getattr(module, kernel.name)


def _grid(printed, meta: dict):
    import triton  # noqa: PLC0415
    if printed.grid[0] == "MATMUL":
        _, m, n, batch = printed.grid
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), batch)
    if printed.grid[0] == "BLOCK":
        return (triton.cdiv(printed.work, meta["BLOCK"]),)
    return tuple(printed.grid)


def _bench(fn, quantiles=None, **_):
    """Milliseconds per call (median of 10 after a warm-up), for triton.autotune without PyTorch."""
    sync = cuda().synchronize
    fn()
    sync()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    median = times[len(times) // 2]
    return [median] * len(quantiles) if quantiles else median


def _autotuned(kernel, fn):
    """Wrap a GPU kernel in triton.autotune over its configurations (results cached on disk)."""
    import triton  # noqa: PLC0415
    p = kernel.printed
    if p.kind == "matmul":
        configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": p.constexprs["GROUP_M"]},
                                 num_warps=w, num_stages=s) for bm, bn, bk, w, s in p.block_choices]
    elif p.kind == "row":
        configs = [triton.Config({"BLOCK": p.default_block}, num_warps=w) for w in (4, 8, 16)
                   if w * 32 <= max(128, p.default_block)]
    elif p.note == "scatter_add":
        return fn  # atomics accumulate: benchmarking would add the updates several times
    else:
        configs = [triton.Config({"BLOCK": b}, num_warps=w) for b in p.block_choices for w in (4, 8)]
    if len(configs) <= 1:
        return fn
    return triton.autotune(configs, key=[], cache_results=True, do_bench=_bench)(fn)


def _program_module():
    """kernelflow.codegen.triton.program, imported on first use (it imports triton, a large package)."""
    from ..codegen.triton import program  # noqa: PLC0415
    return program


class TritonExecutable:
    """A graph compiled for the Triton backend. Call it with arrays; ``kernels`` have their source."""

    backend = "triton"

    def __init__(self, program, interpret: bool):
        self.program = program
        self.graph = program.graph
        self.interpret = interpret
        self.kernels = program.kernels
        if interpret:
            _patch_interpreter_bf16()
        else:
            cuda()  # a clear error now when there is no GPU
        _use_our_triton_cache()
        self._functions = {}
        for k in program.kernels:
            fn = load_kernel(k)
            self._functions[id(k)] = fn if interpret else _autotuned(k, fn)
        self._constants = {}
        for s in program.steps:
            if isinstance(s, _program_module().ConstantStep):
                value = np.ascontiguousarray(np.asarray(s.node.attrs["value"]))
                self._constants[s.node.outputs[0]] = value if interpret else _put_one(value)
        # liveness: the step after which each intermediate value is dead (its buffer goes back to the pool)
        last_use = {}
        for i, s in enumerate(program.steps):
            for v in self._reads(s):
                last_use[v] = i
        keep = set(program.graph.outputs) | set(self._constants)
        self._free_after = {}
        for v, i in last_use.items():
            if v not in keep:
                self._free_after.setdefault(i, []).append(v)

    @staticmethod
    def _reads(step):
        if isinstance(step, _program_module().Launch):
            ins = [v for v in step.args if v not in step.outputs]
            return ins + ([step.init_from] if step.init_from is not None else [])
        if isinstance(step, _program_module().HostStep):
            return [v for n in step.nodes for v in n.inputs]
        return []

    def explain(self) -> str:
        return self.program.explain()

    def __repr__(self) -> str:
        where = "Triton interpreter (CPU)" if self.interpret else f"GPU {cuda().name}"
        return f"<TritonExecutable {self.graph.name}: {len(self.kernels)} kernels on {where}>"

    # -- running ---------------------------------------------------------------------------------------
    def __call__(self, *arrays):
        g = self.graph
        if len(arrays) != len(g.inputs):
            raise TypeError(f"graph {g.name} takes {len(g.inputs)} inputs, got {len(arrays)}")
        env = dict(self._constants)
        for i, (v, a) in enumerate(zip(g.inputs, arrays)):
            env[v] = self._input(v, a, i)
        Launch, HostStep = _program_module().Launch, _program_module().HostStep
        # IEEE semantics (x/0 = inf, log(0) = -inf) as on the GPU: the interpreter's numpy must not warn
        with np.errstate(all="ignore"):
            for i, step in enumerate(self.program.steps):
                if isinstance(step, Launch):
                    self._launch(step, env)
                elif isinstance(step, HostStep):
                    self._host(step, env)
                for v in self._free_after.get(i, ()):
                    env.pop(v, None)
        return [env[v] if not self.interpret else np.array(env[v], copy=True) for v in g.outputs]

    def _input(self, v, a, i):
        want = v.type.dtype.np_dtype
        if self.interpret:
            arr = np.ascontiguousarray(np.asarray(a, dtype=want))
        else:
            arr = as_device_array(a)
            if arr is None:
                arr = _put_one(np.asarray(a, dtype=want))
        if tuple(arr.shape) != v.type.shape or arr.dtype != want:
            raise TypeError(f"input {i} of graph {self.graph.name}: expected {v.type}, got {arr.dtype}"
                            f"{list(arr.shape)}")
        return arr

    def _empty(self, v):
        dtype = v.type.dtype.np_dtype
        return np.empty(v.type.shape, dtype) if self.interpret else DeviceArray.empty(v.type.shape, dtype)

    def _arg(self, a):
        """A kernel argument: bool buffers travel as bytes."""
        if self.interpret:
            flat = a.reshape(-1)
            return HostTensor(flat.view(np.uint8) if flat.dtype == np.bool_ else flat)
        return a.view_as(np.uint8) if a.dtype == np.bool_ else a

    def _launch(self, step, env):
        for v in step.outputs:
            if step.init_from is not None:
                src = env[step.init_from]
                if self.interpret:
                    env[v] = np.array(src, copy=True)
                else:
                    out = DeviceArray.empty(v.type.shape, v.type.dtype.np_dtype)
                    if out.nbytes:
                        cuda().copy(out.ptr, src.ptr, out.nbytes)
                    env[v] = out
            else:
                env[v] = self._empty(v)
        p = step.kernel.printed
        if p.work == 0:
            return
        args = [self._arg(env[v]) for v in step.args]
        fn = self._functions[id(step.kernel)]
        if self.interpret or not hasattr(fn, "configs"):
            meta = dict(p.constexprs) if p.kind == "matmul" else {"BLOCK": p.default_block}
            options = {} if self.interpret else {"num_warps": p.num_warps, "num_stages": p.num_stages}
            fn[_grid(p, meta)](*args, **meta, **options)
        else:
            fn[lambda meta: _grid(p, meta)](*args)

    def _host(self, step, env):
        for node in step.nodes:
            ins = [env[v] if self.interpret else device_get(env[v]) for v in node.inputs]
            outs = _program_module().host_reference(node, [np.asarray(a) for a in ins])
            for v, r in zip(node.outputs, outs):
                r = np.ascontiguousarray(np.asarray(r, dtype=v.type.dtype.np_dtype))
                env[v] = r if self.interpret else _put_one(r)


def compile_triton(graph: Graph, interpret: bool | None = None) -> TritonExecutable:
    """The Triton backend's entry point (``compile_graph(graph, backend="triton")``)."""
    interpret = interpreting() if interpret is None else interpret
    if not interpret and not gpu_available():
        raise GPUUnavailableError(
            f"backend='triton' needs an NVIDIA GPU ({_cuda_error}); set TRITON_INTERPRET=1 in the environment "
            "(before triton is imported) to run the Triton kernels in Triton's CPU interpreter instead")
    return TritonExecutable(_program_module().lower_graph(graph, interpret=interpret), interpret)


class CompiledProgram:
    """A graph's kernels compiled ahead of time for a GPU target (``Lowered.compile(target="sm_90")``)."""

    def __init__(self, program, target: str, kernels):
        self.program = program
        self.graph = program.graph
        self.target = target
        self.kernels = kernels

    def explain(self) -> str:
        return self.program.explain()

    def __repr__(self) -> str:
        return f"<CompiledProgram {self.graph.name} for {self.target}: {len(self.kernels)} kernels>"

    def __call__(self, *args):
        raise RuntimeError(f"this program was compiled ahead of time for {self.target}; it is not runnable here. "
                           "Use .compile() (no target) to run it")


def compile_ahead(graph: Graph, target: str = "sm_90", out_dir: str | None = None) -> CompiledProgram:
    """Compile every Triton kernel of ``graph`` for ``target`` (no GPU needed): sources, PTX and cubin."""
    from ..codegen.triton.aot import compile_sources  # noqa: PLC0415
    program = _program_module().lower_graph(graph, interpret=False)
    jobs = []
    for k in program.kernels:
        load_path = _write_kernel(k)
        p = k.printed
        constexprs = dict(p.constexprs) if p.kind == "matmul" else {"BLOCK": p.default_block}
        jobs.append({"path": load_path, "module": f"kernelflow_triton_{k.key}", "name": k.name,
                     "signature": p.signature, "constexprs": constexprs, "num_warps": p.num_warps,
                     "num_stages": p.num_stages, "source": k.source})
    out_dir = out_dir or os.path.join(cache_dir(), "aot", target)
    compiled = compile_sources(jobs, target, out_dir) if jobs else []
    return CompiledProgram(program, target, compiled)


def _write_kernel(kernel) -> str:
    folder = os.path.join(cache_dir(), "kernels")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"kf_{kernel.key}.py")
    if not os.path.exists(path) or open(path).read() != kernel.source:  # named by hash: a check for corruption
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(kernel.source)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
    return path

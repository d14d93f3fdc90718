"""Numpy arrays as Triton's CPU interpreter wants them (``TRITON_INTERPRET=1``, no GPU needed).

``HostTensor`` wraps a numpy array with the few methods the interpreter calls (``data_ptr()``, ``dtype``,
``untyped_storage()``, ...), and ``_patch_interpreter_bf16`` works around the interpreter's bfloat16
handling (see its docstring). Used only in interpreter mode.
"""
from __future__ import annotations

import numpy as np


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

"""Tracing: a ``Trace`` records primitives into a graph; a ``Tracer`` is the array-like value user code sees.

While a function is traced its array arguments are ``Tracer`` objects. Every operation on them (Python
operators, numpy ufuncs and functions, methods, indexing) appends primitive nodes to the trace's graph
through a ``GraphBuilder``; the numpy semantics (type promotion, broadcasting, indexing) are implemented
in the ``traced`` package, the numpy dispatch tables in ``dispatch.py``.

Traces nest (``kf.grad`` inside ``kf.jit``, a jitted function called from another one). Each trace has a
``level``: its depth on the trace stack. An operation goes to the deepest trace among its operands; a
tracer of an outer trace that meets it is *lifted*: it becomes an extra input of the inner graph
(closure conversion), and whoever inlines or runs the inner graph passes the outer value back in.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

import numpy as np

from ..ir import DTypeError, GraphBuilder, SourceLoc, TensorType, Value, as_dtype
from .errors import TracerArrayConversionError, TracerBoolError, UnexpectedTracerError

# -- where in the user's code are we? --------------------------------------------------------------
_KERNELFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_internal_cache: dict[str, bool] = {}


def _is_internal(filename: str) -> bool:
    known = _internal_cache.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = path.startswith(_KERNELFLOW_DIR) or path.startswith(_NUMPY_DIR)
        _internal_cache[filename] = known
    return known


def user_location() -> SourceLoc | None:
    """The first stack frame outside kernelflow and numpy: the user's line being traced."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            return SourceLoc(filename, frame.f_lineno)
        frame = frame.f_back
    return None


def where_str() -> str:
    loc = user_location()
    return f" (at {loc})" if loc else ""


# -- traces -----------------------------------------------------------------------------------------
_TRACE_STACK: list["Trace"] = []


class Trace:
    """One function being traced: its builder, the outer tracers it captured, and a constant cache."""

    def __init__(self, name: str):
        self.name = name
        self.builder = GraphBuilder(name)
        self.level = -1
        self.active = False
        self.captured: list[Tracer] = []          # outer tracers lifted in, in the order of their inputs
        self._lifted: dict[int, Value] = {}       # id(outer Value) -> the inner input standing for it
        self._constants: dict[Any, tuple[Any, Value]] = {}

    def __repr__(self) -> str:
        return f"<Trace {self.name} level={self.level}>"

    def emit(self, op: str, *inputs: Value, **attrs) -> Value:
        """Emit one single-output primitive at the user's current source line."""
        node = self.emit_node(op, *inputs, **attrs)
        return node.outputs[0] if len(node.outputs) == 1 else node.outputs

    def emit_node(self, op: str, *inputs: Value, **attrs):
        b = self.builder
        saved = b.loc  # as ``with b.at(user_location())``, without a context manager per node
        loc = user_location()
        if loc is not None:
            b.loc = loc
        try:
            return b.emit_node(op, *inputs, **attrs)
        finally:
            b.loc = saved

    def lift(self, t: "Tracer") -> Value:
        """The Value standing for tracer ``t`` in this trace (an extra input if ``t`` is from outside)."""
        if t.trace is self:
            return t.value
        if not t.trace.active:
            raise UnexpectedTracerError(
                f"a traced value of function '{t.trace.name}' ({t.value.type}) is used after that function "
                f"finished tracing{where_str()}. It escaped through a global, an attribute or a list that "
                "outlived the trace; return it from the function instead.")
        if t.trace.level > self.level:
            raise UnexpectedTracerError(
                f"a traced value of the inner function '{t.trace.name}' reached the outer trace "
                f"'{self.name}'{where_str()}; return it from the inner function instead.")
        key = id(t.value)
        v = self._lifted.get(key)
        if v is None:
            v = self.builder.add_input(t.value.type)
            self._lifted[key] = v
            self.captured.append(t)
        return v

    def constant(self, x, dtype: np.dtype | None = None) -> Value:
        """A constant node for a numpy array or Python/numpy scalar (converted to ``dtype`` if given)."""
        if isinstance(x, np.ndarray) and x.ndim > 0:
            key = ("array", id(x), None if dtype is None else np.dtype(dtype).str)
        else:
            arr = np.asarray(x)
            key = ("scalar", arr.dtype.str, arr.tobytes(), arr.shape,
                   None if dtype is None else np.dtype(dtype).str)
        hit = self._constants.get(key)
        if hit is not None:
            return hit[1]
        arr = np.asarray(x) if dtype is None else np.asarray(x).astype(dtype, copy=False)
        try:
            as_dtype(arr.dtype)
        except DTypeError as e:
            raise DTypeError(f"constant {arr.dtype}{list(arr.shape)}: {e}{where_str()}") from None
        v = self.emit("constant", value=arr)
        self._constants[key] = (x, v)  # holding x keeps id(x) from being reused while the trace lives
        return v


@contextlib.contextmanager
def new_trace(name: str) -> Iterator[Trace]:
    """Push a fresh trace; inside the block operations on its tracers record into its graph."""
    trace = Trace(name)
    trace.level = len(_TRACE_STACK)
    trace.active = True
    _TRACE_STACK.append(trace)
    try:
        yield trace
    finally:
        _TRACE_STACK.pop()
        trace.active = False


def top_trace(*xs) -> Trace | None:
    """The deepest trace among the tracers in ``xs`` (looking inside lists and tuples), or None."""
    best = None
    for x in xs:
        if isinstance(x, Tracer):
            if not x.trace.active:
                raise UnexpectedTracerError(
                    f"a traced value of function '{x.trace.name}' ({x.value.type}) is used after that function "
                    f"finished tracing{where_str()}. It escaped through a global, an attribute or a list that "
                    "outlived the trace; return it from the function instead.")
            if best is None or x.trace.level > best.level:
                best = x.trace
        elif isinstance(x, (list, tuple)):
            inner = top_trace(*x)
            if inner is not None and (best is None or inner.level > best.level):
                best = inner
    return best


# -- the traced array -------------------------------------------------------------------------------
def _control_flow_error(what: str) -> TracerBoolError:
    return TracerBoolError(
        f"{what} needs the concrete value of a traced array{where_str()}, but while tracing only its shape "
        "and dtype are known. Python control flow (if/while/and/or, int(), float()) cannot depend on traced "
        "values: use kf.where(cond, a, b) to select elementwise, or make the value a static argument "
        "(kf.jit(..., static_argnums=...)).")


class Tracer:
    """An array being traced: a graph Value and the Trace it belongs to. Behaves like a numpy array."""

    __slots__ = ("value", "trace")
    __array_priority__ = 1000  # numpy defers binary operators to us

    def __init__(self, value: Value, trace: Trace):
        self.value = value
        self.trace = trace

    # -- static facts ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.type.shape

    @property
    def ndim(self) -> int:
        return self.value.type.ndim

    @property
    def size(self) -> int:
        return self.value.type.size

    @property
    def dtype(self) -> np.dtype:
        return self.value.type.dtype.np_dtype

    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def T(self) -> "Tracer":
        return _t.transpose(self)

    @property
    def mT(self) -> "Tracer":
        return _t.swapaxes(self, -1, -2)

    def __repr__(self) -> str:
        return f"Tracer<{self.value.type}>"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.shape[0]))

    # -- no concrete values while tracing ---------------------------------------------------------------
    def __bool__(self):
        raise _control_flow_error("bool() of a traced array (an `if`, `while`, `and`/`or` or `assert`)")

    def __int__(self):
        raise _control_flow_error("int() of a traced array")

    def __float__(self):
        raise _control_flow_error("float() of a traced array")

    def __complex__(self):
        raise _control_flow_error("complex() of a traced array")

    def __index__(self):
        raise _control_flow_error("using a traced array as a Python index (range(), list index)")

    def item(self, *args):
        raise _control_flow_error(".item() of a traced array")

    def tolist(self):
        raise _control_flow_error(".tolist() of a traced array")

    def __array__(self, dtype=None, copy=None):
        raise TracerArrayConversionError(
            f"a traced array ({self.value.type}) was converted to a numpy array{where_str()}: np.asarray/"
            "np.array, or a numpy function kernelflow does not trace, needs concrete values. Drop the "
            "conversion (traced arrays already behave like arrays), or use np.stack for lists of arrays.")

    def __setitem__(self, key, value):
        raise TypeError(
            f"traced arrays are immutable: `x[...] = v` cannot be traced{where_str()}; build the new value "
            "with kf.where(mask, v, x), np.concatenate or np.pad instead")

    __hash__ = None  # like numpy arrays (== is elementwise)

    # -- numpy dispatch -----------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _dispatch.array_ufunc(ufunc, method, *inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _dispatch.array_function(func, types, args, kwargs)

    # -- operators ------------------------------------------------------------------------------------
    def __add__(self, o): return _t.ufunc(np.add, self, o)
    def __radd__(self, o): return _t.ufunc(np.add, o, self)
    def __sub__(self, o): return _t.ufunc(np.subtract, self, o)
    def __rsub__(self, o): return _t.ufunc(np.subtract, o, self)
    def __mul__(self, o): return _t.ufunc(np.multiply, self, o)
    def __rmul__(self, o): return _t.ufunc(np.multiply, o, self)
    def __truediv__(self, o): return _t.ufunc(np.true_divide, self, o)
    def __rtruediv__(self, o): return _t.ufunc(np.true_divide, o, self)
    def __floordiv__(self, o): return _t.ufunc(np.floor_divide, self, o)
    def __rfloordiv__(self, o): return _t.ufunc(np.floor_divide, o, self)
    def __mod__(self, o): return _t.ufunc(np.remainder, self, o)
    def __rmod__(self, o): return _t.ufunc(np.remainder, o, self)
    def __pow__(self, o): return _t.power(self, o)
    def __rpow__(self, o): return _t.power(o, self)
    def __matmul__(self, o): return _t.matmul(self, o)
    def __rmatmul__(self, o): return _t.matmul(o, self)
    def __neg__(self): return _t.ufunc(np.negative, self)
    def __pos__(self): return self
    def __abs__(self): return _t.ufunc(np.absolute, self)
    def __invert__(self): return _t.ufunc(np.invert, self)
    def __and__(self, o): return _t.ufunc(np.bitwise_and, self, o)
    def __rand__(self, o): return _t.ufunc(np.bitwise_and, o, self)
    def __or__(self, o): return _t.ufunc(np.bitwise_or, self, o)
    def __ror__(self, o): return _t.ufunc(np.bitwise_or, o, self)
    def __xor__(self, o): return _t.ufunc(np.bitwise_xor, self, o)
    def __rxor__(self, o): return _t.ufunc(np.bitwise_xor, o, self)
    def __eq__(self, o): return _t.ufunc(np.equal, self, o)
    def __ne__(self, o): return _t.ufunc(np.not_equal, self, o)
    def __lt__(self, o): return _t.ufunc(np.less, self, o)
    def __le__(self, o): return _t.ufunc(np.less_equal, self, o)
    def __gt__(self, o): return _t.ufunc(np.greater, self, o)
    def __ge__(self, o): return _t.ufunc(np.greater_equal, self, o)

    def __getitem__(self, key): return _t.getitem(self, key)

    # -- array methods --------------------------------------------------------------------------------
    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _t.reduce_sum(self, axis, dtype=dtype, keepdims=keepdims, out=out, **kw)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _t.mean(self, axis, dtype=dtype, keepdims=keepdims, out=out, **kw)

    def max(self, axis=None, out=None, keepdims=False, **kw):
        return _t.reduce_max(self, axis, keepdims=keepdims, out=out, **kw)

    def min(self, axis=None, out=None, keepdims=False, **kw):
        return _t.reduce_min(self, axis, keepdims=keepdims, out=out, **kw)

    def argmax(self, axis=None, out=None, keepdims=False):
        return _t.argmax(self, axis, out=out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        return _t.argmin(self, axis, out=out, keepdims=keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _t.var(self, axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _t.std(self, axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _t.reshape(self, shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        return _t.transpose(self, axes if axes else None)

    def swapaxes(self, a, b): return _t.swapaxes(self, a, b)
    def squeeze(self, axis=None): return _t.squeeze(self, axis)
    def flatten(self, order="C"): return _t.reshape(self, (-1,), order=order)
    def ravel(self, order="C"): return _t.reshape(self, (-1,), order=order)
    def astype(self, dtype, copy=True): return _t.astype(self, dtype)
    def clip(self, min=None, max=None): return _t.clip(self, min, max)
    def dot(self, other): return _t.dot(self, other)
    def take(self, indices, axis=None): return _t.take(self, indices, axis)
    def copy(self): return self

    def __copy__(self): return self
    def __deepcopy__(self, memo): return self


def wrap(trace: Trace, value: Value) -> Tracer:
    return Tracer(value, trace)


from . import traced as _t  # noqa: E402  (the numpy semantics; it imports this module)
from . import dispatch as _dispatch  # noqa: E402

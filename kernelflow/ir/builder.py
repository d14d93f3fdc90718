"""GraphBuilder: appends primitive nodes to a graph, inferring their types from the shape rules.

Used by the tracer, by gradient rules and by passes. ``b.add(x, y)`` is ``b.emit("add", x, y)``.
Shape and dtype errors raised by a shape rule are re-raised naming the op, the operand types and the
source location the builder is currently at (the user's line during tracing).
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from . import primitive
from .graph import Graph, Node, SourceLoc, Value
from .types import DType, DTypeError, ShapeError, TensorType, as_dtype, type_of_array


_PLAIN = frozenset({int, str, float, bool, type(None)})


def canonical_attr(v: Any) -> Any:
    """Attributes are immutable: lists become tuples, numpy scalars Python scalars, arrays read-only."""
    t = type(v)
    if t in _PLAIN:  # already canonical (the common case: every attribute a pass copies)
        return v
    if t is tuple and all([type(x) is int for x in v]):
        return v
    if isinstance(v, (list, tuple)):
        return tuple(canonical_attr(x) for x in v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        a = np.array(v, copy=True)
        a.flags.writeable = False
        return a
    return v


def located(err: Exception, op: str, types: Sequence[TensorType], loc: SourceLoc | None) -> Exception:
    """The same error class, with the op, operand types and source line prepended/appended."""
    where = f"\n  traced at {loc}" if loc else ""
    operands = ", ".join(str(t) for t in types)
    new = type(err)(f"{op}({operands}): {err}{where}")
    new.__cause__ = err
    return new


class GraphBuilder:
    def __init__(self, name: str = "main", graph: Graph | None = None):
        self.graph = graph if graph is not None else Graph(name)
        self.loc: SourceLoc | None = None

    # -- structure ---------------------------------------------------------------------------
    def add_input(self, type: TensorType) -> Value:
        v = Value(type)
        self.graph.inputs.append(v)
        return v

    def finish(self, outputs: Sequence[Value]) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph

    @contextlib.contextmanager
    def at(self, loc: SourceLoc | None):
        """Emit nodes inside the block with this source location."""
        saved, self.loc = self.loc, loc if loc is not None else self.loc
        try:
            yield
        finally:
            self.loc = saved

    # -- emitting ----------------------------------------------------------------------------
    def emit_node(self, op: str, *inputs: Value, **attrs) -> Node:
        # the hot path of tracing and of every gradient rule: kept to plain loops and look-ups
        prim = primitive._REGISTRY.get(op) or primitive.get(op)  # get() loads the registry, or raises
        for v in inputs:
            if v.__class__ is not Value and not isinstance(v, Value):
                i = next(j for j, x in enumerate(inputs) if x is v)
                raise TypeError(f"{op}: operand {i} is {type(v).__name__}, not an IR Value")
        if attrs:
            for k, v in attrs.items():
                if type(v) not in _PLAIN:
                    attrs[k] = canonical_attr(v)
        names = prim.attr_names
        if len(attrs) != len(names) or not all(map(attrs.__contains__, names)):
            raise TypeError(f"{op}: attributes {sorted(attrs)} do not match the expected "
                            f"{list(prim.attr_names)}")
        in_types = [v.type for v in inputs]
        try:
            out = prim.shape_rule(*in_types, **attrs)
        except (ShapeError, DTypeError) as e:
            raise located(e, op, in_types, self.loc) from None
        node = Node.owning(op, inputs, attrs, out if isinstance(out, tuple) else (out,), self.loc)
        self.graph.nodes.append(node)
        return node

    def copy_node(self, node: Node, inputs) -> Node:
        """Append a copy of ``node`` (a node of a valid graph) reading ``inputs`` instead of its own
        operands, with its own attributes, output types and source location. The caller guarantees that
        each new operand has the type of the operand it replaces, so the shape rule would infer the
        node's own output types again: copying whole graphs (inlining, autodiff's forward pass) skips it."""
        loc = node.loc if node.loc is not None else self.loc  # as ``at(node.loc)`` would
        outputs = node.outputs
        new = Node.owning(node.op, tuple(inputs), dict(node.attrs),
                          (outputs[0].type,) if len(outputs) == 1 else tuple([v.type for v in outputs]), loc)
        self.graph.nodes.append(new)
        return new

    def emit(self, op: str, *inputs: Value, **attrs) -> Value | tuple[Value, ...]:
        node = self.emit_node(op, *inputs, **attrs)
        return node.outputs[0] if len(node.outputs) == 1 else node.outputs

    def __getattr__(self, name: str):
        if name.startswith("_") or not primitive.is_primitive(name):
            raise AttributeError(name)
        emit_node = self.emit_node

        def emit_op(*inputs, **attrs):  # as ``self.emit(name, ...)``, one call shallower
            outputs = emit_node(name, *inputs, **attrs).outputs
            return outputs[0] if len(outputs) == 1 else outputs
        setattr(self, name, emit_op)  # found directly from now on (gradient rules call b.mul ... often)
        return emit_op

    # -- helpers used by tracing and gradient rules --------------------------------------------
    def constant(self, value, dtype: DType | str | None = None) -> Value:
        """A constant node holding ``value`` (a scalar or array) as ``dtype``."""
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=as_dtype(dtype).np_dtype)
        type_of_array(arr)  # rejects unsupported dtypes with a clear error
        return self.emit("constant", value=arr)

    def full(self, shape: Sequence[int], value, dtype: DType) -> Value:
        """``value`` broadcast to ``shape`` (a scalar constant plus broadcast_in_dim, fusable)."""
        scalar = self.constant(value, dtype)
        if tuple(shape) == ():
            return scalar
        return self.emit("broadcast_in_dim", scalar, shape=tuple(shape), dims=())

    def zeros_like(self, v: Value) -> Value:
        return self.full(v.shape, 0, v.dtype)

    def full_like(self, v: Value, value) -> Value:
        return self.full(v.shape, value, v.dtype)

    def broadcast_to(self, v: Value, shape: Sequence[int]) -> Value:
        """numpy-style broadcast (trailing dims aligned); a no-op when the shape already matches."""
        shape = tuple(shape)
        if v.shape == shape:
            return v
        lead = len(shape) - v.ndim
        if lead < 0 or any(d != 1 and d != shape[lead + i] for i, d in enumerate(v.shape)):
            raise ShapeError(f"cannot broadcast {v.type} to shape {list(shape)}")
        # broadcast_in_dim expands size-1 operand dims itself, so no reshape is needed first
        return self.emit("broadcast_in_dim", v, shape=shape, dims=tuple(range(lead, len(shape))))

    def sum_to(self, v: Value, shape: Sequence[int]) -> Value:
        """The transpose of broadcast_to: sum ``v`` down to ``shape``."""
        shape = tuple(shape)
        if v.shape == shape:
            return v
        lead = v.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(shape) if d == 1 and v.shape[lead + i] != 1)
        s = self.emit("reduce_sum", v, axes=axes) if axes else v
        if s.shape != shape:
            s = self.emit("reshape", s, shape=shape)
        return s

    def cast(self, v: Value, dtype) -> Value:
        dtype = as_dtype(dtype)
        return v if v.dtype == dtype else self.emit("cast", v, dtype=dtype)

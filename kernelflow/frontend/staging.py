"""Turning Python functions into graphs and graphs back into values.

* ``trace_graph`` runs a function on fresh tracers and returns its graph (plus the outer tracers it
  captured, which became extra inputs at the end of the input list);
* ``call_graph`` applies a graph to arguments: when any argument (or captured value) is traced, the graph
  is inlined into that trace; otherwise it runs on numpy arrays with the given runner;
* ``compile_executable`` picks the backend.
"""
from __future__ import annotations

import contextlib
import gc
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..ir import DTypeError, Graph, ShapeError, TensorType, as_dtype, type_of_array
from .pytree import TreeDef, flatten, leaf_paths
from .tracer import Trace, Tracer, new_trace, top_trace, wrap
from .traced import value_of

BACKENDS = ("numba", "interpret", "triton")


def is_array_leaf(x) -> bool:
    return isinstance(x, (Tracer, np.ndarray, np.generic, bool, int, float))


def leaf_type(x, path: str, fn_name: str) -> TensorType:
    """The static type a leaf argument traces as (Python scalars: numpy's default dtypes)."""
    if isinstance(x, Tracer):
        return x.type
    if is_device_array(x):  # GPU arrays keep their place: their type is read, never copied to the host
        return TensorType(as_dtype(np.dtype(x.dtype)), tuple(x.shape))
    if isinstance(x, (np.ndarray, np.generic, bool, int, float)):
        arr = np.asarray(x)
        try:
            return type_of_array(arr)
        except DTypeError as e:
            raise DTypeError(f"{fn_name}: argument {path} has dtype {arr.dtype}, which kernelflow does not "
                             f"support: {e}") from None
    raise TypeError(
        f"{fn_name}: argument {path} is a {type(x).__name__}; traced arguments must be numpy arrays, "
        "scalars, or dicts/lists/tuples/namedtuples of them. Pass other values as static arguments "
        "(kf.jit(..., static_argnums=... / static_argnames=...)).")


def is_device_array(x) -> bool:
    """A kernelflow DeviceArray, or another library's GPU array (CUDA array interface / CUDA DLPack)."""
    return hasattr(x, "__cuda_array_interface__") or type(x).__name__ == "DeviceArray" or (
        hasattr(x, "__dlpack_device__") and not isinstance(x, np.ndarray) and x.__dlpack_device__()[0] == 2)


def as_input_array(x, t: TensorType):
    """Host leaves become numpy arrays of the traced dtype; device arrays pass through unchanged."""
    return x if is_device_array(x) else np.asarray(x, dtype=t.dtype.np_dtype)


def graph_name(fn) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    name = re.sub(r"\W", "_", name).strip("_") or "fn"
    return name if not name[0].isdigit() else "fn_" + name


@dataclass
class TracedGraph:
    graph: Graph
    out_tree: TreeDef
    captured: list[Tracer] = field(default_factory=list)
    n_args: int = 0  # inputs that stand for the arguments; the captured ones follow
    compiled: Any = None  # (executable, input dtypes), set by kf.jit on the first call
    dump_prefix: str | None = None  # where KERNELFLOW_DUMP wrote this graph (its stages go beside it)

    @property
    def out_types(self) -> list[TensorType]:
        return [v.type for v in self.graph.outputs]


def output_value(trace: Trace, leaf, path: str, fn_name: str):
    if isinstance(leaf, Tracer):
        return trace.lift(leaf)
    if isinstance(leaf, (np.ndarray, np.generic, bool, int, float)):
        return trace.constant(np.asarray(leaf))
    raise TypeError(f"{fn_name}: output {path} is a {type(leaf).__name__}; a traced function returns arrays, "
                    "scalars, or dicts/lists/tuples/namedtuples of them")


def trace_graph(fn_of_leaves: Callable[[list[Tracer]], Any], in_types: Sequence[TensorType], name: str,
                check_output: Callable[[Any], None] | None = None) -> TracedGraph:
    """Trace ``fn_of_leaves(tracers)`` on fresh inputs of ``in_types``; its result is a pytree of outputs."""
    with new_trace(name) as trace:
        tracers = [wrap(trace, trace.builder.add_input(t)) for t in in_types]
        out = fn_of_leaves(tracers)
        if check_output is not None:
            check_output(out)
        leaves, out_tree = flatten(out)
        paths = None
        values = []
        for i, leaf in enumerate(leaves):
            if not isinstance(leaf, Tracer) and not is_array_leaf(leaf):
                paths = paths or leaf_paths(out, "output")
            values.append(output_value(trace, leaf, paths[i] if paths else f"output leaf {i}", name))
    graph = trace.builder.finish(values)
    return TracedGraph(graph, out_tree, list(trace.captured), len(in_types))


def inline_graph(trace: Trace, graph: Graph, inputs: Sequence, consume: bool = False) -> list[Tracer]:
    """Copy ``graph``'s nodes into ``trace`` with ``inputs`` (tracers or arrays) bound to its inputs.

    ``consume=True``: the caller made ``graph`` for this one use (a gradient graph), so its nodes move into
    the trace, rewired to read ``inputs``, instead of being copied; ``graph`` is left without nodes."""
    if len(inputs) != len(graph.inputs):
        raise TypeError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env = {}
    for i, (v, x) in enumerate(zip(graph.inputs, inputs)):
        val = value_of(trace, x, v.type.dtype.np_dtype)
        if val.type != v.type:
            raise ShapeError(f"input {i} of {graph.name}: expected {v.type}, got {val.type}")
        env[v] = val
    b = trace.builder
    if consume:
        nodes, loc, get = b.graph.nodes, b.loc, env.get
        for node in graph.nodes:  # as copy_node would: its own location, else the builder's
            node.inputs = tuple([get(v, v) for v in node.inputs])
            if node.loc is None:
                node.loc = loc
            nodes.append(node)
        outputs = [wrap(trace, get(v, v)) for v in graph.outputs]
        graph.nodes = []
        return outputs
    for node in graph.nodes:  # every operand has its original type (checked above for the inputs)
        new = b.copy_node(node, [env[v] for v in node.inputs])
        for old, fresh in zip(node.outputs, new.outputs):
            env[old] = fresh
    return [wrap(trace, env[v]) for v in graph.outputs]


def call_graph(graph: Graph, inputs: Sequence, run: Callable[[list[np.ndarray]], list[np.ndarray]],
               consume: bool = False) -> list:
    """Apply ``graph``: inline it when any input is traced, else ``run`` it on numpy arrays.
    ``consume``: see ``inline_graph``."""
    trace = top_trace(*inputs)
    if trace is not None:
        return inline_graph(trace, graph, inputs, consume)
    arrays = [as_input_array(x, v.type) for x, v in zip(inputs, graph.inputs)]
    return run(arrays)


def interpret_runner(graph: Graph, check_nan: bool = False):
    from ..ir.interpret import interpret  # noqa: PLC0415
    return lambda arrays: interpret(graph, arrays, check_nan=check_nan)


# -- the garbage collector while compiling -------------------------------------------------------------
# Tracing, the passes and numba allocate millions of small objects (nodes, values, dicts, numba IR);
# with CPython's default thresholds (a young-generation pass every 700 allocations, full passes as
# the heap grows) the collector took 16% of a cold W7 compile. Within ``fewer_gc_passes`` the young
# generation is collected every GC_THRESHOLDS[0] allocations instead: the same garbage is still
# collected (memory stays bounded), in far fewer passes. Each pass walks every young object, so what
# costs is the objects that live across a pass (walked again in the older generations); with 200,000
# most of a pass's garbage (the graph a rebuild replaced, numba's IR of a finished kernel) is already
# dead when it runs. W7 cold compile (parent + forked compile processes, 3 runs each, interleaved):
# 50,000 -> 200,000 took the collector from 0.43 to 0.20 s of the parent and the CPU time from 4.1 + 3.0
# (children) to 3.8 + 2.7 s; peak memory 308 -> 322 MB.
GC_THRESHOLDS = (200_000, 20, 100)
_gc_lock = threading.Lock()
_gc_depth = 0
_gc_saved: tuple | None = None


@contextlib.contextmanager
def fewer_gc_passes():
    """Raise the collector's thresholds for the block (nested and concurrent blocks share one setting;
    the last one to leave restores the caller's thresholds; thresholds set higher are kept)."""
    global _gc_depth, _gc_saved
    with _gc_lock:
        if _gc_depth == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(*(max(a, b) for a, b in zip(_gc_saved, GC_THRESHOLDS)))
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0:
                gc.set_threshold(*_gc_saved)


# -- backends -----------------------------------------------------------------------------------------
class NanCheckingExecutable:
    """Wraps a compiled executable: if an output holds a NaN, re-run the interpreter to name the node."""

    def __init__(self, inner, graph: Graph):
        self.inner = inner
        self.graph = graph
        self.backend = getattr(inner, "backend", "?")

    def __call__(self, *arrays):
        outs = self.inner(*arrays)
        if any(np.asarray(o).dtype.kind == "f" and np.isnan(o).any() for o in outs):
            from ..ir.interpret import interpret  # noqa: PLC0415
            interpret(self.graph, arrays, check_nan=True)  # raises naming the node when it finds it
            raise FloatingPointError(f"{self.graph.name}: an output holds NaN")
        return outs

    def __getattr__(self, name):  # kernels, ir(), explain() ... are the compiled executable's
        return getattr(self.inner, name)




def resolve_backend(backend: str) -> str:
    """``"auto"`` is Triton when a CUDA GPU is present, numba otherwise."""
    if backend == "auto":
        from ..runtime.cuda import gpu_available  # noqa: PLC0415 - imports no triton, probes the driver once
        return "triton" if gpu_available() else "numba"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS + ('auto',))}")
    return backend


def compile_executable(graph: Graph, backend: str = "numba", check_nan: bool = False):
    backend = resolve_backend(backend)
    if backend == "interpret":  # the interpreter checks each node itself, naming the first NaN
        from ..runtime.executable import InterpretedExecutable  # noqa: PLC0415
        return InterpretedExecutable(graph, check_nan)
    from ..runtime import compile_graph  # noqa: PLC0415 - numba loads only when a graph is compiled
    exe = compile_graph(graph, backend=backend)
    return NanCheckingExecutable(exe, graph) if check_nan else exe

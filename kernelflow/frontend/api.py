"""``kf.jit``: trace a numpy-style function once per input signature, compile the graph, cache it.

The signature of a call is the pytree structure of its traced arguments, their shapes and dtypes, and the
values of the static arguments. A call with a known signature runs the cached executable without tracing.
Called with tracers (inside another trace), a jitted function inlines its graph there instead.
"""
from __future__ import annotations

import functools
import html
import inspect
import os
import shutil
import subprocess
from typing import Any, Sequence

import numpy as np

from ..ir import Graph
from .pytree import flatten, leaf_paths, unflatten
from .staging import (TracedGraph, compile_executable, fewer_gc_passes, graph_name, inline_graph,
                      leaf_type, trace_graph)
from .tracer import Tracer, top_trace

_dump_counts: dict[str, int] = {}


def _dump(graph: Graph) -> str | None:
    """With KERNELFLOW_DUMP=<dir>, write a traced graph to <dir>/<name>.<n>.kf; returns <dir>/<name>.<n>."""
    directory = os.environ.get("KERNELFLOW_DUMP")
    if not directory:
        return None
    from ..ir.printer import print_graph  # noqa: PLC0415
    os.makedirs(directory, exist_ok=True)
    n = _dump_counts.get(graph.name, 0)
    _dump_counts[graph.name] = n + 1
    prefix = os.path.join(directory, f"{graph.name}.{n}")
    with open(prefix + ".kf", "w") as f:
        f.write(print_graph(graph))
    return prefix


# What a compiled executable can show of itself, and the file each stage is dumped to.
DUMP_STAGES = (("optimized", "kf"), ("fused", "kf"), ("plan", "txt"), ("module", "py"))


def _dump_compiled(prefix: str, exe) -> None:
    """Each compiler stage of ``exe`` next to its traced graph: <prefix>.<stage>.<ext> (the .kf files parse
    back: the fused one tags each node with its kernel in a comment), plus the fusion decisions."""
    if exe.backend == "interpret":  # the interpreter runs the traced graph itself: nothing more to show
        return
    for stage, ext in DUMP_STAGES:
        try:
            text = exe.ir(stage)
        except ValueError:  # a backend without that stage (the interpreter has no fusion)
            continue
        with open(f"{prefix}.{stage}.{ext}", "w") as f:
            f.write(text)
    with open(f"{prefix}.explain.txt", "w") as f:
        f.write(exe.explain())


class Lowered:
    """A traced graph, ready to inspect (``.ir()``, ``.as_dot()``) or compile (``.compile()``)."""

    def __init__(self, graph: Graph, backend: str = "numba", check_nan: bool = False):
        self.graph = graph
        self.backend = backend
        self.check_nan = check_nan

    def ir(self) -> str:
        from ..ir.printer import print_graph  # noqa: PLC0415
        return print_graph(self.graph)

    __str__ = ir

    def compile(self, target: str | None = None):
        """The executable for this graph; ``target="sm_90"`` compiles the Triton kernels ahead of time
        for that GPU instead (no GPU needed), each kernel exposing ``source`` and ``asm["ptx"]``."""
        if target is not None:
            from ..runtime.gpu import compile_ahead  # noqa: PLC0415
            return compile_ahead(self.graph, target)
        with fewer_gc_passes():
            return compile_executable(self.graph, self.backend, self.check_nan)

    def as_dot(self) -> str:
        """Graphviz DOT text: one box per node (op, result type, source line), edges for values."""
        def q(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [f"digraph {q(self.graph.name)} {{", '  rankdir=TB;',
                 '  node [shape=box, fontname="monospace", fontsize=10];']
        source = {}
        for i, v in enumerate(self.graph.inputs):
            lines.append(f"  in{i} [label={q(f'input {i}' + chr(10) + str(v.type))}, shape=ellipse];")
            source[v] = f"in{i}"
        for k, node in enumerate(self.graph.nodes):
            types = ", ".join(str(o.type) for o in node.outputs)
            label = f"{node.op}\n{types}"
            if node.loc is not None:
                label += f"\n{os.path.basename(node.loc.file)}:{node.loc.line}"
            lines.append(f"  n{k} [label={q(label)}];")
            for v in node.inputs:
                lines.append(f"  {source[v]} -> n{k} [label={q(str(v.type))}];")
            for o in node.outputs:
                source[o] = f"n{k}"
        for i, v in enumerate(self.graph.outputs):
            lines.append(f"  out{i} [label={q(f'output {i}')}, shape=ellipse];")
            lines.append(f"  {source[v]} -> out{i};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render_svg(self, path: str) -> str:
        """Render the DOT graph to an SVG file with Graphviz's ``dot`` program."""
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("rendering needs Graphviz's `dot` program, which is not installed "
                               "(apt-get install graphviz); Lowered.as_dot() gives the DOT text")
        subprocess.run([dot, "-Tsvg", "-o", path], input=self.as_dot(), text=True, check=True)
        return path

    def _repr_html_(self) -> str:  # notebooks
        return f"<pre>{html.escape(self.ir())}</pre>"


class Jitted:
    """A function compiled per input signature. Call it like the function; ``.lower(...)`` inspects it."""

    def __init__(self, fn, static_argnums=(), static_argnames=(), backend="numba", check_nan=False):
        if not callable(fn):
            raise TypeError(f"kf.jit needs a function, got {type(fn).__name__}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.backend = backend
        self.check_nan = check_nan
        self.name = graph_name(fn)
        nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        try:
            self._params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            self._params = []
        positional = [p.name for p in self._params
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        # a static argument may be given by position or by name: know both spellings
        nums = set(nums) | {positional.index(n) for n in names if n in positional}
        names = set(names) | {positional[i] for i in nums if 0 <= i < len(positional)}
        self._static_nums = nums
        self._static_names = names
        self._positional = positional
        self._cache: dict[Any, TracedGraph] = {}
        self.trace_count = 0

    def __repr__(self) -> str:
        return f"<kf.jit {self.name} backend={self.backend}>"

    # -- signature ------------------------------------------------------------------------------------
    def _is_static(self, i: int, n: int) -> bool:
        return i in self._static_nums or (i - n) in self._static_nums

    def _split(self, args, kwargs):
        n = len(args)
        dyn_args = tuple(a for i, a in enumerate(args) if not self._is_static(i, n))
        static_args = tuple((i, a) for i, a in enumerate(args) if self._is_static(i, n))
        dyn_kwargs = {k: kwargs[k] for k in sorted(kwargs) if k not in self._static_names}
        static_kwargs = tuple((k, kwargs[k]) for k in sorted(kwargs) if k in self._static_names)
        return dyn_args, dyn_kwargs, static_args, static_kwargs

    def _arg_name(self, i: int) -> str:
        return self._positional[i] if i < len(self._positional) else f"args[{i}]"

    def _paths(self, args, kwargs) -> list[str]:
        paths = []
        n = len(args)
        for i, a in enumerate(args):
            if not self._is_static(i, n):
                paths += leaf_paths(a, self._arg_name(i))
        for k in sorted(kwargs):
            if k not in self._static_names:
                paths += leaf_paths(kwargs[k], k)
        return paths

    def _signature(self, args, kwargs):
        """The cache key of a call: tree structure, (shape, dtype) of every leaf, static values."""
        if kwargs or self._static_nums:
            dyn_args, dyn_kwargs, static_args, static_kwargs = self._split(args, kwargs)
        else:  # the common case, kept cheap: it runs on every call
            dyn_args, dyn_kwargs, static_args, static_kwargs = args, {}, (), ()
        leaves, tree = flatten((dyn_args, dyn_kwargs))
        avals = []
        for x in leaves:
            if type(x) is np.ndarray or isinstance(x, Tracer):
                avals.append((x.shape, x.dtype))
            elif isinstance(x, (np.generic, bool, int, float)):
                a = np.asarray(x)
                avals.append((a.shape, a.dtype))
            else:
                self._leaf_types(args, kwargs, leaves)  # raises, naming the argument
        for where, value in [(self._arg_name(i), a) for i, a in static_args] + list(static_kwargs):
            try:
                hash(value)
            except TypeError:
                raise TypeError(f"{self.name}: static argument {where} must be hashable (it is part of the "
                                f"cache key), got a {type(value).__name__}; use a tuple instead of a list"
                                ) from None
        key = (tree, tuple(avals), static_args, static_kwargs)
        return key, leaves, tree

    def _leaf_types(self, args, kwargs, leaves):
        """The TensorType of every leaf; a leaf that cannot be traced raises an error naming its path."""
        paths = self._paths(args, kwargs)
        return [leaf_type(x, path, self.name) for x, path in zip(leaves, paths)]

    def _traced(self, args, kwargs):
        if not kwargs and not self._static_nums and all(type(a) is np.ndarray for a in args):
            # the hot path (every argument a plain array): the key is cheap and needs no pytree walk
            key = ("arrays", tuple((a.shape, a.dtype) for a in args))
            entry = self._cache.get(key)
            if entry is not None:
                return key, args, entry
        key, leaves, tree = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._trace(args, kwargs, tree, self._leaf_types(args, kwargs, leaves))
            if not entry.captured:  # a graph that closed over outer tracers belongs to that one trace
                self._cache[key] = entry
                if all(type(a) is np.ndarray for a in args) and not kwargs and not self._static_nums:
                    self._cache[("arrays", tuple((a.shape, a.dtype) for a in args))] = entry
        return key, leaves, entry

    def _trace(self, args, kwargs, tree, types) -> TracedGraph:
        n = len(args)

        def fn_of_leaves(tracers):
            dyn_args, dyn_kwargs = unflatten(tree, tracers)
            it = iter(dyn_args)
            full = [a if self._is_static(i, n) else next(it) for i, a in enumerate(args)]
            kw = {k: (kwargs[k] if k in self._static_names else dyn_kwargs[k]) for k in kwargs}
            return self.fn(*full, **kw)

        self.trace_count += 1
        with fewer_gc_passes():
            traced = trace_graph(fn_of_leaves, types, self.name)
        traced.dump_prefix = _dump(traced.graph)
        return traced

    # -- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        _, leaves, entry = self._traced(args, kwargs)
        inputs = list(leaves) + list(entry.captured)
        trace = top_trace(*inputs)
        if trace is not None:
            outs = inline_graph(trace, entry.graph, inputs)
        else:
            compiled = entry.compiled  # one executable per traced signature, however the key was spelled
            if compiled is None:
                with fewer_gc_passes():
                    exe = compile_executable(entry.graph, self.backend, self.check_nan)
                compiled = entry.compiled = (exe, [v.type.dtype.np_dtype for v in entry.graph.inputs])
                if entry.dump_prefix:
                    _dump_compiled(entry.dump_prefix, compiled[0])
            exe, dtypes = compiled
            arrays = [x if type(x) is np.ndarray and x.dtype == dt else np.asarray(x, dtype=dt)
                      for x, dt in zip(leaves, dtypes)]
            outs = exe(*arrays)
        return unflatten(entry.out_tree, outs)

    def lower(self, *args, **kwargs) -> Lowered:
        _, _, entry = self._traced(args, kwargs)
        return Lowered(entry.graph, self.backend, self.check_nan)


def jit(fn=None, *, static_argnums: int | Sequence[int] = (), static_argnames: str | Sequence[str] = (),
        backend: str = "numba", check_nan: bool = False):
    """Compile ``fn`` per input signature. Usable as ``@kf.jit`` or ``@kf.jit(static_argnums=1, ...)``.

    ``backend``: "numba" (the CPU compiler; the reference interpreter until it is installed), "interpret"
    (the reference interpreter) or "triton". ``check_nan=True`` raises FloatingPointError naming the first
    node that produced a NaN.
    """
    def wrap(f):
        return Jitted(f, static_argnums, static_argnames, backend, check_nan)
    return wrap if fn is None else wrap(fn)

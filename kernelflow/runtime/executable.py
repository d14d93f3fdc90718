"""compile_graph and Executable: run a Graph as fused numba kernels (or through the interpreter).

``compile_graph(graph, backend="numba")`` runs the pass pipeline, fusion, memory planning and codegen,
loads the generated module (through the persistent cache) and returns an ``Executable``:

* ``exe(*arrays) -> list[np.ndarray]``: inputs are checked (shape and dtype, exactly as the
  interpreter checks them; non-contiguous inputs are copied, never misread); outputs are arrays the
  caller owns (an output array the caller has dropped is recycled by a later call: ``OutputRecycler``);
  intermediates live in a pool allocated once per executable and reused by liveness.
* ``exe.kernels``: one ``KernelInfo`` per generated kernel (``name``, ``source``, ``kind``, ``nodes``).
* ``exe.ir(stage)``: ``"input"``, ``"optimized"``, ``"fused"`` (each node tagged with its step),
  ``"plan"`` (the buffer plan), ``"kernels"``, ``"module"`` (the whole generated source).
* ``exe.explain()``: every fusion decision with its reason, and the memory plan.
* ``exe.compile_info``: seconds spent, whether the module came from the disk cache, numba cache hits
  and compilations.

Calls from several threads are safe: a call that finds the pool busy runs on a private pool.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..codegen.kernel import Kernel, build_kernel, in_place_ok
from ..codegen.numba.module import module_source
from ..ir import primitive
from ..ir.graph import Graph
from ..ir.interpret import check_argument, interpret
from ..ir.printer import print_graph
from ..passes.fusion import FusionPlan, explain as explain_fusion, fuse
from ..passes.memory import MemoryPlan, plan_memory
from . import cache

BACKENDS = ("numba", "interpret", "triton")
_COMPILED: dict = {}
_COMPILED_LOCK = threading.Lock()


@dataclass
class KernelInfo:
    name: str
    kind: str
    source: str
    nodes: list[str]
    description: Kernel

    def __repr__(self) -> str:
        return f"<kernel {self.name}: {self.kind}, {len(self.nodes)} nodes>"


def window_runners() -> dict:
    """The window kernels (imported on first use: numba compiles them lazily per dtype)."""
    from ..codegen.numba.window import RUNNERS
    return RUNNERS


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _kernel_name(i: int, kernel_nodes) -> str:
    ops = []
    for n in kernel_nodes:
        if n.op not in ops and n.op not in ("broadcast_in_dim", "reshape", "transpose"):
            ops.append(n.op)
    text = "_".join(ops[:4]) or kernel_nodes[0].op
    return f"k{i}_{text}"


class OutputRecycler:
    """Allocates one graph output (flat) per call, reusing an array the caller has released.

    A freshly allocated large array costs its page faults on first write (a 64 MiB result: 5-20 ms
    on the 2-core machines, more than the kernel that fills it). The recycler keeps the last
    ``KEEP`` arrays it handed out; one whose only references are the recycler's own (no caller
    variable, no view: a view holds its base) is free and handed out again. ``KEEP = 2`` covers
    ``y = f(x)`` in a loop, where the previous result is still referenced during the call.
    Trade-off: an executable keeps up to ``KEEP`` dead copies of each output alive."""

    KEEP = 2
    __slots__ = ("size", "dtype", "arrays")

    def __init__(self, size: int, dtype):
        self.size = size
        self.dtype = dtype
        self.arrays: list = []

    def __call__(self) -> np.ndarray:
        for a in self.arrays:
            if sys.getrefcount(a) <= 3:  # the list, the loop variable, getrefcount's argument
                return a
        a = np.empty(self.size, self.dtype)
        if len(self.arrays) < self.KEEP:
            self.arrays.append(a)
        return a


class Executable:
    """A compiled graph. See the module docstring."""

    backend = "numba"

    def __init__(self, graph: Graph, optimized: Graph, plan: FusionPlan, kernels: dict[int, Kernel],
                 memory: MemoryPlan, source: str, kernel_sources: dict, module, bindings, compile_info):
        self.graph = graph
        self.optimized = optimized
        self.plan = plan
        self.memory = memory
        self.source = source
        self.module = module
        self.compile_info = compile_info
        self.kernels = [KernelInfo(k.name, k.kind, kernel_sources[k.name], k.nodes, k)
                        for k in kernels.values()]
        self._step_kernels = kernels
        self._profile = [0.0] * (len(plan.steps) + 1)
        self._bindings = bindings
        self._lock = threading.Lock()
        self._run = module.make_run(self._state())

    # -- running ------------------------------------------------------------------------------
    def _coerce(self, i: int, a):
        v = self.optimized.inputs[i]
        return check_argument(v, a, f"input {i} of graph {self.graph.name}")

    def _state(self) -> dict:
        """Allocate a pool and bind everything the generated driver needs."""
        pool = [np.empty(max(n, 1), np.uint8) for n in self.memory.slot_bytes]
        state = {"_coerce": self._coerce, "_as_tuple": _as_tuple}
        for b in self._bindings:
            if b.kind == "slot":
                slot, dtype, size = b.payload
                state[b.name] = pool[slot][:size * dtype.itemsize].view(dtype.np_dtype)
            elif b.kind == "slot_nd":
                slot, dtype, shape = b.payload
                size = int(np.prod(shape, dtype=np.int64))
                state[b.name] = pool[slot][:size * dtype.itemsize].view(dtype.np_dtype).reshape(shape)
            elif b.kind == "const":
                state[b.name] = b.payload.producer.attrs["value"]
            elif b.kind == "const_flat":
                state[b.name] = np.ascontiguousarray(b.payload.producer.attrs["value"]).reshape(-1)
            elif b.kind == "ref":
                state[b.name] = primitive.get(b.payload).reference
            elif b.kind == "window":
                state[b.name] = window_runners()[b.payload]
            elif b.kind == "matmul":
                from ..codegen.numba.blas import matmul
                state[b.name] = matmul
            elif b.kind == "scratch":
                state[b.name] = {}  # per pool: im2col buffers of the window kernels
            elif b.kind == "recycle":
                size, dtype = b.payload
                state[b.name] = OutputRecycler(size, dtype.np_dtype)
            elif b.kind == "attrs":
                state[b.name] = b.payload
            elif b.kind == "dtype":
                state[b.name] = b.payload.np_dtype
            elif b.kind == "profile":
                state[b.name] = self._profile
            elif b.kind == "clock":
                state[b.name] = time.perf_counter
            else:  # pragma: no cover
                raise AssertionError(b.kind)
        return state

    def __call__(self, *arrays) -> list[np.ndarray]:
        if len(arrays) != len(self.graph.inputs):
            raise TypeError(f"graph {self.graph.name} takes {len(self.graph.inputs)} inputs, got {len(arrays)}")
        if self._lock.acquire(blocking=False):
            try:
                return self._run(*arrays)
            finally:
                self._lock.release()
        return self.module.make_run(self._state())(*arrays)  # another thread holds the pool

    # -- inspection ---------------------------------------------------------------------------
    def ir(self, stage: str = "fused") -> str:
        if stage == "input":
            return print_graph(self.graph)
        if stage == "optimized":
            return print_graph(self.optimized)
        if stage == "fused":
            step_of = self.plan.step_of()
            names = {i: k.name for i, k in self._kernel_steps().items()}

            def tag(node):
                s = step_of[node]
                return f"step {s} {self.plan.steps[s].kind}" + (f" {names[s]}" if s in names else "")
            return print_graph(self.plan.graph, annotate=tag)
        if stage == "plan":
            return self.memory.describe(self.plan.names)
        if stage == "kernels":
            return "\n".join(k.source for k in self.kernels)
        if stage == "module":
            return self.source
        raise ValueError(f"unknown stage {stage!r}; stages: input, optimized, fused, plan, kernels, module")

    def _kernel_steps(self) -> dict[int, Kernel]:
        return self._step_kernels

    def step_bytes(self, i: int) -> int:
        """Minimum bytes step ``i`` moves: every buffer it reads once plus every buffer it writes
        (views and constants move nothing; literals inlined in a kernel are not buffers)."""
        step = self.plan.steps[i]
        if step.kind in ("view", "constant"):
            return 0
        if i in self._step_kernels:
            return sum(p.size * p.dtype.itemsize for p in self._step_kernels[i].params)
        inside = {v for n in step.nodes for v in n.outputs}
        reads = {v for n in step.nodes for v in n.inputs if v not in inside}
        return sum(v.type.size * v.dtype.itemsize for v in reads | inside)

    def profile(self) -> str:
        """Per-step wall time (compile with ``profile=True`` or ``KERNELFLOW_PROFILE=1``), slowest first,
        with the bytes each step moves at least and the rate that makes (GB/s: compare with the
        machine's copy bandwidth to see which kernels are memory-bound and how far from it)."""
        calls = self._profile[-1]
        if not calls:
            return "no profile: compile with profile=True (or KERNELFLOW_PROFILE=1) and call the executable"
        total = sum(self._profile[:-1])
        rows = sorted(range(len(self.plan.steps)), key=lambda i: -self._profile[i])
        lines = [f"profile of {self.graph.name}: {calls} calls, {total / calls * 1e3:.3f} ms per call in steps",
                 f"{'step':>5} {'kind':8} {'ms/call':>9} {'share':>6} {'MiB':>8} {'GB/s':>7}  what"]
        names = {i: k.name for i, k in self._step_kernels.items()}
        for i in rows:
            t = self._profile[i] / calls
            s = self.plan.steps[i]
            nbytes = self.step_bytes(i)
            rate = f"{nbytes / t / 1e9:7.1f}" if t > 0 and nbytes else f"{'-':>7}"
            what = names.get(i) or ", ".join(f"{n.op} {self.plan.names[n.outputs[0]]}" for n in s.nodes[:3])
            lines.append(f"{i:>5} {s.kind:8} {t * 1e3:9.3f} {100 * t * calls / max(total, 1e-12):5.1f}% "
                         f"{nbytes / 2**20:8.2f} {rate}  {what}")
        return "\n".join(lines)

    def explain(self) -> str:
        return explain_fusion(self.plan) + "\n" + self.memory.describe(self.plan.names)

    def __repr__(self) -> str:
        return (f"<Executable {self.graph.name}: {len(self.plan.steps)} steps, {len(self.kernels)} kernels, "
                f"backend numba>")


class InterpretedExecutable:
    """backend="interpret": the reference interpreter behind the Executable interface."""

    backend = "interpret"

    def __init__(self, graph: Graph, check_nan: bool = False):
        self.graph = graph
        self.check_nan = check_nan
        self.kernels: list = []
        self.compile_info = {"seconds": 0.0, "compiled": 0, "cache_hits": 0}

    def __call__(self, *arrays) -> list[np.ndarray]:
        return interpret(self.graph, arrays, check_nan=self.check_nan)

    def ir(self, stage: str = "input") -> str:
        return print_graph(self.graph)

    def explain(self) -> str:
        return f"graph {self.graph.name}: run node by node by the reference interpreter (no fusion)"


def _optimize(graph: Graph) -> Graph:
    from ..passes.pipeline import optimize
    return optimize(graph)


def compile_graph(graph: Graph, backend: str = "numba", *, optimize: bool = True, profile: bool | None = None):
    """Compile ``graph`` for ``backend`` ('numba', 'interpret' or 'triton'); see the module docstring.

    ``profile`` (default: the ``KERNELFLOW_PROFILE`` environment variable) times every step; see
    ``Executable.profile()``."""
    if profile is None:
        profile = os.environ.get("KERNELFLOW_PROFILE", "0") not in ("", "0")
    if backend == "interpret":
        return InterpretedExecutable(graph)
    if backend == "triton":  # the GPU backend (kernelflow.runtime.gpu): Triton kernels from the same fusion
        from .gpu import compile_triton
        return compile_triton(_optimize(graph) if optimize else graph)
    if backend != "numba":
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    text = print_graph(graph)
    memo_key = (text, backend, optimize, cache.cache_enabled(), profile)
    with _COMPILED_LOCK:
        if memo_key in _COMPILED:
            return _COMPILED[memo_key]
    start = time.perf_counter()
    optimized = _optimize(graph) if optimize else graph
    plan = fuse(optimized)
    kernels: dict[int, Kernel] = {}
    for i, step in enumerate(plan.steps):
        if step.kind == "kernel":
            kernels[i] = build_kernel(_kernel_name(i, step.nodes), step.analysis, plan.names)

    def can_write_in_place(s, u, v):
        k = kernels[s]
        pin = next((j for j, p in enumerate(k.params) if p.role == "in" and p.value is u), None)
        pout = next((j for j, p in enumerate(k.params) if p.role == "out" and p.value is v), None)
        return pin is not None and pout is not None and in_place_ok(k, pin, pout)

    memory = plan_memory(plan, can_write_in_place)
    source, bindings, kernel_sources = module_source(plan, kernels, memory, cache=cache.cache_enabled(),
                                                     profile=profile)
    codegen_done = time.perf_counter()
    module, info = cache.load_module(source, backend)
    hits = misses = 0
    for dispatcher in {id(d): d for d in (getattr(module, k.name) for k in kernels.values())}.values():
        stats = dispatcher.stats  # kernels with the same loop nest share one dispatcher
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    if info.get("in_process"):
        hits = misses = 0
    info.update(seconds=time.perf_counter() - start, codegen_seconds=codegen_done - start,
                cache_hits=hits, compiled=misses)
    exe = Executable(graph, optimized, plan, kernels, memory, source, kernel_sources, module, bindings, info)
    with _COMPILED_LOCK:
        _COMPILED[memo_key] = exe
    return exe

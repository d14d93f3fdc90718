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
  and compilations, ``passes``: whether this compile ran the pass pipeline (False when the graph-keyed
  cache entry, ``graph_cache.py``, supplied the module; the optimized graph, plans and kernel
  descriptions are then rebuilt on first inspection: ``ir()``, ``explain()``, ``kernels``, ``plan``).

Calls from several threads are safe: a call that finds the pool busy runs on a private pool.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..codegen.kernel import Kernel, build_kernel, in_place_ok, touched_elements
from ..codegen.numba import blas
from ..codegen.numba.module import module_source
from ..ir import primitive
from ..ir.graph import Graph
from ..ir.interpret import check_argument, interpret
from ..ir.printer import print_graph
from ..passes.fusion import FusionPlan, explain as explain_fusion, fuse
from ..passes.memory import MemoryPlan, plan_memory
from . import cache, graph_cache

BACKENDS = ("numba", "interpret", "triton")
_COMPILED: dict = {}
_COMPILED_LOCK = threading.Lock()
PIPELINE_RUNS = 0  # how many times this process ran the pass pipeline (tests check the warm path runs none)


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


@dataclass
class PassResults:
    """What the pass pipeline produces besides the module (needed only to inspect an executable)."""
    optimized: Graph
    plan: FusionPlan
    kernels: dict[int, Kernel]      # step index -> kernel description
    memory: MemoryPlan
    kernel_sources: dict[str, str]  # kernel name -> its source


def portable_bindings(bindings) -> list[tuple]:
    """The driver's bindings as (name, kind, payload) of plain values: a constant's Value becomes its
    array, so the list can be stored in the graph-keyed cache and the executable needs no graph."""
    out = []
    for b in bindings:
        payload = b.payload.producer.attrs["value"] if b.kind in ("const", "const_flat") else b.payload
        out.append((b.name, b.kind, payload))
    return out


class Executable:
    """A compiled graph. See the module docstring.

    ``build`` is what running needs (the graph cache entry's fields: source, portable bindings,
    slot_bytes, n_steps, kernel_names); ``passes`` what inspecting needs, or None on a cache hit, when
    ``rebuild()`` recomputes it on first use."""

    backend = "numba"

    def __init__(self, graph: Graph, build: dict, module, compile_info, passes: PassResults | None, rebuild):
        self.graph = graph
        self.source = build["source"]
        self.module = module
        self.compile_info = compile_info
        self._slot_bytes = build["slot_bytes"]
        self._bindings = build["bindings"]
        self._passes = passes
        self._rebuild = rebuild
        self._rebuild_lock = threading.Lock()
        self._profile = [0.0] * (build["n_steps"] + 1)
        self._lock = threading.Lock()
        self._run = module.make_run(self._state())

    # -- what the passes produced (rebuilt on first use after a graph cache hit) -------------------
    def _pass_results(self) -> PassResults:
        with self._rebuild_lock:
            if self._passes is None:
                passes, build = self._rebuild()
                if build["source"] != self.source:  # only a nondeterministic pass could do this
                    import warnings
                    warnings.warn(f"kernelflow: rebuilding the plans of graph {self.graph.name} gave a "
                                  f"different module than the cached one; ir()/explain() describe the "
                                  f"rebuilt one", RuntimeWarning, stacklevel=3)
                self._passes = passes
            return self._passes

    @property
    def optimized(self) -> Graph:
        return self._pass_results().optimized

    @property
    def plan(self) -> FusionPlan:
        return self._pass_results().plan

    @property
    def memory(self) -> MemoryPlan:
        return self._pass_results().memory

    @property
    def _step_kernels(self) -> dict[int, Kernel]:
        return self._pass_results().kernels

    @property
    def kernels(self) -> list[KernelInfo]:
        p = self._pass_results()
        return [KernelInfo(k.name, k.kind, p.kernel_sources[k.name], k.nodes, k) for k in p.kernels.values()]

    # -- running ------------------------------------------------------------------------------
    def _coerce(self, i: int, a):
        v = self.graph.inputs[i]  # the passes keep the inputs and their types
        return check_argument(v, a, f"input {i} of graph {self.graph.name}")

    def _state(self) -> dict:
        """Allocate a pool and bind everything the generated driver needs."""
        pool = [np.empty(max(n, 1), np.uint8) for n in self._slot_bytes]
        state = {"_coerce": self._coerce, "_as_tuple": _as_tuple}
        for name, kind, payload in self._bindings:
            if kind == "slot":
                slot, dtype, size = payload
                state[name] = pool[slot][:size * dtype.itemsize].view(dtype.np_dtype)
            elif kind == "slot_nd":
                slot, dtype, shape = payload
                size = int(np.prod(shape, dtype=np.int64))
                state[name] = pool[slot][:size * dtype.itemsize].view(dtype.np_dtype).reshape(shape)
            elif kind == "const":
                state[name] = payload
            elif kind == "const_flat":
                state[name] = np.ascontiguousarray(payload).reshape(-1)
            elif kind == "ref":
                state[name] = primitive.get(payload).reference
            elif kind == "window":
                state[name] = window_runners()[payload]
            elif kind == "matmul":
                from ..codegen.numba.blas import matmul
                state[name] = matmul
            elif kind == "transpose_copy":
                from ..codegen.numba.blas import transpose_copy
                state[name] = transpose_copy
            elif kind == "buffer":  # per pool: an array the driver writes before reading it
                shape, dtype = payload
                state[name] = np.empty(shape, dtype.np_dtype)
            elif kind == "scratch":
                state[name] = {}  # per pool: im2col buffers of the window kernels
            elif kind == "recycle":
                size, dtype = payload
                state[name] = OutputRecycler(size, dtype.np_dtype)
            elif kind == "attrs":
                state[name] = payload
            elif kind == "dtype":
                state[name] = payload.np_dtype
            elif kind == "profile":
                state[name] = self._profile
            elif kind == "clock":
                state[name] = time.perf_counter
            else:  # pragma: no cover
                raise AssertionError(kind)
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
        """Minimum bytes step ``i`` moves: every element it reads once plus every element it writes
        (a kernel that reads a slice of a buffer counts the slice; views and constants move nothing;
        literals inlined in a kernel are not buffers)."""
        step = self.plan.steps[i]
        if step.kind in ("view", "constant"):
            return 0
        if i in self._step_kernels:
            kernel = self._step_kernels[i]
            return sum(n * p.dtype.itemsize for n, p in zip(touched_elements(kernel), kernel.params))
        inside = {v for n in step.nodes for v in n.outputs}
        reads = {v for n in step.nodes for v in n.inputs if v not in inside}
        if step.nodes[0].op == "concatenate":  # pieces written in place by their producers move nothing here
            out, placed = step.nodes[0].outputs[0], self.memory.placed
            copied = [v for v in step.nodes[0].inputs if placed.get(v, (None,))[0] is not out]
            return 2 * sum(v.type.size * v.dtype.itemsize for v in copied)
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
        lines = [f"profile of {self.graph.name}: {int(calls)} calls, {total / calls * 1e3:.3f} ms per call in steps",
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
        if any(s.kind == "library" for s in self.plan.steps):
            advice = blas.kernel_advice(blas.openblas_corename(), blas.host_has_avx512())
            if advice:
                lines.append(advice)
        return "\n".join(lines)

    def explain(self) -> str:
        return explain_fusion(self.plan) + "\n" + self.memory.describe(self.plan.names)

    def __repr__(self) -> str:
        return (f"<Executable {self.graph.name}: {len(self._profile) - 1} steps, "
                f"{len(self.compile_info['kernel_names'])} kernels, backend numba>")


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
    from_environment = profile is None
    if from_environment:
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

    def run_passes():
        return _run_passes(graph, optimize, profile)

    build = entry_key = None
    if cache.cache_enabled():
        entry_key = graph_cache.entry_key(text, backend, f"optimize={optimize} profile={profile}")
        build = graph_cache.load(entry_key, backend)
    passes = None
    if build is None:
        passes, build = run_passes()
        if entry_key is not None:
            graph_cache.store(entry_key, backend, build)
    codegen_done = time.perf_counter()
    module, info = cache.load_module(build["source"], backend)
    hits = misses = 0
    dispatchers = (getattr(module, name) for name in build["kernel_names"])
    for dispatcher in {id(d): d for d in dispatchers}.values():
        stats = dispatcher.stats  # kernels with the same loop nest share one dispatcher
        hits += sum(stats.cache_hits.values())
        misses += sum(stats.cache_misses.values())
    if info.get("in_process"):
        hits = misses = 0
    children = info.get("compiled_in_children", 0)  # compiled by another process, then loaded here
    hits, misses = hits - children, misses + children
    info.update(seconds=time.perf_counter() - start, codegen_seconds=codegen_done - start,
                cache_hits=hits, compiled=misses, passes=passes is not None,
                kernel_names=list(build["kernel_names"]))
    exe = Executable(graph, build, module, info, passes, run_passes)
    with _COMPILED_LOCK:
        _COMPILED[memo_key] = exe
    if profile and from_environment:
        _report_profile_at_exit(exe)
    return exe


_PROFILED: list = []


def _report_profile_at_exit(exe: "Executable") -> None:
    """With KERNELFLOW_PROFILE=1 every executable that ran prints its per-step table to stderr when the
    process exits: how users find their own hot spots without changing their code (``profile=True``
    callers read ``Executable.profile()`` themselves)."""
    if not _PROFILED:
        import atexit  # noqa: PLC0415
        atexit.register(_print_profiles)
    _PROFILED.append(exe)


def _print_profiles() -> None:
    for exe in _PROFILED:
        if exe._profile[-1]:
            print(exe.profile(), file=sys.stderr)


def _run_passes(graph: Graph, optimize: bool, profile: bool) -> tuple[PassResults, dict]:
    """The pass pipeline and codegen: (what inspecting needs, what running needs: a graph cache entry)."""
    global PIPELINE_RUNS
    PIPELINE_RUNS += 1
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
    build = {"source": source, "bindings": portable_bindings(bindings), "slot_bytes": list(memory.slot_bytes),
             "n_steps": len(plan.steps), "kernel_names": [k.name for k in kernels.values()]}
    return PassResults(optimized, plan, kernels, memory, kernel_sources), build

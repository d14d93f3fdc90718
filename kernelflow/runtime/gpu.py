"""The Triton backend's runtime: loading, autotuning and running a program; ahead-of-time compilation.

Two ways to run a ``TritonProgram`` (kernelflow/codegen/triton/program.py):

* on an NVIDIA GPU: numpy inputs are copied to the device, device inputs are used in place, outputs
  stay on the device (``DeviceArray``, see runtime/cuda.py; ``np.asarray`` or ``device_get`` copies them
  back). Block sizes are autotuned once per kernel over a few configurations (``triton.autotune``, results
  cached on disk).
* with ``TRITON_INTERPRET=1`` (no GPU needed): every kernel runs in Triton's CPU interpreter on numpy
  arrays wrapped in ``HostTensor`` (runtime/triton_host.py); numpy in, numpy out.

Generated modules are written under ``$KERNELFLOW_CACHE_DIR/triton`` (default ``~/.cache/kernelflow``),
named by the hash of their source, and Triton's own cache is kept under it too.
"""
from __future__ import annotations


import os
import sys
import time
from typing import Any

import numpy as np

from ..codegen.triton import interpreting
from ..ir.graph import Graph
# device memory and the interpreter's host view live in their own modules; re-exported here because
# kernelflow.device_put, the frontend and the tests reach them as kernelflow.runtime.gpu.*
from .cuda import (DeviceArray, GPUUnavailableError, _put_one, as_device_array, cuda,  # noqa: F401
                   device_get, device_put, gpu_available)
from .triton_host import HostTensor, _patch_interpreter_bf16


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
    if not interpret:
        try:
            cuda()
        except GPUUnavailableError as e:
            raise GPUUnavailableError(
                f"backend='triton' needs an NVIDIA GPU ({e}); set TRITON_INTERPRET=1 in the environment "
                "(before triton is imported) to run the Triton kernels in Triton's CPU interpreter instead"
            ) from None
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

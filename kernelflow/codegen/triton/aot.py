"""Ahead-of-time compilation of generated Triton kernels for a GPU target, without a GPU.

``compile_sources(kernels, target="sm_90")`` compiles each kernel module (its default configuration)
through Triton's full pipeline (ttir, ttgir, llir, ptx, cubin) for ``GPUTarget("cuda", 90, 32)``.

It runs in a child process (``python -m kernelflow.codegen.triton.aot``): a kernel has to be a GPU
``JITFunction`` there, which ``@triton.jit`` only gives without ``TRITON_INTERPRET=1``, and Triton's
interpreter leaves the language module patched after a run, so a process that has interpreted kernels
cannot compile cleanly. The child reads a JSON job list on stdin and writes the artifacts to a folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class CompiledKernel:
    """One kernel compiled for a target: its Triton source and the compiler's artifacts."""

    name: str
    source: str
    target: str
    asm: dict = field(default_factory=dict)    # ttir, ttgir, llir, ptx (text), cubin (bytes)
    metadata: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<CompiledKernel {self.name} for {self.target}: {len(self.asm.get('cubin', b''))} byte cubin>"


def parse_target(target: str) -> tuple[str, int, int]:
    """``"sm_90"`` / ``"sm_90a"`` / ``"cuda:90"`` -> ("cuda", 90, 32)."""
    m = re.fullmatch(r"(?:sm_|cuda:)(\d+)a?", str(target).strip())
    if not m:
        raise ValueError(f"unknown GPU target {target!r}; use an NVIDIA compute capability like 'sm_90'")
    return "cuda", int(m.group(1)), 32


def compile_sources(jobs: list[dict], target: str, out_dir: str, timeout: float = 600) -> list[CompiledKernel]:
    """Compile ``jobs`` (each: path, name, signature, constexprs, num_warps, num_stages, source) in a
    child process; artifacts land in ``out_dir``."""
    parse_target(target)
    os.makedirs(out_dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    request = json.dumps({"target": target, "out_dir": out_dir,
                          "jobs": [{k: v for k, v in j.items() if k != "source"} for j in jobs]})
    proc = subprocess.run([sys.executable, "-m", "kernelflow.codegen.triton.aot"], input=request, text=True,
                          capture_output=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"Triton AOT compilation for {target} failed:\n{proc.stderr[-6000:]}")
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    compiled = []
    for job, res in zip(jobs, results):
        asm = {}
        for kind, path in res["files"].items():
            mode = "rb" if kind == "cubin" else "r"
            with open(path, mode) as f:
                asm[kind] = f.read()
        compiled.append(CompiledKernel(job["name"], job["source"], target, asm, res["metadata"]))
    return compiled


def _compile_in_this_process(request: dict) -> list[dict]:
    import triton  # noqa: PLC0415
    from triton.backends.compiler import GPUTarget  # noqa: PLC0415
    from triton.compiler import ASTSource  # noqa: PLC0415

    backend, arch, warp = parse_target(request["target"])
    target = GPUTarget(backend, arch, warp)
    results = []
    for job in request["jobs"]:
        spec = importlib.util.spec_from_file_location(job["module"], job["path"])
        module = importlib.util.module_from_spec(spec)
        sys.modules[job["module"]] = module
        spec.loader.exec_module(module)
        fn = getattr(module, job["name"])
        src = ASTSource(fn, signature=job["signature"], constexprs=job["constexprs"])
        options = {"num_warps": job["num_warps"], "num_stages": job["num_stages"]}
        kernel = triton.compile(src, target=target, options=options)
        files = {}
        for kind in ("ttir", "ttgir", "llir", "ptx", "cubin"):
            if kind not in kernel.asm:
                continue
            path = os.path.join(request["out_dir"], f"{job['name']}.{kind}")
            data = kernel.asm[kind]
            with open(path, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
            files[kind] = path
        md = kernel.metadata
        results.append({"files": files, "metadata": {"name": md.name, "num_warps": md.num_warps,
                                                     "num_stages": md.num_stages, "shared": md.shared,
                                                     "target": str(target)}})
    return results


if __name__ == "__main__":
    print(json.dumps(_compile_in_this_process(json.loads(sys.stdin.read()))))

"""Size of the graphs autodiff produces: node counts and peak live bytes, forward vs forward+backward.

    python -m bench.graph_stats        # prints a markdown table (recorded in docs/autodiff.md)

For the W5 MLP (batch 128, 784-256-256-10) and W6 LeNet-5 (batch 64, 28x28) losses it traces the loss alone
and ``kf.value_and_grad`` of it w.r.t. all parameters, runs the default pass pipeline, and reports:
nodes after simplification, peak live bytes when every node output is its own buffer (the unfused graph,
in node order), and peak live bytes of the fused, buffer-planned schedule the numba backend runs.
"""
from __future__ import annotations

import numpy as np

import kernelflow as kf
from kernelflow.passes.fusion import fuse
from kernelflow.passes.memory import peak_unfused, plan_memory
from kernelflow.passes.pipeline import optimize

from .workloads import lenet, mlp


def stats(fn, args) -> dict:
    graph = optimize(kf.jit(fn, backend="interpret").lower(*args).graph)
    memory = plan_memory(fuse(graph))
    return {"nodes": len(graph.nodes), "peak_unfused": peak_unfused(graph), "peak_fused": memory.peak,
            "ops": graph.op_counts()}


def rows():
    for name, module in (("MLP (W5)", mlp), ("LeNet-5 (W6)", lenet)):
        data = module.make_data(quick=False)
        x, y = data["args"]
        args = (data["params"], x, y.astype(np.int32))
        fwd = stats(module.loss_numpy_style, args)
        both = stats(kf.value_and_grad(module.loss_numpy_style), args)
        yield name, fwd, both


def main():
    mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
    print("| model | graph | nodes | peak live, unfused | peak live, fused schedule |")
    print("|---|---|---|---|---|")
    for name, fwd, both in rows():
        print(f"| {name} | forward | {fwd['nodes']} | {mib(fwd['peak_unfused'])} | {mib(fwd['peak_fused'])} |")
        print(f"| {name} | forward + backward | {both['nodes']} | {mib(both['peak_unfused'])} | "
              f"{mib(both['peak_fused'])} |")
    for name, fwd, both in rows():
        extra = {k: both["ops"].get(k, 0) - fwd["ops"].get(k, 0) for k in both["ops"]}
        print(f"\n{name}: backward adds " + ", ".join(f"{n} {k}" for k, n in sorted(extra.items()) if n))


if __name__ == "__main__":
    main()

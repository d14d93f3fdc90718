"""Lower a graph to a Triton program: the fusion plan's steps as Triton kernels (and the few host steps).

``lower_graph(graph)`` runs fusion (kernelflow/passes/fusion.py), builds each kernel description
(kernelflow/codegen/kernel.py) and prints it (printer.py, matmul.py, special.py). The result is a
``TritonProgram``: an ordered list of steps, each one of

* ``Launch``    one generated ``@triton.jit`` kernel: which Values it reads and writes, in param order;
* ``HostStep``  nodes this backend does not lower yet (conv, pooling, pad, concatenate, argmax,
                f16/bf16 elementwise, ...): run with the primitives' numpy references on the host, each
                listed in ``explain()``;
* ``ConstantStep`` a constant, uploaded once.

A dot_general whose only reader is a pointwise kernel that reads it at its own index absorbs that
kernel as its epilogue (matmul + bias + relu is one kernel); the product never reaches memory.
This module only prints; kernelflow/runtime/gpu.py loads and runs a program.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass, field

import numpy as np

from ...ir.graph import Graph, Node, Value
from ...passes.fusion import VIEW_OPS, analyze_group, fuse, explain as explain_fusion, NotFusable
from ..kernel import build_kernel
from . import interpreting
from .matmul import NotLowerable, epilogue_fits, print_matmul
from .printer import HEADER, PrintedKernel, print_kernel
from .special import print_gather, print_random_bits, print_scatter_add


# dtypes Triton kernels compute in: the CPU set plus float16 and bfloat16
KERNEL_DTYPES = frozenset({"f16", "bf16", "f32", "f64", "i8", "i32", "i64", "u8", "u32", "bool"})


@dataclass
class TritonKernel:
    """One generated kernel: its module source (readable, complete) and its launch description."""

    printed: PrintedKernel
    module_source: str

    @property
    def name(self) -> str:
        return self.printed.name

    @property
    def source(self) -> str:
        return self.module_source

    @property
    def key(self) -> str:
        return hashlib.sha256(self.module_source.encode()).hexdigest()[:20]


@dataclass
class Launch:
    kernel: TritonKernel
    args: list[Value]          # the buffers of the kernel's params, in order
    outputs: list[Value]       # the ones it writes (fresh buffers)
    zero_outputs: bool = False # outputs start as zeros (scatter_add accumulates into a copy)
    init_from: Value | None = None  # scatter_add: the output starts as a copy of this value
    label: str = ""


@dataclass
class HostStep:
    nodes: list[Node]
    reason: str
    label: str = ""


@dataclass
class ConstantStep:
    node: Node


@dataclass
class TritonProgram:
    graph: Graph
    steps: list
    kernels: list[TritonKernel]
    report: list[str] = field(default_factory=list)
    fusion_report: str = ""

    def explain(self) -> str:
        lines = [f"triton program for graph {self.graph.name}: {len(self.kernels)} Triton kernels, "
                 f"{sum(isinstance(s, HostStep) for s in self.steps)} host steps"]
        lines += [f"  {r}" for r in self.report]
        return "\n".join(lines) + "\n" + self.fusion_report


def _module(printed: PrintedKernel) -> str:
    configs = ""
    if printed.kind == "matmul":
        configs = ("# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) tried by the autotuner on a GPU\n"
                   f"CONFIGS = {list(printed.block_choices)!r}\n\n\n")
    elif len(printed.block_choices) > 1:
        configs = f"# BLOCK sizes tried by the autotuner on a GPU\nCONFIGS = {list(printed.block_choices)!r}\n\n\n"
    return f"{HEADER}\n\n{configs}{printed.source}"


def lower_graph(graph: Graph, interpret: bool | None = None, optimize: bool = True) -> TritonProgram:
    """Print every kernel of ``graph`` (see the module docstring). The program runs ``plan.graph``: the
    optimized graph as fusion rewrote it, with the same inputs and outputs in the same order."""
    interpret = interpreting() if interpret is None else interpret
    if optimize:
        from ...passes.pipeline import optimize as run_passes  # noqa: PLC0415
        graph = run_passes(graph)
    if "kernel_dtypes" in inspect.signature(fuse).parameters:
        plan = fuse(graph, kernel_dtypes=KERNEL_DTYPES)   # float16/bfloat16 chains fuse on the GPU too
    else:
        plan = fuse(graph)
    graph = plan.graph
    labels = plan.names
    users = graph.users()
    graph_outputs = set(graph.outputs)
    step_of_value = {}
    for i, s in enumerate(plan.steps):
        for n in s.nodes:
            for v in n.outputs:
                step_of_value[v] = i

    # kernel descriptions, so a dot_general can look at its reader
    descriptions = {}
    for i, s in enumerate(plan.steps):
        if s.kind == "kernel":
            descriptions[i] = build_kernel(f"k{i}_{_short(s.nodes)}", s.analysis, labels)

    # matmul epilogues: dot step -> the kernel step it absorbs
    absorbed: dict[int, int] = {}
    for i, s in enumerate(plan.steps):
        if s.kind != "library" or s.nodes[0].op != "dot_general":
            continue
        out = s.nodes[0].outputs[0]
        readers = users.get(out, [])
        reader_steps = {step_of_value[r.outputs[0]] for r in readers}
        if out in graph_outputs or len(reader_steps) != 1:
            continue
        j = reader_steps.pop()
        k = descriptions.get(j)
        if k is None or j in absorbed.values():
            continue
        param = next((p_i for p_i, p in enumerate(k.params) if p.value is out and p.role == "in"), None)
        if param is not None and epilogue_fits(k, param, out.type.size):
            absorbed[i] = j
    epilogue_of = {j: i for i, j in absorbed.items()}

    steps, kernels, report = [], [], []

    def add_kernel(printed: PrintedKernel, args, outputs, **kw) -> Launch:
        tk = TritonKernel(printed, _module(printed))
        kernels.append(tk)
        launch = Launch(tk, list(args), list(outputs), **kw)
        steps.append(launch)
        return launch

    for i, s in enumerate(plan.steps):
        if i in absorbed:
            continue  # runs later, at the position of the kernel it absorbed
        if s.kind == "constant":
            steps.append(ConstantStep(s.nodes[0]))
            continue
        if s.kind == "kernel":
            k = descriptions[i]
            if i in epilogue_of:
                dot_step = plan.steps[epilogue_of[i]]
                node = dot_step.nodes[0]
                param = next(p_i for p_i, p in enumerate(k.params) if p.value is node.outputs[0])
                try:
                    printed, args = print_matmul(f"k{i}_dot_epilogue", node, labels, labels[node.outputs[0]],
                                                 epilogue=k, dot_param=param, interpret=interpret)
                    add_kernel(printed, args, [p.value for p in k.outputs()], label=printed.note)
                    report.append(f"{k.name}: dot_general {labels[node.outputs[0]]} with its epilogue "
                                  f"({', '.join(n.op for n in s.nodes)}) as one tl.dot kernel")
                    continue
                except NotLowerable as e:
                    report.append(f"dot_general {labels[node.outputs[0]]}: {e}; runs on the host")
                    steps.append(HostStep(dot_step.nodes, str(e)))
            printed = print_kernel(k)
            add_kernel(printed, [p.value for p in k.params], [p.value for p in k.outputs()], label=k.name)
            continue
        if s.kind == "library" and s.nodes[0].op == "dot_general":
            node = s.nodes[0]
            try:
                printed, args = print_matmul(f"k{i}_dot", node, labels, labels[node.outputs[0]],
                                             interpret=interpret)
                add_kernel(printed, args, [node.outputs[0]], label=printed.note)
                continue
            except NotLowerable as e:
                report.append(f"dot_general {labels[node.outputs[0]]}: {e}; runs on the host")
                steps.append(HostStep(s.nodes, str(e)))
                continue
        if s.kind == "view":
            # movement read by library/numpy steps: materialised by a copy kernel (one per output)
            outs = s.outputs(users, graph_outputs)
            try:
                for v in outs:
                    nodes = _producers_within(v, s.nodes)
                    analysis = analyze_group(nodes, users, graph_outputs | {v}, labels.get)
                    analysis.outputs = [v]
                    analysis.stores = [st for st in analysis.stores if st[0] is v]
                    k = build_kernel(f"k{i}_copy", analysis, labels)
                    add_kernel(print_kernel(k), [p.value for p in k.params], [v], label=k.name)
                continue
            except NotFusable as e:
                report.append(f"movement {', '.join(n.op for n in s.nodes)}: {e}; runs on the host")
                steps.append(HostStep(s.nodes, str(e)))
                continue
        node = s.nodes[0]
        special = {"random_bits": print_random_bits, "gather": print_gather, "scatter_add": print_scatter_add}
        if s.kind == "numpy" and node.op in special:
            try:
                printed, args, extra = special[node.op](f"k{i}_{node.op}", node, labels)
                add_kernel(printed, args, [node.outputs[0]], label=printed.name, **extra)
                continue
            except NotLowerable as e:
                s = type(s)(s.kind, s.nodes, reason=str(e))
        reason = (s.reason if s.kind == "numpy" and s.reason else f"{node.op}: no Triton lowering yet")
        report.append(f"host step (numpy reference, not Triton): {reason}")
        steps.append(HostStep(s.nodes, reason))
    return TritonProgram(graph, steps, kernels, report, explain_fusion(plan))


def _short(nodes) -> str:
    ops = [n.op for n in nodes if n.op not in VIEW_OPS] or [nodes[0].op]
    name = "_".join(dict.fromkeys(ops))
    return name[:40].rstrip("_")


def _producers_within(v: Value, nodes) -> list[Node]:
    members = set(nodes)
    out, stack = [], [v.producer]
    while stack:
        n = stack.pop()
        if n is None or n not in members or n in out:
            continue
        out.append(n)
        stack.extend(x.producer for x in n.inputs)
    order = {n: k for k, n in enumerate(nodes)}
    return sorted(out, key=order.get)


def host_reference(node: Node, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Run one node with its numpy reference (the host fallback)."""
    from ...ir import primitive  # noqa: PLC0415
    result = primitive.get(node.op).reference(*arrays, **node.attrs)
    return list(result) if isinstance(result, tuple) else [result]

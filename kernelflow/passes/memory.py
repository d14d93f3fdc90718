"""Buffer planning for a FusionPlan: which value lives where, with buffers reused by liveness.

Storage of each value the schedule materialises:

* ``input``  a graph input (the caller's array, copied only when not contiguous);
* ``const``  a constant, materialised once at compile time;
* ``fresh``  a graph output (a new array per call: the caller owns it) or the result of a numpy step;
* ``slot``   an intermediate written by a kernel or a library call: it lives in a *slot* of the
             executable's persistent pool, and a slot is reused as soon as every value in it is dead
             (the pool is allocated once, so steady-state calls allocate only their outputs);
* ``view``   the output of a view step: a numpy view of its input, which keeps its input alive.

A kernel may write an output into the slot of an input it reads for the last time (in place) when the
caller-provided ``can_write_in_place(step, input, output)`` says every element is read before it is
overwritten at the same position (the numba backend checks the index maps).

``peak_unfused`` is the peak of live bytes when every node's output is its own buffer (in node order);
``peak`` is the same measure for the fused schedule; ``pool_bytes`` is what the pool really holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .fusion import FusionPlan


@dataclass
class MemoryPlan:
    storage: dict                 # Value -> 'input' | 'const' | 'fresh' | 'slot' | 'view'
    slot_of: dict                 # Value -> slot index
    slot_bytes: list[int]
    in_place: list = field(default_factory=list)   # (step, input value, output value)
    last_use: dict = field(default_factory=dict)   # Value -> step index
    peak: int = 0
    peak_unfused: int = 0

    @property
    def pool_bytes(self) -> int:
        return sum(self.slot_bytes)

    def describe(self, names) -> str:
        lines = [f"memory plan: {len(self.slot_bytes)} pool slots, {self.pool_bytes} bytes; "
                 f"peak live {self.peak} bytes (unfused graph: {self.peak_unfused} bytes)"]
        by_slot: dict[int, list] = {}
        for v, s in self.slot_of.items():
            by_slot.setdefault(s, []).append(v)
        for s, size in enumerate(self.slot_bytes):
            vals = ", ".join(f"{names.get(v, '?')} {v.type}" for v in by_slot.get(s, []))
            lines.append(f"  slot {s}: {size} bytes <- {vals}")
        for step, u, v in self.in_place:
            lines.append(f"  in place: step {step} writes {names.get(v)} over {names.get(u)}")
        fresh = [names.get(v, "?") for v, k in self.storage.items() if k == "fresh"]
        if fresh:
            lines.append(f"  fresh per call: {', '.join(fresh)}")
        return "\n".join(lines)


# Window primitives the CPU backend runs as loop kernels writing into a given buffer (see
# kernelflow/codegen/numba/window.py), and the dtypes it does so for.
POOL_OPS = frozenset({"reduce_window_max", "select_and_scatter_add", "select_and_gather", "reduce_window_sum",
                      "reduce_window_sum_transpose"})
CONV_OPS = frozenset({"conv2d", "conv2d_input_grad", "conv2d_weight_grad"})
_POOL_DTYPES = frozenset({"f32", "f64", "i8", "i32", "i64", "u8", "u32"})
_CONV_DTYPES = frozenset({"f32", "f64"})


def window_kernel_op(node) -> bool:
    """Does the CPU backend run this node as a window loop kernel (conv through im2col + BLAS)?"""
    if node.op in CONV_OPS:
        allowed = _CONV_DTYPES
    elif node.op in POOL_OPS:
        allowed = _POOL_DTYPES
    else:
        return False
    return all(v.dtype.name in allowed for v in (*node.inputs, *node.outputs))


def writes_into_buffers(step) -> bool:
    """Kernels, BLAS calls and window kernels write into buffers the runtime gives them; the other
    numpy lowerings return new arrays."""
    return step.kind == "kernel" or (step.kind == "library" and step.nodes[0].op == "dot_general") \
        or (step.kind in ("library", "numpy") and window_kernel_op(step.nodes[0]))


def plan_memory(plan: FusionPlan, can_write_in_place=None) -> MemoryPlan:
    graph = plan.graph
    users = graph.users()
    graph_outputs = set(graph.outputs)
    n_steps = len(plan.steps)
    storage: dict = {v: "input" for v in graph.inputs}
    produced_at: dict = {}
    for s, step in enumerate(plan.steps):
        for v in step.outputs(users, graph_outputs):
            produced_at[v] = s
            if step.kind == "constant":
                storage[v] = "const"
            elif step.kind == "view":
                storage[v] = "view"
            elif v in graph_outputs or not writes_into_buffers(step):
                storage[v] = "fresh"
            else:
                storage[v] = "slot"

    # Last use per value, extended through views (a view keeps its input alive).
    last_use: dict = {}
    for s, step in enumerate(plan.steps):
        for v in step.inputs:
            last_use[v] = s
    for v in graph_outputs:
        last_use[v] = n_steps
    view_inputs: dict = {}
    for s in range(n_steps - 1, -1, -1):
        step = plan.steps[s]
        if step.kind == "view":
            outs = step.outputs(users, graph_outputs)
            end = max((last_use.get(o, s) for o in outs), default=s)
            for u in step.inputs:
                last_use[u] = max(last_use.get(u, s), end)

    slot_of: dict = {}
    slot_bytes: list[int] = []
    free: list[int] = []
    in_place = []
    dies_at: dict[int, list] = {}
    for v, s in last_use.items():
        dies_at.setdefault(s, []).append(v)
    for s, step in enumerate(plan.steps):
        transferred = set()
        for v in step.outputs(users, graph_outputs):
            if storage[v] != "slot":
                continue
            need = v.type.nbytes
            chosen = None
            if step.kind == "kernel" and can_write_in_place is not None:
                for u in step.inputs:
                    if storage.get(u) == "slot" and last_use.get(u) == s and u not in transferred \
                            and u.type == v.type and can_write_in_place(s, u, v):
                        chosen = slot_of[u]
                        transferred.add(u)
                        in_place.append((s, u, v))
                        break
            if chosen is None:
                fitting = [k for k in free if slot_bytes[k] >= need]
                if fitting:
                    chosen = min(fitting, key=lambda k: slot_bytes[k])
                elif free:
                    chosen = max(free, key=lambda k: slot_bytes[k])
                    slot_bytes[chosen] = need
                else:
                    chosen = len(slot_bytes)
                    slot_bytes.append(need)
                if chosen in free:
                    free.remove(chosen)
            slot_of[v] = chosen
        for u in dies_at.get(s, []):
            if storage.get(u) == "slot" and u not in transferred:
                free.append(slot_of[u])

    mp = MemoryPlan(storage, slot_of, slot_bytes, in_place, last_use)
    mp.peak = _peak_fused(plan, storage, last_use, produced_at, n_steps)
    mp.peak_unfused = peak_unfused(graph)
    return mp


def _peak_fused(plan, storage, last_use, produced_at, n_steps) -> int:
    delta = [0] * (n_steps + 2)
    for v, s in produced_at.items():
        if storage[v] in ("slot", "fresh"):
            delta[s] += v.type.nbytes
            delta[last_use.get(v, s) + 1] -= v.type.nbytes
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak


def peak_unfused(graph) -> int:
    """Peak live bytes when every node output (except constants) is its own buffer, in node order."""
    n = len(graph.nodes)
    last: dict = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            last[v] = i
    for v in graph.outputs:
        last[v] = n
    delta = [0] * (n + 2)
    for i, node in enumerate(graph.nodes):
        if node.op == "constant":
            continue
        for v in node.outputs:
            delta[i] += v.type.nbytes
            delta[last.get(v, i) + 1] -= v.type.nbytes
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak

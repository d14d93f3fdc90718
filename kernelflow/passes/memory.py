"""Buffer planning for a FusionPlan: which value lives where, with buffers reused by liveness.

Storage of each value the schedule materialises:

* ``input``  a graph input (the caller's array, copied only when not contiguous);
* ``const``  a constant, materialised once at compile time;
* ``fresh``  a graph output (a new array per call: the caller owns it) or the result of a numpy step;
* ``slot``   an intermediate written by a kernel, a library call or a loop kernel (window and
             indexing ops): it lives in a *slot* of the executable's persistent pool, and a slot is
             reused as soon as every value in it is dead (the pool is allocated once, so steady-state
             calls allocate only their outputs);
* ``view``   the output of a view step: a numpy view of its input, which keeps its input alive.

A concatenate writes into its slot (``np.concatenate(..., out=)``). Its pieces that are contiguous
ranges of its output (axis 0, or only size-1 dims before the axis) and whose producers write into a
slot (kernels, BLAS, window kernels, other concatenates) are *placed*: they live at an element offset
inside the concatenate's slot, their producers write them there, and the concatenate copies only the
other pieces (inputs, constants, views, graph outputs, numpy results, a piece given twice, a piece
already placed in an earlier concatenate). A concatenate placed in another brings its pieces along;
the outermost one is the group's *root*, which owns the slot from the first member's production to
the last use of any member, and no kernel writes in place over a member (the others may be live).

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
    placed: dict = field(default_factory=dict)     # concatenate piece -> (concatenate output, element offset)
    root_of: dict = field(default_factory=dict)    # placed value -> the concatenate that owns its slot
    offset_of: dict = field(default_factory=dict)  # placed value -> element offset in its root (and slot)
    peak: int = 0
    peak_unfused: int = 0

    def _at(self, v) -> str:
        return f" @{self.offset_of[v]}" if v in self.placed else ""

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
            vals = ", ".join(f"{names.get(v, '?')} {v.type}{self._at(v)}" for v in by_slot.get(s, []))
            lines.append(f"  slot {s}: {size} bytes <- {vals}")
        for step, u, v in self.in_place:
            lines.append(f"  in place: step {step} writes {names.get(v)} over {names.get(u)}")
        pieces_of: dict = {}
        for piece, (concat, start) in self.placed.items():
            pieces_of.setdefault(concat, []).append((start, piece))
        for concat, pieces in pieces_of.items():
            where = ", ".join(f"{names.get(p, '?')}{self._at(p)}" for _, p in sorted(pieces, key=lambda sp: sp[0]))
            lines.append(f"  concatenate {names.get(concat, '?')} in slot {self.slot_of[concat]}: {len(pieces)} of "
                         f"{len(concat.producer.inputs)} pieces written in place by their producers "
                         f"(@N: from element N of the slot): {where}")
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


# gather and scatter_add: loop kernels writing into a given buffer (kernelflow/codegen/numba/indexing.py),
# for these data dtypes (indices are i32 or i64).
INDEX_OPS = frozenset({"gather", "scatter_add"})
_INDEX_DATA_DTYPES = frozenset({"f32", "f64", "i8", "i32", "i64", "u8", "u32"})


def indexing_kernel_op(node) -> bool:
    """Does the CPU backend run this node as an indexing loop kernel?"""
    return node.op in INDEX_OPS and all(v.dtype.name in _INDEX_DATA_DTYPES for v in (node.inputs[0], *node.outputs))


def writes_into_buffers(step) -> bool:
    """Kernels, BLAS calls, window and indexing kernels and concatenates (``np.concatenate(..., out=)``)
    write into buffers the runtime gives them; the other numpy lowerings return new arrays."""
    return step.kind == "kernel" or (step.kind == "library" and step.nodes[0].op == "dot_general") \
        or (step.kind in ("library", "numpy") and window_kernel_op(step.nodes[0])) \
        or (step.kind == "numpy" and indexing_kernel_op(step.nodes[0])) \
        or (step.kind == "numpy" and step.nodes[0].op == "concatenate")


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
    for s in range(n_steps - 1, -1, -1):
        step = plan.steps[s]
        if step.kind == "view":
            outs = step.outputs(users, graph_outputs)
            end = max((last_use.get(o, s) for o in outs), default=s)
            for u in step.inputs:
                last_use[u] = max(last_use.get(u, s), end)

    placed = _place_concat_pieces(plan, storage)
    root_of, offset_of = _roots_and_offsets(placed)
    # A group (a concatenate's slot with the pieces placed in it) holds its slot from the first
    # member's production to the last use of any member.
    group_start: dict = {}
    group_end: dict = {}
    for v, root in root_of.items():
        group_start[root] = min(group_start.get(root, n_steps), produced_at[v])
        group_end[root] = max(group_end.get(root, -1), last_use.get(v, produced_at[v]))

    slot_of: dict = {}
    slot_bytes: list[int] = []
    free: list[int] = []
    in_place = []
    dies_at: dict[int, list] = {}
    for v, s in last_use.items():
        if v not in root_of:
            dies_at.setdefault(s, []).append(v)
    for root, s in group_end.items():
        dies_at.setdefault(s, []).append(root)

    def allocate(need: int) -> int:
        fitting = [k for k in free if slot_bytes[k] >= need]
        if fitting:
            chosen = min(fitting, key=lambda k: slot_bytes[k])
        elif free:
            chosen = max(free, key=lambda k: slot_bytes[k])
            slot_bytes[chosen] = need
        else:
            slot_bytes.append(need)
            return len(slot_bytes) - 1
        free.remove(chosen)
        return chosen

    for s, step in enumerate(plan.steps):
        transferred = set()
        for v in step.outputs(users, graph_outputs):
            if storage[v] != "slot":
                continue
            root = root_of.get(v)
            if root is not None:  # its place is in its group's slot, never another's
                if root not in slot_of:
                    slot_of[root] = allocate(root.type.nbytes)
                slot_of[v] = slot_of[root]
                continue
            chosen = None
            if step.kind == "kernel" and can_write_in_place is not None:
                for u in step.inputs:
                    # (a group member's slot holds other live members: never written over)
                    if storage.get(u) == "slot" and last_use.get(u) == s and u not in transferred \
                            and u not in root_of and u.type == v.type and can_write_in_place(s, u, v):
                        chosen = slot_of[u]
                        transferred.add(u)
                        in_place.append((s, u, v))
                        break
            slot_of[v] = allocate(v.type.nbytes) if chosen is None else chosen
        for u in dies_at.get(s, []):
            if storage.get(u) == "slot" and u not in transferred:
                free.append(slot_of[u])

    mp = MemoryPlan(storage, slot_of, slot_bytes, in_place, last_use, placed=placed,
                    root_of={v: r for v, r in root_of.items() if v in placed},
                    offset_of={v: o for v, o in offset_of.items() if v in placed})
    extent = {v: (s, last_use.get(v, s)) for v, s in produced_at.items()
              if storage[v] in ("slot", "fresh") and v not in root_of}
    extent.update({root: (group_start[root], end) for root, end in group_end.items()})
    mp.peak = _peak_fused(extent, n_steps)
    mp.peak_unfused = peak_unfused(graph)
    return mp


def concat_piece_starts(node) -> list[int] | None:
    """Element offsets of a concatenate's pieces in its output, when each piece is a contiguous
    range of it (axis 0, or every dim before the axis has size 1); else None."""
    axis = node.attrs["axis"]
    out = node.outputs[0]
    if any(d != 1 for d in out.shape[:axis]):
        return None
    inner = 1
    for d in out.shape[axis + 1:]:
        inner *= d
    starts, at = [], 0
    for x in node.inputs:
        starts.append(at * inner)
        at += x.shape[axis]
    return starts


def _place_concat_pieces(plan: FusionPlan, storage) -> dict:
    """Piece -> (concatenate output, element offset in it) for the pieces that live inside the output
    of a concatenate in a pool slot: each is written there by its producer, and the concatenate copies
    only the others. A piece qualifies when its producer writes into a buffer the runtime gives it
    (storage 'slot': not an input, constant, view, graph output or numpy result), it is not placed
    in an earlier concatenate, and it is not a piece of this one twice. A concatenate placed in
    another brings its own placed pieces along (the group's root is the outermost one)."""
    placed: dict = {}
    for step in plan.steps:
        node = step.nodes[0]
        if step.kind != "numpy" or node.op != "concatenate" or storage.get(node.outputs[0]) != "slot":
            continue
        starts = concat_piece_starts(node)
        if starts is None:
            continue
        out = node.outputs[0]
        for x, start in zip(node.inputs, starts):
            if storage.get(x) == "slot" and x not in placed and node.inputs.count(x) == 1:
                placed[x] = (out, start)
    return placed


def _roots_and_offsets(placed: dict) -> tuple[dict, dict]:
    """For every value of a group (placed pieces and the concatenates holding them): the group's root
    (the outermost concatenate, which owns the slot) and the value's element offset in the root."""
    root_of: dict = {}
    offset_of: dict = {}

    def resolve(v):
        if v in root_of:
            return
        if v not in placed:
            root_of[v], offset_of[v] = v, 0
            return
        parent, start = placed[v]
        resolve(parent)
        root_of[v], offset_of[v] = root_of[parent], offset_of[parent] + start

    for v in placed:
        resolve(v)
    return root_of, offset_of


def _peak_fused(extent: dict, n_steps: int) -> int:
    """Peak of live bytes, each buffer counted from the first to the last step of its extent."""
    delta = [0] * (n_steps + 2)
    for v, (start, end) in extent.items():
        delta[start] += v.type.nbytes
        delta[end + 1] -= v.type.nbytes
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

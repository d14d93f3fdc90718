"""Fusion: partition the nodes of a Graph into kernels, recording why each decision was taken.

The result is a ``FusionPlan``: an ordered list of ``Step``s, each one of

* ``kernel``   a group of fusible nodes (elementwise ops, movement ops that are pure index maps, iota,
               and reductions) computed by ONE loop nest over an iteration *domain*;
* ``library``  a contraction (dot_general, conv2d and its transposes) given to a library (BLAS);
* ``view``     movement ops whose only readers are library/numpy steps: a numpy view, never a copy;
* ``numpy``    every other primitive (gather, scatter_add, pad, concatenate, window ops, random_bits,
               argmax, f16/bf16 values ...): one call of the primitive's numpy reference;
* ``constant`` a constant node, materialised once at compile time.

Kernels and index maps
----------------------
A kernel's domain is ``outer + inner`` (tuples of sizes): ``outer`` are the dims iterated once
("rows"), ``inner`` the reduced dims of its reductions (empty for a pointwise kernel). Every value a
kernel computes is evaluated at an ``IndexMap``: for each dim of the value, an ``Affine`` function of
the domain indices. Movement ops never materialise: ``broadcast_in_dim``, ``transpose``, ``slice``,
``rev`` and ``reshape`` just turn the map of their output into the map of their input
(``input_map``); a load from a buffer uses the flat (row-major) offset of its map. A reshape whose
map cannot be split into the input's dims (``from_flat``) is not fusable there.

Rules (``analyze_group`` checks them; the greedy merge in ``fuse`` tries producers into consumers,
consumers first, then siblings that read the same buffer):

1. no cycles between steps; 2. a group's outputs (values read outside it) all share the domain:
   same shape for pointwise kernels, the reduction operand's shape or the reduced shape for row
   kernels; 3. all reductions of a group reduce the same inner dims and are evaluated once per row;
4. no expensive op (transcendentals, pow, reductions) is evaluated more often than its value has
   elements (no recomputation through broadcasts or two different index maps); cheap ops may be;
5. per-element outputs are written with unit stride in the innermost domain dim (no strided writes);
6. siblings merge only while the kernel stays within ``MAX_SIBLING_NODES`` nodes: merging saves a
   re-read of the shared buffer, but an unrolled loop (an RNN's 64 steps all reading the labels)
   would become one kernel of thousands of nodes, whose numba compile time grows faster than linearly
   (the W7 LSTM step: one 2176-node kernel, minutes); kept apart, the per-step kernels are identical
   and compile once;
7. no kernel reads more than ``MAX_KERNEL_INPUTS`` buffers: a sum over the steps of an unrolled loop
   (the loss, a bias gradient: 64 per-step reductions added up) would otherwise become one kernel of
   64 inputs and hundreds of lines that numba takes seconds to compile; cut into kernels of at most
   16 inputs, the middle pieces are the same loop nest (offsets relative to each buffer, see
   codegen/kernel.py) and compile once. A piece boundary costs one partial result (a row or a
   scalar) written and read again; the W7 step time did not change measurably, its numba compile
   time dropped by a fifth.

Two groups merge only when the merged group satisfies every rule; ``fuse`` skips the analysis where
it cannot fail (``cannot_fail``).

Outputs of a kernel are a subset of the values the unfused graph materialises, so fusion never adds
a buffer; the runtime's memory plan checks the peak against the unfused graph and reports both.
"""
from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

from ..ir import primitive
from ..ir.graph import Graph, Node, Value

VIEW_OPS = frozenset({"broadcast_in_dim", "transpose", "reshape", "slice", "rev"})
REDUCE_KINDS = {"reduce_sum": "sum", "reduce_max": "max", "reduce_min": "min"}
INDEX_SOURCES = frozenset({"iota"})
LIBRARY_OPS = frozenset({"dot_general", "conv2d", "conv2d_input_grad", "conv2d_weight_grad"})
# Elementwise ops that cost about as much as a load: recomputing them is cheaper than a buffer.
CHEAP_OPS = frozenset({"neg", "abs", "sign", "floor", "add", "sub", "mul", "div", "maximum", "minimum",
                       "eq", "ne", "lt", "le", "gt", "ge", "select", "cast"})
# dtypes the CPU kernels compute in (f16/bf16 go through numpy).
MAX_SIBLING_NODES = 64  # see rule 6
MAX_KERNEL_INPUTS = 16  # see rule 7
TOO_MANY_NODES = f"the kernel would exceed {MAX_SIBLING_NODES} nodes (compile time)"
TOO_MANY_INPUTS = f"the kernel would read more than {MAX_KERNEL_INPUTS} buffers (compile time)"
KERNEL_DTYPES = frozenset({"f32", "f64", "i8", "i32", "i64", "u8", "u32", "bool"})


class NotFusable(Exception):
    """A group of nodes cannot become one kernel; the message says why."""


# -- index maps ---------------------------------------------------------------------------------
class Affine(NamedTuple):
    """``const + sum(coeffs[k] * d_k)`` over the domain indices ``d``. (A tuple: fusion builds and
    hashes hundreds of thousands of them for an unrolled RNN, and a tuple's are C-speed.)"""

    const: int
    coeffs: tuple[int, ...]

    def scale(self, a: int) -> "Affine":
        return Affine(self[0] * a, tuple([c * a for c in self[1]]))

    def plus(self, other: "Affine") -> "Affine":
        return Affine(self[0] + other[0], tuple([a + b for a, b in zip(self[1], other[1])]))

    def shift(self, c: int) -> "Affine":
        return Affine(self[0] + c, self[1])

    def uses(self, dims: Iterable[int]) -> bool:
        coeffs = self[1]
        return any(coeffs[k] != 0 for k in dims)


IndexMap = tuple  # tuple[Affine, ...]: one Affine per dim of the value


@dataclass(frozen=True)
class Flat:
    """A map known only as a row-major flat offset into the value (after a reshape that cannot be
    split into the dims of its input). Elementwise ops and further reshapes pass it through; a load
    uses it directly; ops that need per-dim indices (other movement ops, reductions, iota) split it
    again with ``from_flat`` or are not fusable there."""

    offset: Affine


# The map arithmetic below is pure and its arguments are tuples: fusion re-analyses a group each time it
# grows by a node, computing the same maps again and again (W7: ~35000 flat offsets, most of them repeats).
_memoized = functools.lru_cache(maxsize=1 << 15)


def flat_offset(m, shape, n: int) -> Affine:
    return m.offset if isinstance(m, Flat) else to_flat(m, shape, n)


def per_dim(m, shape, domain) -> IndexMap:
    return from_flat(m.offset, shape, domain) if isinstance(m, Flat) else m


def zero(n: int) -> Affine:
    return Affine(0, (0,) * n)


def unit(k: int, n: int) -> Affine:
    return Affine(0, tuple(1 if i == k else 0 for i in range(n)))


def row_strides(shape) -> list[int]:
    strides, s = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = s
        s *= shape[i]
    return strides


@_memoized
def normalize(m, shape, domain) -> IndexMap:
    """Canonical form: size-1 dims of the value read index 0; size-1 domain dims have coefficient 0."""
    n = len(domain)
    out = []
    for a, size in zip(m, shape):
        if size == 1:
            out.append(zero(n))
        else:
            out.append(Affine(a.const, tuple(c if domain[k] != 1 else 0 for k, c in enumerate(a.coeffs))))
    return tuple(out)


@_memoized
def to_flat(m: IndexMap, shape, n: int) -> Affine:
    """The row-major flat offset of the element the map addresses."""
    const, coeffs = 0, [0] * n
    for a, s in zip(m, row_strides(shape)):
        const += a[0] * s
        for k, c in enumerate(a[1]):
            if c:
                coeffs[k] += c * s
    return Affine(const, tuple(coeffs))


@_memoized
def from_flat(flat: Affine, shape, domain) -> IndexMap:
    """Split a flat offset into per-dim affine indices of ``shape``, or raise NotFusable."""
    n = len(domain)
    strides = row_strides(shape)
    rows = [[0] * n for _ in shape]
    for k, c in enumerate(flat.coeffs):
        if c == 0 or domain[k] <= 1:
            continue
        owner = [i for i, (s, size) in enumerate(zip(strides, shape))
                 if size > 1 and abs(c) % s == 0 and abs(c) < s * size]
        if not owner:
            raise NotFusable(f"a reshape to shape {list(shape)} mixes dims (stride {c}): not an index map")
        rows[owner[0]][k] = c // strides[owner[0]]
    if flat.const < 0:
        raise NotFusable("negative offset through a reshape")
    consts = [(flat.const // s) % size if size else 0 for s, size in zip(strides, shape)]
    for i, size in enumerate(shape):
        lo = consts[i] + sum(min(0, q * (domain[k] - 1)) for k, q in enumerate(rows[i]))
        hi = consts[i] + sum(max(0, q * (domain[k] - 1)) for k, q in enumerate(rows[i]))
        if size and (lo < 0 or hi >= size):
            raise NotFusable(f"a reshape to shape {list(shape)} carries across dims: not an index map")
    return tuple(Affine(c, tuple(r)) for c, r in zip(consts, rows))


def input_map(node: Node, out_map: IndexMap, domain) -> IndexMap:
    """The map of a movement op's input, given the map of its output."""
    op, attrs, x = node.op, node.attrs, node.inputs[0]
    n = len(domain)
    in_shape, out_shape = x.shape, node.outputs[0].shape
    if op == "reshape":
        flat = flat_offset(out_map, out_shape, n)
        try:
            return normalize(from_flat(flat, in_shape, domain), in_shape, domain)
        except NotFusable:
            return Flat(flat)
    out_map = per_dim(out_map, out_shape, domain)
    if op == "broadcast_in_dim":
        rows = [zero(n) if in_shape[i] == 1 else out_map[d] for i, d in enumerate(attrs["dims"])]
    elif op == "transpose":
        rows = [None] * len(in_shape)
        for j, p in enumerate(attrs["perm"]):
            rows[p] = out_map[j]
    elif op == "slice":
        rows = [a.scale(st).shift(s) for a, s, st in zip(out_map, attrs["start"], attrs["stride"])]
    elif op == "rev":
        axes = set(attrs["axes"])
        rows = [a.scale(-1).shift(in_shape[j] - 1) if j in axes else a for j, a in enumerate(out_map)]
    else:  # pragma: no cover - guarded by the callers
        raise NotFusable(f"{op} is not an index map")
    return normalize(tuple(rows), in_shape, domain)


def dot_free_dims(ndim: int, contract, batch) -> list[int]:
    """dot_general: the dims of an operand neither contracted nor batched, ascending."""
    taken = set(contract) | set(batch)
    return [d for d in range(ndim) if d not in taken]


# -- node classes -------------------------------------------------------------------------------
def _dtypes_ok(node: Node, kernel_dtypes=KERNEL_DTYPES) -> bool:
    return all(v.dtype.name in kernel_dtypes for v in (*node.inputs, *node.outputs))


def classify(node: Node, kernel_dtypes=KERNEL_DTYPES) -> tuple[str, str]:
    """(step kind, reason) for a node on its own: 'fusible', 'library', 'constant' or 'numpy'.
    ``kernel_dtypes``: the dtype names the backend's kernels compute in (the Triton backend adds
    f16/bf16)."""
    if node.op == "constant":
        return "constant", "constant: materialised once at compile time"
    if node.op in LIBRARY_OPS:
        if node.op == "dot_general":
            return "library", "dot_general: BLAS through numpy.matmul (batched, transposes as views)"
        return "library", (f"{node.op}: numpy reference (im2col as a sliding-window view, einsum on "
                           f"BLAS); returns a new array")
    prim = primitive.get(node.op)
    fusible = prim.is_elementwise or node.op in VIEW_OPS or node.op in REDUCE_KINDS \
        or node.op in INDEX_SOURCES
    if fusible and not _dtypes_ok(node, kernel_dtypes):
        return "numpy", f"{node.op}: {', '.join(sorted({v.dtype.name for v in node.outputs}))} runs through numpy"
    if fusible:
        return "fusible", ""
    return "numpy", f"{node.op}: numpy reference lowering (not fusable yet)"


# -- group analysis -----------------------------------------------------------------------------
@dataclass(slots=True)
class Record:
    """One value of a kernel evaluated at one index map (the expression DAG of a kernel).

    kind: 'load' (a buffer read at flat offset ``offset``), 'index' (iota: ``offset`` is the index
    along its dimension), 'op' (an elementwise node), 'reduce' (a reduction, ``args`` its body).
    """

    key: tuple
    kind: str
    value: Value
    node: Node | None
    args: tuple = ()
    offset: Affine | None = None
    inner: bool = False      # depends on the inner (reduced) domain dims
    evaluations: int = 0     # how often the loop nest evaluates it


@dataclass
class GroupAnalysis:
    nodes: list[Node]
    outer: tuple[int, ...]
    inner: tuple[int, ...]
    records: dict          # key -> Record, in dependency order
    stores: list           # (value, flat offset Affine, inner?) per output
    outputs: list[Value]
    inputs: list[Value]    # buffers the kernel reads

    @property
    def kind(self) -> str:
        return "reduction" if any(r.kind == "reduce" for r in self.records.values()) else "pointwise"


def group_outputs(nodes: list[Node], users: dict, graph_outputs: set) -> list[Value]:
    members = set(nodes)
    outs = []
    for n in nodes:
        for v in n.outputs:
            if v in graph_outputs or any(u not in members for u in users.get(v, ())):
                outs.append(v)
    return outs


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _split_or_flat(flat: Affine, shape, domain):
    try:
        return normalize(from_flat(flat, shape, domain), shape, domain)
    except NotFusable:
        return Flat(flat)


def analyze_group(nodes: list[Node], users: dict, graph_outputs: set, names=None,
                  input_maps: dict | None = None) -> GroupAnalysis:
    """Check that ``nodes`` form one kernel and build its expression DAG (raises NotFusable).
    ``input_maps``: a dict that remembers ``input_map``'s answers across the analyses of one graph."""
    if input_maps is None:
        input_maps = {}
    name = names or (lambda v: v.producer.op if v.producer else "input")
    members = set(nodes)
    outputs = group_outputs(nodes, users, graph_outputs)
    if not outputs:
        raise NotFusable("the group has no outputs")
    reductions = [n for n in nodes if n.op in REDUCE_KINDS and n.attrs["axes"]]
    roots: list[tuple[Value, IndexMap]] = []
    if reductions:
        first = reductions[0]
        shape, axes = first.inputs[0].shape, tuple(first.attrs["axes"])
        kept = [j for j in range(len(shape)) if j not in axes]
        outer = tuple(shape[j] for j in kept)
        inner = tuple(shape[j] for j in axes)
        domain = outer + inner
        n = len(domain)
        position = {j: i for i, j in enumerate(kept)}
        position.update({j: len(kept) + i for i, j in enumerate(axes)})
        full_map = normalize(tuple(unit(position[j], n) for j in range(len(shape))), shape, domain)
        row_map = normalize(tuple(unit(k, n) for k in range(len(kept))), outer, domain)
        full_flat = to_flat(full_map, shape, n)
        row_flat = to_flat(row_map, outer, n)
        for v in outputs:
            # Any bijection from the domain onto the output is a valid root map; the natural one is
            # the operand's (or the rows') row-major order, split into the output's dims if possible.
            if v.shape == shape:
                roots.append((v, full_map))
            elif v.shape == outer:
                roots.append((v, row_map))
            elif v.type.size == _size(shape):
                roots.append((v, _split_or_flat(full_flat, v.shape, domain)))
            elif v.type.size == _size(outer):
                roots.append((v, _split_or_flat(row_flat, v.shape, domain)))
            else:
                raise NotFusable(f"output {name(v)} {v.type} fits neither the rows {list(outer)} nor the "
                                 f"reduced operand {list(shape)} of {name(first.outputs[0])}")
    else:
        shape = outputs[0].shape
        outer, inner, domain = tuple(shape), (), tuple(shape)
        n = len(domain)
        ident = normalize(tuple(unit(k, n) for k in range(n)), shape, domain)
        for v in outputs:
            if v.shape == shape:
                roots.append((v, ident))
            elif v.type.size == _size(shape):  # e.g. x and reshape(x): same elements, same order
                roots.append((v, _split_or_flat(to_flat(ident, shape, n), v.shape, domain)))
            else:
                raise NotFusable(f"outputs have different sizes: {name(outputs[0])} {outputs[0].type}, "
                                 f"{name(v)} {v.type}")

    n_outer = len(outer)

    def moves_inner(a: Affine) -> bool:  # as ``a.uses(range(n_outer, n))``: moves with the reduced dims?
        return any(a[1][n_outer:])
    domain_size = 1
    for d in domain:
        domain_size *= d
    outer_size = 1
    for d in outer:
        outer_size *= d
    records: dict = {}
    inputs: list[Value] = []

    def visit(v: Value, m: IndexMap):
        key = (v, m)
        if key in records:
            return key
        node = v.producer
        if node is None or node not in members:
            offset = flat_offset(m, v.shape, n)
            if v not in inputs:
                inputs.append(v)
            records[key] = Record(key, "load", v, node, offset=offset, inner=moves_inner(offset))
            return key
        if node.op in VIEW_OPS:
            at = input_maps.get((node, m, domain))
            if at is None:
                at = input_maps[(node, m, domain)] = input_map(node, m, domain)
            inner_key = visit(node.inputs[0], at)
            records.setdefault(key, records[inner_key])  # an alias: same record
            return inner_key
        if node.op in INDEX_SOURCES:
            a = per_dim(m, v.shape, domain)[node.attrs["dimension"]]
            records[key] = Record(key, "index", v, node, offset=a, inner=moves_inner(a))
            return key
        if node.op in REDUCE_KINDS:
            m = per_dim(m, v.shape, domain)
            axes = tuple(node.attrs["axes"])
            if not axes:
                arg = visit(node.inputs[0], m)
                records[key] = Record(key, "op", v, node, args=(arg,), inner=records[arg].inner)
                return key
            x_shape = node.inputs[0].shape
            if any(moves_inner(a) for a in m):
                raise NotFusable(f"{node.op} {name(v)} is read per element of the row it reduces")
            if tuple(x_shape[a] for a in axes) != inner:
                raise NotFusable(f"{node.op} {name(v)} reduces dims {[x_shape[a] for a in axes]} but the "
                                 f"kernel's rows reduce {list(inner)}")
            body_rows, kept_i = [], 0
            for j in range(len(x_shape)):
                if j in axes:
                    body_rows.append(unit(n_outer + axes.index(j), n))
                else:
                    body_rows.append(m[kept_i])
                    kept_i += 1
            arg = visit(node.inputs[0], normalize(tuple(body_rows), x_shape, domain))
            records[key] = Record(key, "reduce", v, node, args=(arg,), inner=False)
            return key
        # elementwise
        args = tuple(visit(x, m) for x in node.inputs)
        records[key] = Record(key, "op", v, node, args=args,
                              inner=any(records[a].inner for a in args))
        return key

    stores = []
    try:
        for v, m in roots:
            key = visit(v, m)
            offset = flat_offset(m, v.shape, n)
            is_inner = moves_inner(offset)
            if is_inner and domain[-1] > 1 and abs(offset.coeffs[-1]) != 1:
                raise NotFusable(f"output {name(v)} would be written with stride {offset.coeffs[-1]} "
                                 f"(its reduction runs over a non-innermost dim)")
            stores.append((v, offset, is_inner, key))
    finally:
        # visit reaches itself through its closure: a reference cycle that would keep this analysis'
        # records alive until the garbage collector runs (fusion analyses thousands of groups)
        visit = None

    # Rule 4: expensive work is evaluated at most once per element of its value.
    per_node: dict[Node, list[Record]] = {}
    seen = set()
    for r in records.values():
        if id(r) in seen or r.node is None:
            continue
        seen.add(id(r))
        r.evaluations = domain_size if r.inner else outer_size
        if r.kind in ("op", "reduce"):
            per_node.setdefault(r.node, []).append(r)
    for node, recs in per_node.items():
        expensive = node.op in REDUCE_KINDS or node.op not in CHEAP_OPS
        total = sum(r.evaluations for r in recs)
        size = max(1, node.outputs[0].type.size)
        if expensive and (len(recs) > 1 or total > size):
            raise NotFusable(f"{node.op} {name(node.outputs[0])} would be computed {total} times for "
                             f"{size} elements")
    return GroupAnalysis(nodes=list(nodes), outer=outer, inner=inner, records=records,
                         stores=stores, outputs=outputs, inputs=inputs)


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Step:
    kind: str                    # 'kernel', 'library', 'view', 'numpy', 'constant'
    nodes: list[Node]
    analysis: GroupAnalysis | None = None
    reason: str = ""

    @property
    def inputs(self) -> list[Value]:
        inside = {v for n in self.nodes for v in n.outputs}
        seen = []
        for n in self.nodes:
            for v in n.inputs:
                if v not in inside and v not in seen:
                    seen.append(v)
        return seen

    def outputs(self, users, graph_outputs) -> list[Value]:
        return group_outputs(self.nodes, users, graph_outputs)


@dataclass
class FusionPlan:
    graph: Graph
    steps: list[Step]
    # every merge decision with its reason (``decisions``); ``fuse`` passes a function that writes them
    # on first use: W7 tries ~25,000 pairs, and only ``explain`` reads their text
    decision_text: list[str] | Callable[[], list[str]] = field(default_factory=list)
    names: dict = field(default_factory=dict)

    @property
    def decisions(self) -> list[str]:
        if callable(self.decision_text):
            self.decision_text = self.decision_text()
        return self.decision_text

    def step_of(self) -> dict[Node, int]:
        return {n: i for i, s in enumerate(self.steps) for n in s.nodes}

    def kernels(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "kernel"]


def value_names(graph: Graph) -> dict[Value, str]:
    """``%N`` in definition order, as the printer numbers them."""
    return {v: f"%{i}" for i, v in enumerate(graph.values())}


def _is_literal(v: Value) -> bool:
    """A one-element constant: kernels inline it (codegen/kernel.py), it is no buffer they read."""
    return v.producer is not None and v.producer.op == "constant" and v.type.size == 1


class _Groups:
    """Union of node groups with a cycle check on the step graph.

    Each group has a *level*: larger than the level of every group it reads from (the step graph is
    a DAG at all times, merges never create cycles). A path between two groups climbs strictly in
    level, so the cycle search between ``a`` and ``b`` only visits groups whose level lies between
    theirs (without this bound each check walks everything downstream: an unrolled RNN's fusion
    took seconds). The edges of the step graph are kept per group (``succ``/``pred``: the other groups
    it writes to / reads from) and updated on each merge, so the search never walks a group's nodes."""

    def __init__(self, graph: Graph, users):
        self.graph = graph
        self.users = users
        self.pos = {n: i for i, n in enumerate(graph.nodes)}
        self.group = {n: i for i, n in enumerate(graph.nodes)}
        self.members = {i: [n] for i, n in enumerate(graph.nodes)}
        self.level: dict[int, int] = {}
        self.succ: dict[int, set[int]] = {i: set() for i in range(len(graph.nodes))}
        self.pred: dict[int, set[int]] = {i: set() for i in range(len(graph.nodes))}
        # per group: the buffers it reads (values from outside it; one-element constants are literals)
        # and the values its nodes define
        self.reads = {i: {v for v in n.inputs if not _is_literal(v)} for i, n in enumerate(graph.nodes)}
        self.defines = {i: set(n.outputs) for i, n in enumerate(graph.nodes)}
        # per group: a stamp no other group content ever had (a merged group gets a new one), so a
        # pair of stamps names a pair of exact node sets: what ``fuse`` remembers failed merges by
        self.stamp = {i: i for i in range(len(graph.nodes))}
        self._next_stamp = len(graph.nodes)
        for i, n in enumerate(graph.nodes):  # topological order: producers first
            for v in n.inputs:
                if v.producer is not None:
                    p = self.group[v.producer]
                    self.succ[p].add(i)
                    self.pred[i].add(p)
            self.level[i] = 1 + max((self.level[p] for p in self.pred[i]), default=0)

    def successors(self, g: int) -> set[int]:
        return self.succ[g]

    def merged_reads(self, a: int, b: int) -> int:
        """How many buffers the union of groups a and b would read."""
        return len((self.reads[a] - self.defines[b]) | (self.reads[b] - self.defines[a]))

    def creates_cycle(self, a: int, b: int) -> bool:
        """Would merging groups a and b create a cycle, i.e. a path a -> other group(s) -> b or back?

        The search runs over groups, not nodes: a path may enter a group at one node and leave it from
        another that does not depend on the first (siblings merged into one kernel). It grows the groups
        reachable from the lower one and the groups reaching the higher one, the smaller side first, and
        stops when they meet: in an unrolled loop the lower group alone reaches thousands of groups
        before the path to the higher one (a one-sided search took most of fusion's time)."""
        level = self.level
        low, high = (a, b) if level[a] <= level[b] else (b, a)
        bottom, top = level[low], level[high]
        if bottom == top:
            return False  # no path either way between groups of one level
        succ, pred = self.succ, self.pred
        # a path's middle groups have levels strictly between the two: that bounds both searches
        forward = {s for s in succ[low] if level[s] < top}
        if not forward:
            return False
        backward = {p for p in pred[high] if level[p] > bottom}
        if not backward:
            return False
        if not forward.isdisjoint(backward):
            return True
        forward_edge, backward_edge = list(forward), list(backward)
        while forward_edge and backward_edge:
            grown = []
            if len(forward_edge) <= len(backward_edge):
                for g in forward_edge:
                    for s in succ[g]:
                        if s not in forward and level[s] < top:
                            if s in backward:
                                return True
                            forward.add(s)
                            grown.append(s)
                forward_edge = grown
            else:
                for g in backward_edge:
                    for p in pred[g]:
                        if p not in backward and level[p] > bottom:
                            if p in forward:
                                return True
                            backward.add(p)
                            grown.append(p)
                backward_edge = grown
        return False

    def merge(self, a: int, b: int) -> int:
        keep, gone = (a, b) if a < b else (b, a)
        reads_gone, defines_gone = self.reads.pop(gone), self.defines.pop(gone)
        self.reads[keep] = (self.reads[keep] - defines_gone) | (reads_gone - self.defines[keep])
        self.defines[keep] |= defines_gone
        for n in self.members[gone]:
            self.group[n] = keep
        self.members[keep] = list(heapq.merge(self.members[keep], self.members.pop(gone), key=self.pos.get))
        self.level[keep] = max(self.level[keep], self.level.pop(gone))
        del self.stamp[gone]
        self.stamp[keep] = self._next_stamp
        self._next_stamp += 1
        succ_gone, pred_gone = self.succ.pop(gone), self.pred.pop(gone)
        for p in pred_gone:
            self.succ[p].discard(gone)
            if p != keep:
                self.succ[p].add(keep)
        for s in succ_gone:
            self.pred[s].discard(gone)
            if s != keep:
                self.pred[s].add(keep)
        self.succ[keep] |= succ_gone
        self.succ[keep] -= {keep, gone}
        self.pred[keep] |= pred_gone
        self.pred[keep] -= {keep, gone}
        stack = [keep]  # restore "a group's level exceeds its producers'" downstream
        while stack:
            g = stack.pop()
            for s in self.succ[g]:
                if self.level[s] <= self.level[g]:
                    self.level[s] = self.level[g] + 1
                    stack.append(s)
        return keep


def copy_free_views(graph: Graph, kernel_dtypes=KERNEL_DTYPES) -> Graph:
    """A copy of ``graph`` where each reader gets its own copy of every *free* node: a movement op or
    iota whose operands are not computed by fusible nodes (a broadcast of a constant, a transposed
    input). Such nodes cost nothing inside a kernel, so sharing one would only force a buffer
    (e.g. the zeros of ``relu`` shared by two layers)."""
    values: dict[Value, Value] = {v: v for v in graph.inputs}
    free: dict[Value, Node] = {}
    nodes: list[Node] = []

    def materialize(v: Value, local: dict) -> Value:
        if v not in free:
            return values[v]
        if v not in local:
            f = free[v]
            ins = [materialize(x, local) for x in f.inputs]
            copy = Node.owning(f.op, tuple(ins), dict(f.attrs), tuple([o.type for o in f.outputs]), f.loc)
            nodes.append(copy)
            local[v] = copy.outputs[0]
        return local[v]

    for n in graph.nodes:
        is_free = (n.op in VIEW_OPS or n.op in INDEX_SOURCES) and len(n.outputs) == 1 and all(
            x.producer is None or x in free or classify(x.producer, kernel_dtypes)[0] != "fusible" for x in n.inputs)
        if is_free:
            free[n.outputs[0]] = n
            continue
        local: dict = {}
        ins = [materialize(x, local) for x in n.inputs]
        copy = Node.owning(n.op, tuple(ins), dict(n.attrs), tuple([o.type for o in n.outputs]), n.loc)
        nodes.append(copy)
        for old, new in zip(n.outputs, copy.outputs):
            values[old] = new
    outputs = []
    for v in graph.outputs:
        outputs.append(materialize(v, {}))
    return Graph(graph.name, list(graph.inputs), nodes, outputs)


def fuse(graph: Graph, kernel_dtypes=KERNEL_DTYPES) -> FusionPlan:
    """Partition ``graph`` into steps (see the module docstring). The plan's graph is ``graph`` with
    free movement nodes copied per reader (``copy_free_views``). ``kernel_dtypes``: the dtype names
    kernels may compute in (default: the CPU's; the Triton backend passes its own, with f16/bf16)."""
    graph = copy_free_views(graph, kernel_dtypes)
    live = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):  # dead nodes would make kernels without outputs
        if any(v in live for v in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    graph = Graph(graph.name, list(graph.inputs), kept[::-1], list(graph.outputs))
    users = graph.users()
    graph_outputs = set(graph.outputs)
    names = value_names(graph)
    nm = names.get
    kinds = {n: classify(n, kernel_dtypes) for n in graph.nodes}
    fusible = {n for n, (k, _) in kinds.items() if k == "fusible"}
    groups = _Groups(graph, users)

    def describe(n: Node) -> str:
        return f"{n.op} {nm(n.outputs[0])}"

    # (producer/sibling node, consumer node) -> (fused?, why, detail), the last attempt winning: ``why``
    # names the pair (("into", producer, consumer) or ("siblings", a, b, the value both read)), ``detail``
    # says why it was not fused; the text is written only when the plan's decisions are read
    outcome: dict = {}

    # groups whose current nodes passed analyze_group -> whether no index map in them is Flat
    analyzed: dict[int, bool] = {}
    # the analysis of each group as it stands after a merge that ran one, by the group's stamp: the kernel
    # steps at the end reuse it when no merge changed the group since
    analysis_of: dict[int, GroupAnalysis] = {}
    # the input maps of movement nodes, shared by the analyses (a group is analysed again as it grows)
    input_maps: dict = {}

    def cannot_fail(a: int, b: int) -> bool | None:
        """Whether merging groups a and b is fusible without analysing the merged group (None: unknown;
        otherwise whether the merged group is free of Flat maps). Known when ONE node joins a group that
        passed the analysis, its operands come from outside the group and its value is read only inside
        it: the group's outputs, hence its domain and root maps, stay as they are, and so do the maps of
        the group's own nodes; only the loads of the node's value change, into

        * a cheap elementwise op on loads of its operands at the same maps (elementwise operands have
          the value's shape): no rule can fail;
        * a load of the operand of a movement op at the op's input map: ``input_map`` cannot fail for
          a reshape (a map it cannot split stays Flat), nor for the others on a group free of Flat maps
          (there is nothing to split). An op evaluated per row instead of per element is evaluated
          less often: rule 4 cannot start to fail.

        Skipping the analysis there saves most of fusion's time on long chains of such nodes (the
        backward pass of an unrolled RNN)."""
        for single, other in ((a, b), (b, a)):
            members = groups.members[single]
            if len(members) != 1 or other not in analyzed:
                continue
            n = members[0]
            if len(n.outputs) != 1:
                continue
            flat_free = analyzed[other]
            if n.op == "reshape":
                flat_free = False  # it may leave a Flat map behind
            elif n.op in VIEW_OPS:
                if not flat_free:
                    continue
            elif n.op not in CHEAP_OPS or not primitive.get(n.op).is_elementwise:
                continue
            v = n.outputs[0]
            readers = users.get(v, ())
            if v in graph_outputs or not readers or any(groups.group[u] != other for u in readers):
                continue
            if any(x.producer is not None and groups.group[x.producer] == other for x in n.inputs):
                continue
            return flat_free
        return None

    # Failed merges, by the stamps of the two groups (see _Groups.stamp), so that the repeated rounds of
    # step 1 do not search or analyse them again while neither group changes. A cycle between a and b
    # stays while neither changes (merging other groups only shortens or joins the paths between them;
    # only absorbing a path's middle into a or b removes it); an analysis' verdict depends on the two
    # node sets only. A merge that did NOT create a cycle is checked again: merging other groups can
    # close a path between a and b.
    cycle_between: set = set()
    not_fusable: dict = {}

    def try_merge(a: int, b: int, pair, why: tuple) -> bool:
        if groups.merged_reads(a, b) > MAX_KERNEL_INPUTS:
            outcome[pair] = (False, why, TOO_MANY_INPUTS)
            return False
        sa, sb = groups.stamp[a], groups.stamp[b]
        stamps = (sa, sb) if sa < sb else (sb, sa)
        if stamps in cycle_between or groups.creates_cycle(a, b):
            cycle_between.add(stamps)
            outcome[pair] = (False, why, "it would create a cycle between kernels")
            return False
        if stamps in not_fusable:
            outcome[pair] = (False, why, not_fusable[stamps])
            return False
        flat_free = cannot_fail(a, b)
        if flat_free is None:
            nodes = sorted(groups.members[a] + groups.members[b], key=groups.pos.get)
            try:
                analysis = analyze_group(nodes, users, graph_outputs, nm, input_maps)
            except NotFusable as e:
                not_fusable[stamps] = str(e)  # the text: the exception would keep its frames alive
                outcome[pair] = (False, why, not_fusable[stamps])
                return False
            flat_free = not any(isinstance(m, Flat) for _, m in analysis.records)
        else:
            analysis = None
        analyzed.pop(a, None)
        analyzed.pop(b, None)
        merged = groups.merge(a, b)
        analyzed[merged] = flat_free
        if analysis is not None:
            analysis_of[groups.stamp[merged]] = analysis
        outcome[pair] = (True, why, None)
        return True

    # 1. vertical: producers into consumers, consumers first; repeated while it makes progress
    #    (a merge can remove the cycle that blocked an earlier one).
    changed = True
    while changed:
        changed = False
        for n in reversed(graph.nodes):
            if n not in fusible:
                continue
            for v in n.inputs:
                p = v.producer
                if p is None or p not in fusible or groups.group[p] == groups.group[n]:
                    continue
                changed |= try_merge(groups.group[p], groups.group[n], (p, n), ("into", p, n))
    # 2. horizontal: sibling groups that read the same buffer become one multi-output kernel.
    for v in list(graph.inputs) + [o for n in graph.nodes for o in n.outputs]:
        if v.type.size <= 1:
            continue  # a scalar is read for free (often a literal): no pass over memory to save
        readers = []
        for u in users.get(v, ()):
            if u in fusible and groups.group.get(v.producer) != groups.group[u] and \
                    all(groups.group[u] != groups.group[r] for r in readers):
                readers.append(u)
        for i, a in enumerate(readers):
            for b in readers[i + 1:]:
                ga, gb = groups.group[a], groups.group[b]
                if ga == gb:
                    continue
                why = ("siblings", a, b, v)
                if len(groups.members[ga]) + len(groups.members[gb]) > MAX_SIBLING_NODES:
                    outcome[(a, b)] = (False, why, TOO_MANY_NODES)
                    continue
                try_merge(ga, gb, (a, b), why)
    final_group = groups.group  # no merge after this point: the plan's decisions are written from it

    def decisions() -> list[str]:
        def pair_text(why) -> str:
            if why[0] == "into":
                return f"{describe(why[1])} into its consumer {describe(why[2])}"
            return f"siblings {describe(why[1])} and {describe(why[2])} both read {nm(why[3])}"
        text = []
        for (a, b), (fused, why, detail) in outcome.items():
            if fused:
                text.append(f"fused: {pair_text(why)}")
            elif final_group[a] != final_group[b]:
                text.append(f"not fused: {pair_text(why)}: {detail}")
        return text

    # 3. steps in a topological order of the step graph (ties: earliest node first).
    step_nodes: dict[int, list[Node]] = {}
    for n in graph.nodes:
        key = groups.group[n] if n in fusible else ("single", groups.pos[n])
        step_nodes.setdefault(key, []).append(n)
    keys = list(step_nodes)
    key_of = {n: k for k, ns in step_nodes.items() for n in ns}
    deps = {k: set() for k in keys}
    for k, ns in step_nodes.items():
        for n in ns:
            for v in n.inputs:
                if v.producer is not None and key_of[v.producer] != k:
                    deps[k].add(key_of[v.producer])
    first_pos = {k: min(groups.pos[n] for n in ns) for k, ns in step_nodes.items()}
    done, order = set(), []
    ready = sorted((k for k in keys if not deps[k]), key=first_pos.get)
    heap = [(first_pos[k], i, k) for i, k in enumerate(ready)]
    heapq.heapify(heap)
    counter = len(heap)
    dependents: dict = {k: [] for k in keys}
    for k, ds in deps.items():
        for d in ds:
            dependents[d].append(k)
    remaining = {k: len(deps[k]) for k in keys}
    while heap:
        _, _, k = heapq.heappop(heap)
        order.append(k)
        done.add(k)
        for d in dependents[k]:
            remaining[d] -= 1
            if remaining[d] == 0:
                counter += 1
                heapq.heappush(heap, (first_pos[d], counter, d))
    assert len(order) == len(keys), "fusion produced a cyclic step graph"

    steps = []
    for k in order:
        ns = step_nodes[k]
        if ns[0] not in fusible:
            kind, reason = kinds[ns[0]]
            steps.append(Step(kind, ns, reason=reason))
            continue
        outs = group_outputs(ns, users, graph_outputs)
        if all(n.op in VIEW_OPS for n in ns) and not any(v in graph_outputs for v in outs) and all(
                u not in fusible for v in outs for u in users.get(v, ())):
            steps.append(Step("view", ns, reason="movement read only by library/numpy steps: a numpy view"))
            continue
        analysis = analysis_of.get(groups.stamp[k]) or analyze_group(ns, users, graph_outputs, nm, input_maps)
        ops = ", ".join(f"{n.op} {nm(n.outputs[0])}" for n in ns)
        steps.append(Step("kernel", ns, analysis,
                          reason=f"{analysis.kind} kernel over domain {list(analysis.outer)}"
                                 f"{' x ' + str(list(analysis.inner)) if analysis.inner else ''}: {ops}"))
    return FusionPlan(graph, steps, decisions, names)


def explain(plan: FusionPlan) -> str:
    """Human-readable fusion report: the steps, then every merge decision with its reason."""
    lines = [f"fusion of graph {plan.graph.name}: {len(plan.graph.nodes)} nodes -> {len(plan.steps)} steps "
             f"({len(plan.kernels())} kernels)"]
    for i, s in enumerate(plan.steps):
        lines.append(f"  step {i} [{s.kind}] {s.reason}")
    if plan.decisions:
        lines.append("decisions:")
        lines.extend(f"  {d}" for d in plan.decisions)
    return "\n".join(lines)

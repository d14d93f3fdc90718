"""The backend-neutral kernel description that fusion's kernel steps are lowered to.

A ``Kernel`` is one loop nest:

    for each row index o in the OUTER domain (the dims iterated once; parallel):
        row-level values (loads that do not depend on the inner dims, ops on them, finished reductions)
        for each PHASE p = 0 .. phases-1:
            for each index j in the INNER domain (the reduced dims; may be empty: one iteration):
                element-level values, folded into the reductions of phase p,
                stores of element-level outputs whose reductions finished before p
        stores of row-level outputs

Pointwise kernels have no inner dims and one phase (everything is row-level). Row kernels (softmax,
layer_norm, cross-entropy, their gradients, plain reductions) have one phase per chain of dependent
reductions: softmax has three (max; sum of exp; the normalised store).

* ``params``: the buffers, all flat (1-D, row-major, contiguous), inputs first, then outputs.
* ``exprs``: the scalar expression DAG, in dependency order. ``Expr.kind`` is
  ``load`` (``params[buffer][offset]``), ``literal`` (``value``), ``index`` (the integer ``offset``,
  then converted to ``dtype``: iota), ``op`` (a primitive applied to ``args``; the backend prints it
  from the primitive's codegen template) or ``reduce`` (``reduce`` in sum/max/min of ``args[0]``
  over the inner domain, computed in phase ``phase``; the result is a row-level value).
* every ``offset`` is an ``Affine``: ``const + sum(coeffs[k] * d_k)`` with ``d = outer + inner`` indices,
  in elements of the buffer.
* ``stores``: (buffer, expr, offset); ``inner`` stores happen in the loop of ``phase``.
* ``stash``: element-level exprs that are expensive and needed by more than one phase: computed once
  in their first phase and kept in a per-row scratch array of ``inner_size`` elements (so softmax
  computes each exp once).
* ``stash_out``: stashed exprs whose scratch is an output row instead (expr id -> store index): the
  output's inner store of a later phase covers exactly the row, so the row of the output holds the
  values until that store overwrites them (softmax keeps its exps in its result: no scratch, no
  extra traffic). The printer writes such a stash at the END of its loop body, after every load.
* ``nodes``: the IR nodes the kernel came from, for comments; ``name``: a readable unique name.

Dims of size 1 are dropped, and adjacent dims are merged when every offset allows it, so a pointwise
chain over same-shaped arrays becomes one flat loop whatever its rank.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..ir.types import DType
from ..passes.fusion import CHEAP_OPS, REDUCE_KINDS, Affine, GroupAnalysis


@dataclass
class Param:
    name: str          # b0, b1, ...
    value: Any         # the IR Value
    label: str         # %3
    dtype: DType
    size: int
    role: str          # 'in' or 'out'


@dataclass
class Expr:
    id: int
    kind: str                     # load, literal, index, op, reduce
    dtype: DType
    inner: bool                   # depends on the inner (reduced) indices
    args: tuple = ()
    op: str | None = None
    attrs: dict = field(default_factory=dict)
    buffer: int | None = None
    offset: Affine | None = None
    value: Any = None
    reduce: str | None = None     # sum, max, min
    phase: int | None = None
    label: str = ""               # IR value it computes (%5) and op, for comments


@dataclass
class Store:
    buffer: int
    expr: int
    offset: Affine
    inner: bool
    phase: int | None
    label: str = ""


@dataclass
class Kernel:
    name: str
    kind: str                     # pointwise or reduction
    outer: tuple[int, ...]
    inner: tuple[int, ...]
    params: list[Param]
    exprs: list[Expr]
    stores: list[Store]
    phases: int
    stash: dict[int, int]         # expr id -> the phase that computes and stashes it
    nodes: list[str]
    stash_out: dict[int, int] = field(default_factory=dict)  # expr id -> index of the store it borrows
    _phases: dict | None = field(default=None, repr=False, compare=False)  # expr_phases, computed once

    @property
    def outer_size(self) -> int:
        return int(np.prod(self.outer, dtype=np.int64)) if self.outer else 1

    @property
    def inner_size(self) -> int:
        return int(np.prod(self.inner, dtype=np.int64)) if self.inner else 1

    @property
    def work(self) -> int:
        """Element visits of the loop nest (a cost estimate)."""
        return self.outer_size * self.inner_size * max(1, self.phases)

    def inputs(self) -> list[Param]:
        return [p for p in self.params if p.role == "in"]

    def outputs(self) -> list[Param]:
        return [p for p in self.params if p.role == "out"]


def build_kernel(name: str, analysis: GroupAnalysis, labels: dict) -> Kernel:
    """Lower a fusion group to a Kernel description."""
    label = lambda v: labels.get(v, "?")  # noqa: E731
    params: list[Param] = []
    param_of = {}
    for v in analysis.inputs:
        if _literal_of(v) is None:
            param_of[v] = len(params)
            params.append(Param(f"b{len(params)}", v, label(v), v.dtype, v.type.size, "in"))
    for v in analysis.outputs:
        param_of[("out", v)] = len(params)
        params.append(Param(f"b{len(params)}", v, label(v), v.dtype, v.type.size, "out"))

    exprs: list[Expr] = []
    expr_of: dict[int, int] = {}  # id(Record) -> expr id
    for key, rec in analysis.records.items():
        if id(rec) in expr_of or rec.key != key:
            continue
        v = rec.value
        lbl = f"{label(v)} {rec.node.op}" if rec.node is not None and rec.kind != "load" else label(v)
        if rec.kind == "load":
            lit = _literal_of(v)
            if lit is not None:
                e = Expr(len(exprs), "literal", v.dtype, False, value=lit, label=lbl)
            else:
                e = Expr(len(exprs), "load", v.dtype, rec.inner, buffer=param_of[v], offset=rec.offset,
                         label=lbl)
        elif rec.kind == "index":
            e = Expr(len(exprs), "index", v.dtype, rec.inner, offset=rec.offset, label=lbl)
        elif rec.kind == "reduce":
            e = Expr(len(exprs), "reduce", v.dtype, False, args=(expr_of[id(analysis.records[rec.args[0]])],),
                     op=rec.node.op, reduce=REDUCE_KINDS[rec.node.op], label=lbl)
        else:
            args = tuple(expr_of[id(analysis.records[a])] for a in rec.args)
            if rec.node.op in REDUCE_KINDS:  # a reduction over no axes is the identity
                e = replace(exprs[args[0]], id=len(exprs), label=lbl)
            else:
                e = Expr(len(exprs), "op", v.dtype, rec.inner, args=args, op=rec.node.op,
                         attrs=dict(rec.node.attrs), label=lbl)
        expr_of[id(rec)] = e.id
        exprs.append(e)
    stores = [Store(param_of[("out", v)], expr_of[id(analysis.records[key])], offset, inner, None, label(v))
              for v, offset, inner, key in analysis.stores]

    outer, inner = _collapse(analysis.outer, analysis.inner, exprs, stores)
    phases = _assign_phases(exprs, stores, bool(inner) or any(e.kind == "reduce" for e in exprs))
    stash = _choose_stash(exprs, stores, phases)
    nodes = [f"{label(n.outputs[0])} = {n.op}({', '.join(label(x) for x in n.inputs)})"
             for n in analysis.nodes]
    return Kernel(name, analysis.kind, outer, inner, params, exprs, stores, phases, stash, nodes,
                  _choose_stash_out(exprs, stores, stash, phases, len(outer), inner))


def _literal_of(v):
    """A one-element constant is inlined as a literal."""
    node = v.producer
    if node is not None and node.op == "constant" and v.type.size == 1:
        return np.asarray(node.attrs["value"]).reshape(()).item()
    return None


def _collapse(outer, inner, exprs, stores):
    """Drop size-1 dims and merge adjacent dims (within outer, within inner) where all offsets allow."""
    affines = [e for e in exprs if e.offset is not None]
    dims = list(outer) + list(inner)
    section = [0] * len(outer) + [1] * len(inner)
    keep = [k for k, d in enumerate(dims) if d != 1]

    def project(a: Affine, ks):
        return Affine(a.const, tuple(a.coeffs[k] for k in ks))

    for e in affines:
        e.offset = project(e.offset, keep)
    for s in stores:
        s.offset = project(s.offset, keep)
    dims = [dims[k] for k in keep]
    section = [section[k] for k in keep]
    all_offsets = lambda: [e.offset for e in affines] + [s.offset for s in stores]  # noqa: E731
    k = 0
    while k + 1 < len(dims):
        if section[k] == section[k + 1] and all(
                a.coeffs[k] == a.coeffs[k + 1] * dims[k + 1] for a in all_offsets()):
            merged = lambda a: Affine(a.const, a.coeffs[:k] + a.coeffs[k + 1:])  # noqa: E731
            for e in affines:
                e.offset = merged(e.offset)
            for s in stores:
                s.offset = merged(s.offset)
            dims[k:k + 2] = [dims[k] * dims[k + 1]]
            section[k:k + 2] = [section[k]]
        else:
            k += 1
    new_outer = tuple(d for d, s in zip(dims, section) if s == 0)
    new_inner = tuple(d for d, s in zip(dims, section) if s == 1)
    return new_outer, new_inner


def _deps(exprs, root: int) -> set[int]:
    out, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i in out:
            continue
        out.add(i)
        stack.extend(exprs[i].args)
    return out


def _assign_phases(exprs, stores, has_rows: bool) -> int:
    """Reductions that need no other reduction run in phase 0; element stores after their reductions."""
    for e in exprs:  # dependency order: args first
        if e.kind == "reduce":
            before = [exprs[d].phase for d in _deps(exprs, e.args[0]) if exprs[d].kind == "reduce"]
            e.phase = 1 + max(before) if before else 0
    count = max([e.phase + 1 for e in exprs if e.kind == "reduce"] or [1 if has_rows else 0])
    for s in stores:
        if s.inner:
            before = [exprs[d].phase for d in _deps(exprs, s.expr) if exprs[d].kind == "reduce"]
            s.phase = 1 + max(before) if before else 0
            count = max(count, s.phase + 1)
    return count


def affine_text(a: Affine, names: list[str]) -> str:
    """An affine offset as source text both backends accept: ``784 * o1 + o2 + 3``."""
    terms = []
    for c, n in zip(a.coeffs, names):
        if c == 1:
            terms.append(n)
        elif c != 0:
            terms.append(f"{c} * {n}" if c > 0 else f"({c}) * {n}")
    if a.const or not terms:
        terms.append(str(a.const))
    return " + ".join(terms)


def lowest_index(a: Affine, domain) -> int:
    """The smallest value ``a`` takes over the domain (a negative coefficient reaches its minimum at
    the last index of its dim: ``rev``)."""
    return a.const + sum(min(0, c * (d - 1)) for c, d in zip(a.coeffs, domain))


def param_bases(kernel: Kernel) -> list[int]:
    """Per param, the lowest element the kernel touches: the driver passes the buffer from there on
    (``buf[base:]``, a view) and the printer subtracts it from every offset into that buffer.

    Why: kernels that read one slice each of a larger buffer (a loss per step of an unrolled RNN,
    each reading its own rows of one merged GEMM result) differ only in that constant; with it moved
    out of the source they print the same loop nest and compile once. The Kernel's own offsets stay
    absolute (``in_place_ok`` compares offsets of different buffers)."""
    domain = tuple(kernel.outer) + tuple(kernel.inner)
    lowest: list[int | None] = [None] * len(kernel.params)
    accesses = [(e.buffer, e.offset) for e in kernel.exprs if e.kind == "load"]
    accesses += [(s.buffer, s.offset) for s in kernel.stores]
    for buffer, offset in accesses:
        low = lowest_index(offset, domain)
        if lowest[buffer] is None or low < lowest[buffer]:
            lowest[buffer] = low
    return [max(0, low or 0) for low in lowest]


def touched_elements(kernel: Kernel) -> list[int]:
    """Per param, about how many of its elements the kernel touches, for the profile's bytes column:
    the distinct accesses' counts (an access that varies along some dims of the domain touches the
    product of their extents) summed, capped by the span from the lowest to the highest index and by
    the buffer's size. A kernel that reads one timestep's rows of a merged GEMM result counts those
    rows, not the whole result."""
    domain = tuple(kernel.outer) + tuple(kernel.inner)
    accesses: list[set] = [set() for _ in kernel.params]
    for e in kernel.exprs:
        if e.kind == "load":
            accesses[e.buffer].add(e.offset)
    for st in kernel.stores:
        accesses[st.buffer].add(st.offset)
    counts = []
    for param, offsets in zip(kernel.params, accesses):
        if not offsets:
            counts.append(0)
            continue
        total = 0
        low, high = None, None
        for a in offsets:
            n = 1
            for c, d in zip(a.coeffs, domain):
                n *= d if c else 1
            total += n
            lo = lowest_index(a, domain)
            hi = a.const + sum(max(0, c * (d - 1)) for c, d in zip(a.coeffs, domain))
            low = lo if low is None else min(low, lo)
            high = hi if high is None else max(high, hi)
        counts.append(min(total, high - low + 1, param.size))
    return counts


def row_deps(kernel: Kernel, roots) -> list[int]:
    """Row-level exprs that the element-level exprs of ``roots`` need (each backend hoists them out of
    its inner loop), in dependency order."""
    found, stack, seen = [], list(roots), set()
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        e = kernel.exprs[i]
        if not e.inner:
            if e.kind != "reduce":
                found.append(i)
            continue
        stack.extend(e.args)
    return sorted(found)


def phase_roots(exprs, stores, p: int) -> list[int]:
    """The element-level exprs the inner loop of phase ``p`` must produce."""
    roots = [e.args[0] for e in exprs if e.kind == "reduce" and e.phase == p]
    roots += [s.expr for s in stores if s.inner and s.phase == p]
    return roots


def _choose_stash(exprs, stores, phases: int) -> dict[int, int]:
    """Expensive element-level exprs used by several phases are kept in a row scratch array."""
    stash: list[int] = []
    while True:
        used: dict[int, set[int]] = {}
        for p in range(phases):
            stack, seen = list(phase_roots(exprs, stores, p)), set()
            while stack:
                i = stack.pop()
                if i in seen or not exprs[i].inner:
                    continue
                seen.add(i)
                used.setdefault(i, set()).add(p)
                if i in stash and min(used[i]) < p:
                    continue
                stack.extend(exprs[i].args)
        candidates = [i for i, ps in used.items() if len(ps) > 1 and i not in stash
                      and exprs[i].kind == "op" and exprs[i].op not in CHEAP_OPS]
        if not candidates:
            return {i: min(used[i]) for i in sorted(stash)}
        stash.append(max(candidates))


def _choose_stash_out(exprs, stores, stash: dict[int, int], phases: int, n_outer: int,
                      inner) -> dict[int, int]:
    """Stashes that can live in an output row: a store of the LAST phase (no phase needs the stash
    after the store overwrote it), same dtype, whose offset walks the inner dims row-major with unit
    stride (it covers the row, each element once), and the only store into its buffer."""
    strides, s = [], 1
    for d in reversed(inner):
        strides.append(s)
        s *= d
    row_major = tuple(reversed(strides))
    taken: set[int] = set()
    out: dict[int, int] = {}
    for i, phase in stash.items():
        for k, st in enumerate(stores):
            if (st.inner and st.phase == phases - 1 and st.phase > phase and st.buffer not in taken
                    and exprs[st.expr].dtype == exprs[i].dtype
                    and tuple(st.offset.coeffs[n_outer:]) == row_major
                    and sum(1 for o in stores if o.buffer == st.buffer) == 1):
                out[i] = k
                taken.add(st.buffer)
                break
    return out


def expr_phases(kernel: Kernel) -> dict[int, set[int]]:
    """For each element-level expr, the phases whose inner loop evaluates it (stash loads count)."""
    if kernel._phases is None:
        kernel._phases = _expr_phases(kernel)
    return kernel._phases


def _expr_phases(kernel: Kernel) -> dict[int, set[int]]:
    used: dict[int, set[int]] = {}
    for p in range(kernel.phases):
        stack, seen = list(phase_roots(kernel.exprs, kernel.stores, p)), set()
        while stack:
            i = stack.pop()
            if i in seen or not kernel.exprs[i].inner:
                continue
            seen.add(i)
            used.setdefault(i, set()).add(p)
            first = kernel.stash.get(i)
            if first is not None and first < p:
                continue
            stack.extend(kernel.exprs[i].args)
    return used


def in_place_ok(kernel: Kernel, in_buffer: int, out_buffer: int) -> bool:
    """Can ``out_buffer`` be the same memory as ``in_buffer``? Only when every element of the input is
    read at exactly the position the output writes, and no later than the write (same phase or an
    earlier one: within a phase's loop body all loads come before the stores)."""
    loads = [e for e in kernel.exprs if e.kind == "load" and e.buffer == in_buffer]
    stores = [s for s in kernel.stores if s.buffer == out_buffer]
    if len(stores) != 1 or not loads:
        return False
    store = stores[0]
    if any(e.offset != store.offset for e in loads):
        return False
    if not store.inner:
        return True
    # the first phase that writes the output: its store's, or an earlier stash borrowing its row
    first_write = min([store.phase] + [kernel.stash[i] for i, k in kernel.stash_out.items()
                                       if kernel.stores[k].buffer == out_buffer])
    phases = expr_phases(kernel)
    return all(max(phases.get(e.id, {0})) <= first_write for e in loads)

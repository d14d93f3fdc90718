"""Merging rewrites: many small operations of one kind become one large operation.

An unrolled recurrent network (the W7 LSTM of issue 5: 64 steps) traces into hundreds of small GEMMs and
pads. Every library call has a fixed cost and a small GEMM runs far below the machine's peak (a K=32
weight-gradient GEMM especially), so four rewrites batch them (and a fifth shares their concatenates):

* ``merge_summed_dots``: a sum of dot_generals with the same dimension numbers whose operands differ only
  along their first contracted dim is ONE dot_general of the operands concatenated along that dim:
  ``sum_t h_t^T @ da_t == concat(h_t)^T @ concat(da_t)``. The gradient of a weight used at every step of
  an RNN has this form (autodiff sums one contribution per use).
* ``merge_sibling_dots`` (XLA's DotMerger): small dot_generals that share one operand and do not depend
  on one another are ONE dot_general of the other operands concatenated along a free dim, sliced back:
  ``xs[t] @ wx`` for every t, ``h_t @ wy`` for every t. Two dots depend on one another when a path of
  the graph leads from one to the other; members are grouped by *level* (the largest number of merge
  candidates on a path from the graph inputs), and candidates on the same level never depend on one
  another, nor can two merged groups form a cycle (a path from group A to group B raises B's level
  above A's). The nodes are then re-ordered so that each group's members sit together.
* ``merge_summed_reductions``: a sum of ``reduce_sum(x_t)`` whose pieces ``x_t`` a merged dot already
  concatenates along a reduced axis is one reduction of that concatenate (an RNN's bias gradient).
* ``sum_of_pads_to_concatenate``: zero-pads of pieces that do not overlap along one axis, summed, are
  their concatenation (zeros fill any gap): the gradient of the LSTM's four gate slices
  ``a[:, :H], ..., a[:, 3H:]``.

* ``share_overlapping_concatenates``: concatenates along axis 0 of ``X + Y`` and ``Y + Z`` are the
  leading and trailing rows of one concatenate of ``X + Y + Z``: ``h_0..h_{T-1}`` (for the gradient of
  ``wh``) and ``h_1..h_T`` (for ``h_t @ wy`` and its gradient) are one buffer, read through views.

The first three work on sum trees: an ``add`` whose inner ``add`` operands have no other reader. The
results are equal up to the order of floating-point summation (which BLAS chooses anyway); unlike
``simplify`` these rewrites are not bit-for-bit.

Any order of the pieces of a merged dot gives the same result (up to that summation order), so the order
is chosen to make equal concatenates come out equal (CSE then keeps one, and its pieces are written in
place by their producers): a sum of dots puts its terms in the order its first-defined side was defined
(``h_t`` forward in ``sum_t h_t^T @ da_t``, though autodiff sums the terms backward); sibling dots take
the order of an existing concatenate of the same pieces, else the order the pieces were defined in.
Concatenated operands stay live until the merged dot runs: a merge whose concatenated operands would
exceed ``MAX_CONCAT_BYTES`` is split into several.
"""
from __future__ import annotations

import heapq
from collections import defaultdict

from ..ir.graph import Graph, Node, Value
from .dce import eliminate_dead_code
from .rewrite import rebuild

MAX_CONCAT_BYTES = 256 << 20    # per merged dot: the bytes of its concatenated operands
SIBLING_MAX_BYTES = 16 << 20    # siblings: only dots whose operands and result are this small gain
MAX_SIBLING_KEYS = 32           # shared operands examined (each costs one pass over the graph)


def _nbytes(v: Value) -> int:
    return v.type.size * v.dtype.itemsize


def _single_use(graph: Graph) -> frozenset[Value]:
    users = graph.users()
    outputs = set(graph.outputs)
    return frozenset(v for v, us in users.items() if len(us) == 1 and v not in outputs)


def _sum_leaves(node: Node, single_use: frozenset[Value]) -> list[Value]:
    """The terms of the sum tree rooted at the add ``node`` (inner adds read by nothing else)."""
    leaves, stack = [], list(reversed(node.inputs))
    while stack:
        v = stack.pop()
        p = v.producer
        if p is not None and p.op == "add" and v in single_use:
            stack.extend(reversed(p.inputs))
        else:
            leaves.append(v)
    return leaves


def _is_inner_add(node: Node, single_use, users) -> bool:
    v = node.outputs[0]
    return v in single_use and users[v][0].op == "add"


def _chunks(items: list, size_of, limit: int) -> list[list]:
    """Consecutive runs of ``items`` whose sizes add up to at most ``limit`` (each run non-empty)."""
    runs, run, total = [], [], 0
    for item in items:
        if run and total + size_of(item) > limit:
            runs.append(run)
            run, total = [], 0
        run.append(item)
        total += size_of(item)
    runs.append(run)
    return runs


def _positions(graph: Graph) -> dict[Value, int]:
    """Where each value of ``graph`` is defined: graph inputs first (negative), then node outputs."""
    position = {v: i - len(graph.inputs) for i, v in enumerate(graph.inputs)}
    for i, node in enumerate(graph.nodes):
        for v in node.outputs:
            position[v] = i
    return position


def _rewrite_sum_trees(graph: Graph, group_key, merge_group) -> Graph:
    """Rebuild ``graph``; in every sum tree, the leaves with the same ``group_key(leaf)`` (not None) are
    replaced by ``merge_group(b, leaves, env, position)`` -> list of terms (new values); ``position``
    maps the old values to where they are defined (``_positions``)."""
    single_use = _single_use(graph)
    users = graph.users()
    env: dict[Value, Value] = {}
    position = _positions(graph)

    def rule(b, node, ins):
        if node.op != "add" or _is_inner_add(node, single_use, users):
            return None
        leaves = _sum_leaves(node, single_use)
        groups: dict = defaultdict(list)
        for leaf in leaves:
            key = group_key(leaf, single_use)
            if key is not None:
                groups[key].append(leaf)
        groups = {k: g for k, g in groups.items() if len(g) > 1}
        if not groups:
            return None
        merged = {id(v) for g in groups.values() for v in g}
        terms = [env[v] for v in leaves if id(v) not in merged]
        for g in groups.values():
            terms.extend(merge_group(b, g, env, position))
        total = terms[0]
        for t in terms[1:]:
            total = b.add(total, t)
        return total

    return eliminate_dead_code(rebuild(graph, rule, env))


# -- sums of dots ----------------------------------------------------------------------------------
def _summed_dot_key(leaf: Value, single_use):
    d = leaf.producer
    if d is None or d.op != "dot_general" or leaf not in single_use:
        return None
    (lc, rc), batch = d.attrs["contract"], d.attrs["batch"]
    lhs, rhs = d.inputs
    if not lc or _nbytes(leaf) < _nbytes(lhs) + _nbytes(rhs):
        return None  # see merge_summed_dots
    lshape = tuple(-1 if i == lc[0] else s for i, s in enumerate(lhs.shape))
    rshape = tuple(-1 if i == rc[0] else s for i, s in enumerate(rhs.shape))
    return ("dot", (lc, rc), batch, lhs.dtype, lshape, rshape)


def _in_definition_order(dots: list[Node], position) -> list[Node]:
    """The dots of one merged sum in the order their first-defined side was defined (ties: the other
    side), whatever order the sum added them in: ``sum_t h_t^T @ da_t`` concatenates ``h_t`` forward
    (as the forward pass's own merged ``h_t @ wy`` does) and ``da_t`` in the same order."""
    first = min((0, 1), key=lambda side: min(position[d.inputs[side]] for d in dots))
    return sorted(dots, key=lambda d: (position[d.inputs[first]], position[d.inputs[1 - first]]))


def _merge_summed_dots(b, leaves: list[Value], env, position) -> list[Value]:
    terms = []
    size = lambda v: sum(_nbytes(x) for x in v.producer.inputs)  # noqa: E731
    leaves = [d.outputs[0] for d in _in_definition_order([v.producer for v in leaves], position)]
    for run in _chunks(leaves, size, MAX_CONCAT_BYTES):
        dots = [v.producer for v in run]
        (lc, rc), batch = dots[0].attrs["contract"], dots[0].attrs["batch"]
        if len(dots) == 1:
            terms.append(env[run[0]])
            continue
        with b.at(dots[0].loc):
            lhs = b.concatenate(*[env[d.inputs[0]] for d in dots], axis=lc[0])
            rhs = b.concatenate(*[env[d.inputs[1]] for d in dots], axis=rc[0])
            terms.append(b.dot_general(lhs, rhs, contract=(lc, rc), batch=batch))
    return terms


def merge_summed_dots(graph: Graph) -> Graph:
    """``dot(a1, b1) + dot(a2, b2) + ...`` -> ``dot(concat(a_i), concat(b_i))`` (see the module docstring).

    Only for dots whose result is at least as large as their operands (a small contracted dim: weight
    gradients): each merged term saves an add over its result and costs a copy of its operands. A sum
    like ``x @ wx + h @ wh`` would copy both weights to save one small add; it is left alone (and
    ``merge_sibling_dots`` may batch ``x @ wx`` over the steps of an RNN instead)."""
    return _rewrite_sum_trees(graph, _summed_dot_key, _merge_summed_dots)


# -- sums of reductions ----------------------------------------------------------------------------
def _summed_reduction_key(leaf: Value, single_use):
    r = leaf.producer
    if r is None or r.op != "reduce_sum" or leaf not in single_use or not r.attrs["axes"]:
        return None
    return ("reduce_sum", tuple(r.attrs["axes"]), r.inputs[0].type)


def merge_summed_reductions(graph: Graph) -> Graph:
    """``reduce_sum(x1, axes) + reduce_sum(x2, axes) + ...`` -> ``reduce_sum(c, axes)`` where ``c`` is a
    concatenate of the ``x_i`` along one of the reduced axes that the graph has already: one pass over
    that buffer instead of a chain of small reductions. The bias gradient of an RNN has this form (one
    term per step, summed over the batch) and its steps' gradients are concatenated for the weight
    gradient's merged GEMM (``merge_summed_dots``): W7 read them in 8 kernels of 16 reductions
    (0.9 ms), now in one column reduction (0.5 ms). Without such a concatenate the sum is left alone
    (making one would copy every piece)."""
    orders = _existing_concat_orders(graph)

    def merge(b, leaves: list[Value], env, position) -> list[Value]:
        first = leaves[0].producer
        axes = tuple(first.attrs["axes"])
        pieces = frozenset(v.producer.inputs[0] for v in leaves)
        for axis in axes:
            existing = orders.get((axis, pieces))
            if existing is not None and len(existing) == len(leaves):
                with b.at(first.loc):
                    whole = b.concatenate(*[env[p] for p in existing], axis=axis)
                    return [b.reduce_sum(whole, axes=axes)]
        return [env[v] for v in leaves]

    return _rewrite_sum_trees(graph, _summed_reduction_key, merge)


# -- sums of zero pads -----------------------------------------------------------------------------
def _pad_axis(node: Node) -> int | None:
    """The one axis a pad by zeros extends (no interior padding), or None."""
    a = node.attrs
    if a["value"] != 0 or any(a["interior"]) or any(lo < 0 for lo in a["low"]) or any(h < 0 for h in a["high"]):
        return None
    axes = [d for d, (lo, hi) in enumerate(zip(a["low"], a["high"])) if lo or hi]
    return axes[0] if len(axes) == 1 else None


def _pad_key(leaf: Value, single_use):
    p = leaf.producer
    if p is None or p.op != "pad":
        return None
    axis = _pad_axis(p)
    return None if axis is None else ("pad", axis, leaf.type)


def _merge_pads(b, leaves: list[Value], env, position) -> list[Value]:
    pads = sorted((v.producer for v in leaves), key=lambda p: p.attrs["low"][_pad_axis(p)])
    axis = _pad_axis(pads[0])
    out_type = leaves[0].type
    offset = 0
    for p in pads:
        if p.attrs["low"][axis] < offset:  # overlapping pieces add up: not a concatenation
            return [env[v] for v in leaves]
        offset = p.attrs["low"][axis] + p.inputs[0].shape[axis]
    pieces, offset = [], 0
    with b.at(pads[0].loc):
        for p in pads + [None]:
            start = out_type.shape[axis] if p is None else p.attrs["low"][axis]
            if start > offset:  # a gap: zeros
                shape = out_type.shape[:axis] + (start - offset,) + out_type.shape[axis + 1:]
                pieces.append(b.full(shape, 0, out_type.dtype))
            if p is not None:
                pieces.append(env[p.inputs[0]])
                offset = start + p.inputs[0].shape[axis]
        return [b.concatenate(*pieces, axis=axis)]


def sum_of_pads_to_concatenate(graph: Graph) -> Graph:
    """``pad(x1) + pad(x2) + ...`` (zero pads of disjoint pieces of one axis) -> ``concatenate``."""
    return _rewrite_sum_trees(graph, _pad_key, _merge_pads)


# -- sibling dots ----------------------------------------------------------------------------------
def _free_dims(ndim: int, contract, batch) -> list[int]:
    taken = set(contract) | set(batch)
    return [d for d in range(ndim) if d not in taken]


def _sibling_keys(node: Node) -> list[tuple]:
    """(shared operand, side, ...) keys under which ``node`` (a dot_general) could merge."""
    if node.op != "dot_general":
        return []
    if sum(_nbytes(v) for v in (*node.inputs, node.outputs[0])) > SIBLING_MAX_BYTES:
        return []
    (lc, rc), (lb, rb) = node.attrs["contract"], node.attrs["batch"]
    lhs, rhs = node.inputs
    keys = []
    for side, other, contract, batch in ((0, rhs, rc, rb), (1, lhs, lc, lb)):
        free = _free_dims(other.ndim, contract, batch)
        if free:
            shape = tuple(-1 if i == free[0] else s for i, s in enumerate(other.shape))
            keys.append((node.inputs[side], side, node.attrs["contract"], node.attrs["batch"], shape))
    return keys


def _sibling_groups(graph: Graph) -> list[list[Node]]:
    """Groups (>= 2 dots, in graph order) that can merge, all at once, without a cycle."""
    by_key: dict[tuple, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        for key in _sibling_keys(node):
            by_key[key].append(node)
    levels_of = _LevelCounter(graph)
    key_of: dict[Node, tuple] = {}
    for key, members in sorted(by_key.items(), key=lambda kv: -len(kv[1]))[:MAX_SIBLING_KEYS]:
        if len(members) < 2:
            break
        # First each key alone: a chain (h_t @ wh of an RNN) has one member per level and drops out
        # here, before its levels could separate the members of other keys.
        alone = levels_of({n for n in members if n not in key_of})
        per_level = defaultdict(list)
        for n, lv in alone.items():
            per_level[lv].append(n)
        for level_members in per_level.values():
            if len(level_members) > 1:
                for n in level_members:
                    key_of[n] = key
    while True:  # then all keys together, so that no two merged groups form a cycle
        levels = levels_of(key_of)
        groups: dict[tuple, list[Node]] = defaultdict(list)
        for n, key in key_of.items():
            groups[(key, levels[n])].append(n)
        lonely = [g[0] for g in groups.values() if len(g) == 1]
        if not lonely:
            break
        for n in lonely:  # not a candidate any more: it no longer raises the levels of others
            del key_of[n]
    position = {n: i for i, n in enumerate(graph.nodes)}
    return [sorted(g, key=position.__getitem__) for g in groups.values()]


class _LevelCounter:
    """``levels(candidates)``: for each candidate node, the largest number of candidates on a path from
    the inputs to it. ``_sibling_groups`` asks once per shared operand (up to MAX_SIBLING_KEYS times), so
    the graph's wiring is turned into lists of node positions once: each count is then a walk over
    small int lists instead of dict look-ups by Value."""

    def __init__(self, graph: Graph):
        self.nodes = graph.nodes
        position = {n: i for i, n in enumerate(graph.nodes)}
        # per node: the positions of the nodes it reads (graph inputs carry no count: level 0)
        self.producers = [tuple({position[v.producer] for v in n.inputs if v.producer is not None})
                          for n in graph.nodes]
        self.position = position

    def __call__(self, candidates) -> dict[Node, int]:
        position = self.position
        marked = sorted(position[n] for n in candidates)
        if not marked:
            return {}
        # level of a node's values = the largest level among its operands, plus one past a candidate;
        # nodes before the first candidate are all at 0 and are skipped
        is_candidate = set(marked)
        after = [0] * len(self.nodes)  # the level of each node's outputs
        out: dict[Node, int] = {}
        nodes, producers = self.nodes, self.producers
        for i in range(marked[0], len(nodes)):
            lv = 0
            for j in producers[i]:
                if after[j] > lv:
                    lv = after[j]
            if i in is_candidate:
                out[nodes[i]] = lv
                lv += 1
            after[i] = lv
        return out


def _order_with_groups_together(graph: Graph, groups: list[list[Node]]) -> list[Node]:
    """A topological order of the nodes in which each group's members are consecutive (the groups come
    from ``_sibling_groups``, so contracting each to one node leaves the graph acyclic)."""
    unit = {n: i for i, n in enumerate(graph.nodes)}
    for g in groups:
        for n in g:
            unit[n] = unit[g[0]]
    members: dict[int, list[Node]] = defaultdict(list)
    for n in graph.nodes:
        members[unit[n]].append(n)
    waiting: dict[int, int] = {}
    readers: dict[int, list[int]] = defaultdict(list)
    for u, nodes in members.items():
        deps = {unit[v.producer] for n in nodes for v in n.inputs if v.producer is not None} - {u}
        waiting[u] = len(deps)
        for d in deps:
            readers[d].append(u)
    ready = [u for u, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        u = heapq.heappop(ready)
        order.extend(members[u])
        for r in readers[u]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(graph.nodes):
        raise AssertionError("merging sibling dots would create a cycle")
    return order


def _existing_concat_orders(graph: Graph) -> dict[tuple, tuple[Value, ...]]:
    """(axis, set of pieces) -> the pieces in order, for each concatenate of distinct pieces in ``graph``
    (those ``merge_summed_dots`` made): merged siblings with the same pieces reuse that order."""
    orders = {}
    for node in graph.nodes:
        if node.op == "concatenate" and len(set(node.inputs)) == len(node.inputs):
            orders.setdefault((node.attrs["axis"], frozenset(node.inputs)), node.inputs)
    return orders


def _concat_order(members: list[Node], side: int, axis: int, orders, position) -> list[Node]:
    """The members in the order their ``side`` operands are concatenated: that of an existing concatenate
    of the same pieces, else the order the pieces were defined in."""
    pieces = [n.inputs[side] for n in members]
    existing = orders.get((axis, frozenset(pieces)))
    if existing is not None and len(existing) == len(pieces):
        rank = {v: i for i, v in enumerate(existing)}
        return sorted(members, key=lambda n: rank[n.inputs[side]])
    return sorted(members, key=lambda n: position[n.inputs[side]])


def _emit_merged_siblings(b, group: list[Node], env, orders, position) -> list[Value]:
    """One dot for the group; returns each member's result (in ``group``'s order) as a slice of it."""
    first = group[0]
    (lc, rc), (lb, rb) = first.attrs["contract"], first.attrs["batch"]
    shared_side = next(side for side in (0, 1)
                       if all(n.inputs[side] is first.inputs[side] for n in group)
                       and _free_dims(first.inputs[1 - side].ndim, (rc, lc)[side], (rb, lb)[side]))
    other_side = 1 - shared_side
    contract, batch = (lc, rc)[other_side], (lb, rb)[other_side]
    axis = _free_dims(first.inputs[other_side].ndim, contract, batch)[0]
    ordered = _concat_order(group, other_side, axis, orders, position)
    others = [env[n.inputs[other_side]] for n in ordered]
    with b.at(first.loc):
        stacked = b.concatenate(*others, axis=axis)
        operands = [None, None]
        operands[shared_side], operands[other_side] = env[first.inputs[shared_side]], stacked
        merged = b.dot_general(*operands, contract=first.attrs["contract"], batch=first.attrs["batch"])
        n_batch = len(lb)
        n_lhs_free = first.inputs[0].ndim - len(lc) - n_batch
        out_axis = n_batch if other_side == 0 else n_batch + n_lhs_free
        result_of, offset = {}, 0
        for n in ordered:
            out = n.outputs[0]
            width = out.shape[out_axis]
            start = tuple(offset if d == out_axis else 0 for d in range(out.ndim))
            limit = tuple(offset + width if d == out_axis else s for d, s in enumerate(out.shape))
            result_of[n] = b.slice(merged, start=start, limit=limit, stride=(1,) * out.ndim)
            offset += width
    return [result_of[n] for n in group]


def merge_sibling_dots(graph: Graph) -> Graph:
    """Independent small dots sharing an operand -> one dot, sliced (see the module docstring)."""
    groups = _sibling_groups(graph)
    if not groups:
        return graph
    group_of = {n: g for g in groups for n in g}
    orders, position = _existing_concat_orders(graph), _positions(graph)
    ordered = Graph(graph.name, graph.inputs, _order_with_groups_together(graph, groups), graph.outputs)
    env: dict[Value, Value] = {}
    done: dict[Node, Value] = {}

    def rule(b, node, ins):
        group = group_of.get(node)
        if group is None:
            return None
        if node not in done:
            for member, result in zip(group, _emit_merged_siblings(b, group, env, orders, position)):
                done[member] = result
        return done[node]

    return eliminate_dead_code(rebuild(ordered, rule, env))


# -- overlapping concatenates ---------------------------------------------------------------------
def _overlap(first: tuple, second: tuple) -> int:
    """The largest k with first[-k:] == second[:k] (0 if none)."""
    for k in range(min(len(first), len(second)), 0, -1):
        if first[-k:] == second[:k]:
            return k
    return 0


def _overlapping_pair(graph: Graph):
    """Pieces of two concatenates along axis 0, A = X + Y and B = Y + Z (X or Z may be empty: one is the
    start or the end of the other), with the length of Y, the concatenates of those pieces (equal ones
    are not merged yet: CSE runs after the merges) and the position of the last piece; or None. Only
    when every piece is defined before the first reader of any of those concatenates: then one
    concatenate at that point can stand for all of them (no piece depends on them).

    Only when Y is more than half of the pieces of each (the shifted sequences of a recurrence): C is
    then less than 1.5 times the larger and is held for both lifetimes, which for a small overlap
    could cost more memory than the copy it saves. A graph output is left alone (a slice of C as an
    output would be copied out of it)."""
    outputs = set(graph.outputs)
    classes: dict[tuple, list[Node]] = defaultdict(list)
    for n in graph.nodes:
        if n.op == "concatenate" and n.attrs["axis"] == 0 and n.outputs[0] not in outputs:
            classes[n.inputs].append(n)
    if len(classes) < 2:
        return None
    position = {n: i for i, n in enumerate(graph.nodes)}
    users = graph.users()
    for first, a in classes.items():
        for second, b in classes.items():
            if first is second or a[0].outputs[0].type.dtype != b[0].outputs[0].type.dtype \
                    or a[0].outputs[0].shape[1:] != b[0].outputs[0].shape[1:]:
                continue
            k = _overlap(first, second)
            if 2 * k <= max(len(first), len(second)):
                continue
            last_piece = max((position[v.producer] for v in first + second if v.producer is not None),
                             default=-1)
            first_reader = min((position[u] for n in a + b for u in users.get(n.outputs[0], ())),
                               default=len(graph.nodes))
            if last_piece < first_reader:
                return first, second, k, a + b, last_piece
    return None


def share_overlapping_concatenates(graph: Graph) -> Graph:
    """``A = concat(X + Y)`` and ``B = concat(Y + Z)`` along axis 0 -> one ``C = concat(X + Y + Z)``
    with A and B its leading and trailing rows (slices of rows, which a library call reads as views):
    ``sum_t h_t^T @ da_t`` over h_0..h_{T-1} and ``h_t @ wy`` over h_1..h_T share one concatenate, whose
    pieces are written in place, instead of copying h_1..h_{T-1} a second time. C and the slices are
    placed right after the last piece."""
    while (found := _overlapping_pair(graph)) is not None:
        first, second, k, members, last_piece = found
        pieces = first + second[k:]
        member_set = set(members)
        order = [] if last_piece >= 0 else list(members)
        for i, n in enumerate(graph.nodes):
            if n not in member_set:
                order.append(n)
            if i == last_piece:
                order.extend(members)
        env: dict[Value, Value] = {}
        done: dict[tuple, Value] = {}

        def rule(bld, node, ins, first=first, second=second, pieces=pieces, member_set=member_set, env=env,
                 done=done):
            if node not in member_set:
                return None
            if not done:
                whole = bld.concatenate(*[env[v] for v in pieces], axis=0)
                ones, zeros = (1,) * whole.ndim, (0,) * (whole.ndim - 1)
                for key, at_end in ((first, False), (second, True)):
                    rows = sum(v.shape[0] for v in key)
                    start = whole.shape[0] - rows if at_end else 0
                    done[key] = bld.slice(whole, start=(start,) + zeros,
                                          limit=(start + rows,) + whole.shape[1:], stride=ones)
            return done[node.inputs]

        graph = rebuild(Graph(graph.name, graph.inputs, order, graph.outputs), rule, env)
    return graph


def merge_small_operations(graph: Graph) -> Graph:
    """The rewrites, in the order that lets each see the others' results."""
    merged = merge_summed_reductions(merge_summed_dots(sum_of_pads_to_concatenate(graph)))
    merged = merge_sibling_dots(merged)
    return share_overlapping_concatenates(merged)

"""Loop kernels for gather (numpy.take along one axis) and scatter_add (numpy.add.at) on the CPU.

Like the window kernels (window.py) they are written once, take the sizes as arguments and are
compiled by numba on first use per dtype (``cache=True``: later processes load the machine code from
numba's disk cache). The generated driver calls the ``run_*`` wrappers with the output buffer it owns
(a pool slot or the caller's fresh array), so a step allocates nothing; a numpy reference step costs
more in call overhead, ``np.zeros``/copy and ``np.add.at`` than the loop itself (32 labels: ~1 us).

Every array is flat and contiguous; the driver passes the sizes of the axis view
``(outer, size, inner)``: ``outer`` the product of the dims before the axis, ``size`` the axis,
``inner`` the product of the dims after it. scatter_add's operand and updates also take a ``step``:
1 for an array of their full size, 0 for a one-element array standing for a broadcast of one value
(the gradient of a label pick is ``scatter_add(broadcast(0), labels, broadcast(-1/N))``: neither
broadcast is materialised).

Indices follow the primitives' rule (kernelflow/ir/primitives/indexing.py): a negative index wraps
once, an index outside [-size, size) is an error. Each kernel checks all indices first, one compare
each, and returns the position of the first bad one (or -1) before writing anything; the wrapper
raises an IndexError naming the op, the index, the axis size and the user's source line.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)


@njit(**_JIT)
def _first_bad(idx, size):
    """Position of the first index outside [-size, size), or -1. ``i + size`` in [0, 2*size) as an
    unsigned compare: one test per index (a negative sum wraps to a huge unsigned value)."""
    limit = np.uint64(2 * size)
    for k in range(idx.size):
        if np.uint64(np.int64(idx[k]) + size) >= limit:
            return k
    return -1


@njit(**_JIT)
def _gather(x, idx, out, outer, size, inner):
    bad = _first_bad(idx, size)
    if bad >= 0:
        return bad
    m = idx.size
    for o in range(outer):
        for k in range(m):
            j = np.int64(idx[k])
            if j < 0:
                j += size
            src = (o * size + j) * inner
            dst = (o * m + k) * inner
            for t in range(inner):
                out[dst + t] = x[src + t]
    return -1


@njit(**_JIT)
def _scatter_add(operand, operand_step, idx, updates, updates_step, out, outer, size, inner):
    bad = _first_bad(idx, size)
    if bad >= 0:
        return bad
    for e in range(out.size):
        out[e] = operand[e * operand_step]
    m = idx.size
    for o in range(outer):
        for k in range(m):  # in order, one at a time: duplicate indices accumulate
            j = np.int64(idx[k])
            if j < 0:
                j += size
            dst = (o * size + j) * inner
            src = (o * m + k) * inner
            for t in range(inner):
                out[dst + t] += updates[(src + t) * updates_step]
    return -1


def _index_error(op: str, idx, bad: int, axis: int, size: int, where: str) -> IndexError:
    at = f" (at {where})" if where else ""
    return IndexError(f"{op}: index {int(idx[bad])} is out of range for axis {axis} of size {size}{at}")


def run_gather(x, idx, out, outer, size, inner, axis, where):
    """out (flat) <- numpy.take(x, idx, axis) for x flat as (outer, size, inner)."""
    bad = _gather(x, idx, out, outer, size, inner)
    if bad >= 0:
        raise _index_error("gather", idx, bad, axis, size, where)


def run_scatter_add(operand, operand_step, idx, updates, updates_step, out, outer, size, inner, axis, where):
    """out (flat) <- operand with updates added at idx along the axis (numpy.add.at)."""
    bad = _scatter_add(operand, operand_step, idx, updates, updates_step, out, outer, size, inner)
    if bad >= 0:
        raise _index_error("scatter_add", idx, bad, axis, size, where)

"""The reference interpreter: runs any Graph node by node with each primitive's numpy reference.

It is the correctness oracle of every backend, so it stays exact and simple: no fusion, no buffer reuse,
and it checks that every reference result has exactly the type the shape rule declared.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import primitive
from .graph import Graph, Value
from .types import DTypeError, ShapeError, TensorType


def check_argument(v: Value, a, what: str) -> np.ndarray:
    """Return ``a`` as a numpy array of ``v``'s exact type, or raise naming the mismatch."""
    a = np.asarray(a)
    want: TensorType = v.type
    if tuple(a.shape) != want.shape:
        raise ShapeError(f"{what}: expected shape {list(want.shape)}, got {list(a.shape)}")
    if a.dtype != want.dtype.np_dtype:
        raise DTypeError(f"{what}: expected dtype {want.dtype.numpy_name}, got {a.dtype}")
    return a


def interpret(graph: Graph, args: Sequence, check_nan: bool = False) -> list[np.ndarray]:
    """Run ``graph`` on numpy arrays; returns its outputs as fresh numpy arrays.

    With ``check_nan``, the first node that produces a NaN from NaN-free inputs raises FloatingPointError
    naming the node and the user's source line.
    """
    if len(args) != len(graph.inputs):
        raise TypeError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    env: dict[Value, np.ndarray] = {}
    for i, (v, a) in enumerate(zip(graph.inputs, args)):
        env[v] = check_argument(v, a, f"input {i} of graph {graph.name}")
    with np.errstate(all="ignore"):  # IEEE semantics, as compiled code has; check_nan reports
        for node in graph.nodes:
            prim = primitive.get(node.op)
            ins = [env[v] for v in node.inputs]
            try:
                result = prim.reference(*ins, **node.attrs)
            except IndexError as e:  # a data-dependent error (gather's index): name the op and the line
                raise IndexError(f"{node.op}: {e} (at {node.loc})") from e
            results = result if isinstance(result, tuple) else (result,)
            for k, (v, r) in enumerate(zip(node.outputs, results)):
                r = np.asarray(r)
                if r.shape != v.type.shape or r.dtype != v.type.dtype.np_dtype:
                    raise AssertionError(
                        f"reference of {node.op} returned {r.dtype}{list(r.shape)} for output {k}, "
                        f"but its shape rule says {v.type} (at {node.loc})")
                if check_nan and r.dtype.kind == "f" and np.isnan(r).any() and not any(
                        a.dtype.kind == "f" and np.isnan(a).any() for a in ins):
                    raise FloatingPointError(
                        f"{node.op} produced NaN from NaN-free inputs "
                        f"({', '.join(str(x.type) for x in node.inputs)}), traced at {node.loc}")
                env[v] = r
    return [np.array(env[v], copy=True) for v in graph.outputs]

"""Pytrees: nested dicts, lists, tuples and namedtuples whose leaves are arrays (or scalars, or tracers).

``flatten(tree)`` gives the leaves in a fixed order and a hashable ``TreeDef`` describing the nesting;
``unflatten(treedef, leaves)`` rebuilds the tree. ``None`` is an empty subtree (it holds no leaf), as in JAX.
``leaf_paths`` names each leaf the way a user would write it (``params['w1']``, ``batch[0]``), for errors.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class TreeDef(NamedTuple):
    """``kind`` is 'leaf', 'none', 'tuple', 'list', 'dict' or 'namedtuple'; ``meta`` the dict keys or the
    namedtuple class; ``children`` the TreeDefs of the children."""

    kind: str
    meta: Any
    children: tuple

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(str(c) for c in self.children)
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.meta, self.children)) + "}"
        if self.kind == "list":
            return f"[{inner}]"
        if self.kind == "namedtuple":
            return f"{self.meta.__name__}({inner})"
        return f"({inner}{',' if len(self.children) == 1 else ''})"


LEAF = TreeDef("leaf", None, ())
_LEAF_TYPES = frozenset({np.ndarray, float, int, bool})


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _children(tree):
    """(kind, meta, children) of a container node, or None for a leaf."""
    if type(tree) in _LEAF_TYPES:
        return None
    if tree is None:
        return "none", None, ()
    if isinstance(tree, dict):
        keys = tuple(tree.keys())
        return "dict", keys, tuple(tree[k] for k in keys)
    if _is_namedtuple(tree):
        return "namedtuple", type(tree), tuple(tree)
    if isinstance(tree, tuple):
        return "tuple", None, tuple(tree)
    if isinstance(tree, list):
        return "list", None, tuple(tree)
    return None


def flatten(tree) -> tuple[list, TreeDef]:
    leaves: list = []

    def rec(t) -> TreeDef:
        node = _children(t)
        if node is None:
            leaves.append(t)
            return LEAF
        kind, meta, kids = node
        return TreeDef(kind, meta, tuple(rec(k) for k in kids))

    treedef = rec(tree)
    return leaves, treedef


def unflatten(treedef: TreeDef, leaves) -> Any:
    it = iter(leaves)

    def rec(td: TreeDef):
        if td.kind == "leaf":
            return next(it)
        if td.kind == "none":
            return None
        kids = [rec(c) for c in td.children]
        if td.kind == "dict":
            return dict(zip(td.meta, kids))
        if td.kind == "namedtuple":
            return td.meta(*kids)
        if td.kind == "list":
            return kids
        return tuple(kids)

    out = rec(treedef)
    rest = list(it)
    if rest:
        raise ValueError(f"unflatten: {len(rest)} leaves left over for tree {treedef}")
    return out


def leaf_paths(tree, prefix: str = "") -> list[str]:
    """The access path of every leaf, in flatten order: ``prefix['w1'][0]``."""
    paths: list[str] = []

    def rec(t, path: str):
        node = _children(t)
        if node is None:
            paths.append(path)
            return
        kind, meta, kids = node
        if kind == "dict":
            for k, c in zip(meta, kids):
                rec(c, f"{path}[{k!r}]")
        elif kind == "namedtuple":
            for name, c in zip(t._fields, kids):
                rec(c, f"{path}.{name}")
        else:
            for i, c in enumerate(kids):
                rec(c, f"{path}[{i}]")

    rec(tree, prefix)
    return paths


def tree_map(fn, tree):
    leaves, td = flatten(tree)
    return unflatten(td, [fn(x) for x in leaves])

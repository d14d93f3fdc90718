"""The primitive registry: each primitive is defined once, with everything every layer needs of it.

A ``Primitive`` bundles, under its name:
  * ``shape_rule(*input_types, **attrs) -> TensorType | tuple[TensorType, ...]``  (raises ShapeError/DTypeError)
  * ``reference(*arrays, **attrs) -> ndarray | tuple[ndarray, ...]``  the exact numpy semantics (the oracle)
  * ``grad(b, g, node) -> list[Value | None]``  reverse-mode rule written with primitives through the
    GraphBuilder ``b``; ``g`` is the cotangent of the node's (single) output; one entry per input,
    None where the input gets no gradient. ``NONDIFFERENTIABLE`` marks ops whose gradient is zero.
  * ``codegen``: per backend, a scalar template (``"math.exp({0})"``) for elementwise ops, or
    ``"@<lowering>"`` naming the structured lowering the backend implements (``"@reduce"``, ``"@library"``).

The definitions live in ``kernelflow/ir/primitives/<family>.py``; ``get(name)`` finds one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

BACKENDS = ("numba", "triton")

# Families whose ops act elementwise on same-shaped operands (fusion relies on this).
ELEMENTWISE_FAMILIES = frozenset({"unary", "binary", "compare", "select", "cast"})


class _NonDifferentiable:
    def __repr__(self):
        return "NONDIFFERENTIABLE"


NONDIFFERENTIABLE = _NonDifferentiable()


@dataclass(frozen=True)
class Primitive:
    name: str
    family: str
    shape_rule: Callable[..., Any]
    reference: Callable[..., Any]
    grad: Callable[..., Any] | _NonDifferentiable | None
    codegen: dict[str, str] = field(default_factory=dict)
    attr_names: tuple[str, ...] = ()
    doc: str = ""

    @property
    def is_elementwise(self) -> bool:
        return self.family in ELEMENTWISE_FAMILIES

    @property
    def differentiable(self) -> bool:
        return self.grad is not NONDIFFERENTIABLE


_REGISTRY: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    if prim.name in _REGISTRY:
        raise ValueError(f"primitive {prim.name!r} is defined twice")
    _REGISTRY[prim.name] = prim
    return prim


def get(name: str) -> Primitive:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown primitive {name!r}") from None


def all_primitives() -> dict[str, Primitive]:
    _load_all()
    return dict(_REGISTRY)


def is_primitive(name: str) -> bool:
    _load_all()
    return name in _REGISTRY


_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import primitives  # noqa: F401  (importing registers every family)

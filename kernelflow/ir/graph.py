"""The SSA graph: a Graph is a function of typed input Values, Nodes in topological order, and outputs.

Every Value is defined exactly once: either as a graph input or as an output of one Node. Values are
compared by identity; their printed names (``%3``) are assigned by the printer in definition order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from .types import TensorType


@dataclass(frozen=True)
class SourceLoc:
    """Where in the user's code a node was traced from."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Value:
    """An SSA value: a static type and (for node outputs) the node that defines it."""

    __slots__ = ("type", "producer", "index", "__weakref__")

    def __init__(self, type: TensorType, producer: "Node | None" = None, index: int = 0):
        self.type = type
        self.producer = producer  # None for graph inputs
        self.index = index        # which output of the producer

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def __repr__(self) -> str:
        op = self.producer.op if self.producer is not None else "input"
        return f"<Value {self.type} from {op}>"


class Node:
    """One primitive application: ``outputs = op(inputs) {attrs}``, traced from ``loc``."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "loc")

    def __init__(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any],
                 output_types: Iterable[TensorType], loc: SourceLoc | None = None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.outputs = tuple([Value(t, self, i) for i, t in enumerate(output_types)])
        self.loc = loc

    @classmethod
    def owning(cls, op: str, inputs: tuple, attrs: dict, output_types: tuple, loc: SourceLoc | None) -> "Node":
        """``Node(op, inputs, attrs, output_types, loc)`` for the builder's hot paths (every traced and
        every rebuilt node): ``inputs`` and ``output_types`` are tuples and the node keeps ``attrs``
        itself, which the caller made for it and does not touch again (no copies; half the cost)."""
        node = cls.__new__(cls)
        node.op = op
        node.inputs = inputs
        node.attrs = attrs
        if len(output_types) == 1:
            value = Value.__new__(Value)
            value.type, value.producer, value.index = output_types[0], node, 0
            node.outputs = (value,)
        else:
            node.outputs = tuple([Value(t, node, i) for i, t in enumerate(output_types)])
        node.loc = loc
        return node

    @property
    def out(self) -> Value:
        """The single output of a single-output node."""
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    def __repr__(self) -> str:
        ins = ", ".join(str(v.type) for v in self.inputs)
        outs = ", ".join(str(v.type) for v in self.outputs)
        where = f" at {self.loc}" if self.loc else ""
        return f"<Node {self.op}({ins}) -> {outs}{where}>"


class Graph:
    """A function in SSA form. ``nodes`` are kept in a valid topological order."""

    def __init__(self, name: str = "main", inputs: Iterable[Value] = (),
                 nodes: Iterable[Node] = (), outputs: Iterable[Value] = ()):
        self.name = name
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)

    # -- queries ---------------------------------------------------------------------------
    def topological_order(self) -> list[Node]:
        return list(self.nodes)

    def users(self) -> dict[Value, list[Node]]:
        """Map each value to the nodes that read it (graph outputs are not nodes)."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        for n in self.nodes:
            yield from n.outputs

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    # -- text ------------------------------------------------------------------------------
    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, {len(self.outputs)} outputs>"

    def __eq__(self, other) -> bool:
        """Structural equality: same canonical text (types, ops, attributes, locations, wiring)."""
        if not isinstance(other, Graph):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # graphs are mutable

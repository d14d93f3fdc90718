"""The canonical text form of a Graph (the grammar is in docs/ir.md).

    graph predict(%0: f32[8,4], %1: f32[4,3]) -> (f32[8,3]) {
      %2: f32[8,3] = dot_general(%0, %1) {batch=[[], []], contract=[[1], [0]]} loc("model.py":7)
      %3: f32[8,3] = tanh(%2) loc("model.py":8)
      return %3
    }

Values are numbered in definition order and attributes sorted by name, so printing is canonical:
``print_graph(parse(text)) == text`` for any printed text.
"""
from __future__ import annotations

import base64
import json
import re

import numpy as np

from .graph import Graph, Value
from .types import DType, TensorType, as_dtype

# Constants with more elements than this print as base64 of their little-endian bytes.
MAX_DECIMAL_ELEMENTS = 16
SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def format_scalar(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))  # shortest text that round-trips a float64 (and so any f16/f32)


def format_array(a: np.ndarray) -> str:
    t = TensorType(as_dtype(a.dtype), a.shape)
    if a.size <= MAX_DECIMAL_ELEMENTS:
        body = "[" + ", ".join(format_scalar(x) for x in a.reshape(-1).tolist()) + "]"
    else:
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        body = json.dumps(base64.b64encode(data).decode("ascii"))
    return f"dense<{t}>{body}"


def format_attr(v) -> str:
    if type(v) is tuple and all(type(x) is int for x in v):  # the common case (shapes, axes), fast
        return "[" + ", ".join(map(str, v)) + "]"
    if v is None:
        return "none"
    if isinstance(v, DType):
        return v.name
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, np.ndarray):
        return format_array(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
        return format_scalar(v)
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def format_name(name: str) -> str:
    return name if SIMPLE_NAME.match(name) else json.dumps(name)


def print_graph(graph: Graph, annotate=None) -> str:
    """The canonical text of ``graph``. ``annotate(node) -> str`` may append a comment per node."""
    # Compiling a graph prints it (the text keys the caches), so this loop is kept lean: the memo
    # tables are keyed by what hashes in C (a type by its id, a location by its file and line), not by
    # the dataclasses themselves (their hashes are Python functions).
    names: dict[Value, str] = {}
    type_text: dict = {}  # id(TensorType) -> its text (many values share a type; the graph keeps it alive)
    loc_text: dict = {}   # (file, line) -> ' loc("file":line)'

    def name(v: Value) -> str:
        try:
            return names[v]
        except KeyError:
            raise ValueError(f"value {v!r} is used before it is defined (graph {graph.name})") from None

    def define(v: Value) -> str:
        label = names[v] = f"%{len(names)}"
        t = v.type
        text = type_text.get(id(t))
        if text is None:
            text = type_text[id(t)] = str(t)
        return f"{label}: {text}"

    def typed(v: Value) -> str:
        t = v.type
        text = type_text.get(id(t))
        if text is None:
            text = type_text[id(t)] = str(t)
        return text

    params = ", ".join([define(v) for v in graph.inputs])
    results = ", ".join([typed(v) for v in graph.outputs])
    lines = [f"graph {format_name(graph.name)}({params}) -> ({results}) {{"]
    append = lines.append
    for node in graph.nodes:
        try:
            args = ", ".join([names[v] for v in node.inputs])
        except KeyError:
            args = ", ".join([name(v) for v in node.inputs])  # raises, naming the value
        outputs = node.outputs
        if len(outputs) == 1:
            outs = define(outputs[0])
        else:
            outs = ", ".join([define(v) for v in outputs])
        text = f"  {outs} = {node.op}({args})"
        attrs = node.attrs
        if attrs:
            text += " {" + ", ".join([f"{k}={format_attr(attrs[k])}" for k in sorted(attrs)]) + "}"
        loc = node.loc
        if loc is not None:
            where_key = (loc.file, loc.line)
            where = loc_text.get(where_key)
            if where is None:
                where = loc_text[where_key] = f" loc({json.dumps(loc.file)}:{loc.line})"
            text += where
        if annotate is not None:
            note = annotate(node)
            if note:
                text += f"  # {note}"
        append(text)
    lines.append("  return " + ", ".join([name(v) for v in graph.outputs]) if graph.outputs else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"

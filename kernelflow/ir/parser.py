"""Parse the text form of a Graph (see printer.py and docs/ir.md) back into a Graph.

Any malformed text raises ParseError with the line and column; the parser never fails otherwise.
Node types are re-inferred with the shape rules and must equal the declared types, so a parsed graph
is well typed. ``# comments`` run to the end of a line and are ignored.
"""
from __future__ import annotations

import base64
import binascii
import json
import re

import numpy as np

from . import primitive
from .builder import GraphBuilder, canonical_attr
from .graph import Graph, SourceLoc, Value
from .types import TensorType, dtype_from_name


class ParseError(ValueError):
    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<number>-?(?:inf\b|nan\b|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<arrow>->)
  | (?P<punct>[()\[\]{},:=<>])
""", re.VERBOSE)


class _Tok:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind, text, line, col):
        self.kind, self.text, self.line, self.col = kind, text, line, col


def _tokenize(text: str) -> list[_Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        kind = m.lastgroup
        if kind == "nl":
            toks.append(_Tok("nl", "\n", line, pos - line_start + 1))
            line, line_start = line + 1, m.end()
        elif kind != "ws":
            toks.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    toks.append(_Tok("eof", "", line, pos - line_start + 1))
    return toks


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, skip_nl=True) -> _Tok:
        if skip_nl:
            while self.toks[self.i].kind == "nl":
                self.i += 1
        return self.toks[self.i]

    def next(self, skip_nl=True) -> _Tok:
        t = self.peek(skip_nl)
        if t.kind != "eof":
            self.i += 1
        return t

    def error(self, msg: str, tok: _Tok | None = None) -> ParseError:
        tok = tok or self.peek(False)
        found = repr(tok.text) if tok.kind != "eof" else "end of text"
        return ParseError(f"{msg}, found {found}", tok.line, tok.col)

    def expect(self, text: str, skip_nl=True) -> _Tok:
        t = self.peek(skip_nl)
        if t.text != text or t.kind == "string":
            raise self.error(f"expected {text!r}", t)
        return self.next(skip_nl)

    def expect_kind(self, kind: str, what: str) -> _Tok:
        t = self.peek()
        if t.kind != kind:
            raise self.error(f"expected {what}", t)
        return self.next()

    def accept(self, text: str, skip_nl=True) -> bool:
        t = self.peek(skip_nl)
        if t.text == text and t.kind != "string":
            self.next(skip_nl)
            return True
        return False

    # -- grammar -------------------------------------------------------------------------------
    def int_literal(self) -> int:
        t = self.expect_kind("number", "an integer")
        if not re.fullmatch(r"-?\d+", t.text):
            raise self.error("expected an integer", t)
        return int(t.text)

    def type_(self) -> TensorType:
        t = self.expect_kind("ident", "a type such as f32[2,3]")
        try:
            dtype = dtype_from_name(t.text)
        except TypeError as e:
            raise ParseError(str(e), t.line, t.col) from None
        self.expect("[")
        dims = []
        if not self.accept("]"):
            while True:
                tok = self.peek()
                d = self.int_literal()
                if d < 0:
                    raise ParseError(f"dimension {d} is negative", tok.line, tok.col)
                dims.append(d)
                if self.accept("]"):
                    break
                self.expect(",")
        return TensorType(dtype, tuple(dims))

    def string(self) -> str:
        t = self.expect_kind("string", "a string")
        try:
            return json.loads(t.text)
        except ValueError:
            raise ParseError("malformed string", t.line, t.col) from None

    def scalar(self, tok: _Tok):
        text = tok.text
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        return float(text)

    def dense(self, tok: _Tok) -> np.ndarray:
        self.expect("<")
        t = self.type_()
        self.expect(">")
        try:
            np_dtype = t.dtype.np_dtype
        except TypeError as e:
            raise ParseError(str(e), tok.line, tok.col) from None
        if self.peek().kind == "string":
            st = self.peek()
            try:
                data = base64.b64decode(self.string(), validate=True)
            except (binascii.Error, ValueError):
                raise ParseError("malformed base64 data", st.line, st.col) from None
            if len(data) != t.size * np_dtype.itemsize:
                raise ParseError(f"dense data has {len(data)} bytes, {t} needs "
                                 f"{t.size * np_dtype.itemsize}", st.line, st.col)
            arr = np.frombuffer(data, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
        else:
            self.expect("[")
            items = []
            if not self.accept("]"):
                while True:
                    it = self.next()
                    if it.kind == "number":
                        items.append(self.scalar(it))
                    elif it.kind == "ident" and it.text in ("true", "false"):
                        items.append(it.text == "true")
                    else:
                        raise self.error("expected a number", it)
                    if self.accept("]"):
                        break
                    self.expect(",")
            if len(items) != t.size:
                raise ParseError(f"dense literal has {len(items)} elements, {t} needs {t.size}",
                                 tok.line, tok.col)
            try:
                arr = np.array(items, dtype=np_dtype) if items else np.zeros(0, np_dtype)
            except (OverflowError, ValueError) as e:
                raise ParseError(f"bad dense literal: {e}", tok.line, tok.col) from None
        return canonical_attr(arr.reshape(t.shape))

    def attr_value(self):
        t = self.next()
        if t.kind == "number":
            return self.scalar(t)
        if t.kind == "string":
            self.i -= 1
            return self.string()
        if t.text == "[" and t.kind == "punct":
            items = []
            if not self.accept("]"):
                while True:
                    items.append(self.attr_value())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return tuple(items)
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return t.text == "true"
            if t.text == "none":
                return None
            if t.text == "dense":
                return self.dense(t)
            try:
                return dtype_from_name(t.text)
            except TypeError:
                raise ParseError(f"unknown attribute value {t.text!r}", t.line, t.col) from None
        raise self.error("expected an attribute value", t)

    def graph(self) -> Graph:
        self.expect("graph")
        t = self.peek()
        name = self.string() if t.kind == "string" else self.expect_kind("ident", "a graph name").text
        b = GraphBuilder(name)
        env: dict[str, Value] = {}

        def define(tok: _Tok, v: Value):
            if tok.text in env:
                raise ParseError(f"value {tok.text} is defined twice", tok.line, tok.col)
            env[tok.text] = v

        self.expect("(")
        if not self.accept(")"):
            while True:
                vt = self.expect_kind("value", "an input value such as %0")
                self.expect(":")
                define(vt, b.add_input(self.type_()))
                if self.accept(")"):
                    break
                self.expect(",")
        self.expect("->")
        self.expect("(")
        result_types = []
        if not self.accept(")"):
            while True:
                result_types.append(self.type_())
                if self.accept(")"):
                    break
                self.expect(",")
        self.expect("{")
        while self.peek().text != "return":
            self.node(b, env, define)
        ret = self.next()
        outputs = []
        if self.peek(skip_nl=False).kind == "value":
            while True:
                vt = self.expect_kind("value", "a value")
                if vt.text not in env:
                    raise ParseError(f"value {vt.text} is not defined", vt.line, vt.col)
                outputs.append(env[vt.text])
                if not self.accept(",", skip_nl=False):
                    break
        if [v.type for v in outputs] != result_types:
            raise ParseError(f"returned types ({', '.join(str(v.type) for v in outputs)}) differ from the "
                             f"declared result types ({', '.join(map(str, result_types))})", ret.line, ret.col)
        self.expect("}")
        if self.peek().kind != "eof":
            raise self.error("expected end of text after the graph")
        return b.finish(outputs)

    def node(self, b: GraphBuilder, env, define):
        first = self.peek()
        results = []
        while True:
            vt = self.expect_kind("value", "a result value such as %3 (or 'return')")
            self.expect(":")
            results.append((vt, self.type_()))
            if not self.accept(","):
                break
        self.expect("=")
        op_tok = self.expect_kind("ident", "an op name")
        if not primitive.is_primitive(op_tok.text):
            raise ParseError(f"unknown op {op_tok.text!r}", op_tok.line, op_tok.col)
        self.expect("(")
        args = []
        if not self.accept(")"):
            while True:
                at = self.expect_kind("value", "an operand value")
                if at.text not in env:
                    raise ParseError(f"value {at.text} is used before it is defined", at.line, at.col)
                args.append(env[at.text])
                if self.accept(")"):
                    break
                self.expect(",")
        attrs = {}
        if self.accept("{", skip_nl=False):
            if not self.accept("}"):
                while True:
                    kt = self.expect_kind("ident", "an attribute name")
                    if kt.text in attrs:
                        raise ParseError(f"attribute {kt.text} given twice", kt.line, kt.col)
                    self.expect("=")
                    attrs[kt.text] = self.attr_value()
                    if self.accept("}"):
                        break
                    self.expect(",")
        loc = None
        if self.accept("loc", skip_nl=False):
            self.expect("(")
            file = self.string()
            self.expect(":")
            loc = SourceLoc(file, self.int_literal())
            self.expect(")")
        end = self.peek(skip_nl=False)
        if end.kind not in ("nl", "eof"):
            raise self.error("expected the end of the line")
        try:
            with b.at(loc):
                node = b.emit_node(op_tok.text, *args, **attrs)
        except Exception as e:  # noqa: BLE001 - any rejection of the node is a parse error here
            raise ParseError(f"invalid {op_tok.text} node: {e}", first.line, first.col) from None
        if len(node.outputs) != len(results):
            raise ParseError(f"{op_tok.text} has {len(node.outputs)} results, the text names {len(results)}",
                             first.line, first.col)
        for (vt, declared), v in zip(results, node.outputs):
            if declared != v.type:
                raise ParseError(f"{vt.text} is declared {declared} but {op_tok.text} gives {v.type}",
                                 vt.line, vt.col)
            define(vt, v)


def parse(text: str) -> Graph:
    """Parse the text of one graph. Raises ParseError naming line and column on malformed text."""
    if not isinstance(text, str):
        raise TypeError(f"parse takes a str, got {type(text).__name__}")
    return _Parser(text).graph()

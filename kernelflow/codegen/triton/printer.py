"""Print a Kernel description (kernelflow/codegen/kernel.py) as a readable ``@triton.jit`` function.

Two shapes of kernel, and why:

* **pointwise** (no inner dims): a 1-D grid of programs, each owning ``BLOCK`` consecutive flat indices
  of the outer domain with a mask for the tail. The per-dim indices are recovered with ``//`` and ``%``
  only where an index map needs them (a same-shape chain reads ``b0 + f`` directly).
* **row** (reductions, softmax, layer_norm, cross-entropy and their gradients): one program per row
  (outer index). When the row fits in ``ROW_BLOCK_MAX`` elements the whole row is one block: every
  element value is computed once and stays in registers across the phases (max, sum of exp, store).
  Otherwise each phase is a loop over the row in ``BLOCK``-sized chunks with vector accumulators,
  reduced once after the loop; element values a later phase needs are recomputed from global memory
  (a GPU recomputes an ``exp`` faster than it spills and reloads a row).

Values keep the IR dtypes (the IR's binary ops have identical operand types, so Triton's promotion
rules never apply); literals are typed with ``tl.full``; bool buffers are passed as u8 (Triton's
``*i1`` is stored as a byte anyway) and converted on load and store. Shapes are baked into the source:
a kernel is compiled per shape signature, like the numba backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...ir import primitive
from ...ir.types import DType
from ..kernel import Affine, Kernel, affine_text, phase_roots, row_deps

ROW_BLOCK_MAX = 4096          # largest row kept in registers as one block
ROW_LOOP_BLOCK = 1024         # chunk of a row processed per loop iteration otherwise
POINTWISE_BLOCKS = (512, 1024, 2048)   # candidate BLOCK sizes for pointwise kernels (autotuned on a GPU)
INT32_LIMIT = 2 ** 31 - 1

TL_DTYPE = {"f16": "tl.float16", "bf16": "tl.bfloat16", "f32": "tl.float32", "f64": "tl.float64",
            "i8": "tl.int8", "i32": "tl.int32", "i64": "tl.int64", "u8": "tl.uint8", "u32": "tl.uint32",
            "bool": "tl.int1"}
# Triton signature type of a buffer of each dtype (bool buffers travel as bytes).
POINTER_TYPE = {"f16": "*fp16", "bf16": "*bf16", "f32": "*fp32", "f64": "*fp64", "i8": "*i8",
                "i32": "*i32", "i64": "*i64", "u8": "*u8", "u32": "*u32", "bool": "*u8"}

HEADER = '''import triton
import triton.language as tl
from kernelflow.codegen.triton.device import *  # noqa: F401,F403 - kf_* helpers and libdevice
'''


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def literal(value, dtype: DType, shape: str = "[]") -> str:
    """A typed constant (a scalar, or a block of ``shape``)."""
    if dtype.name == "bool":
        text = "1" if value else "0"
    elif dtype.is_float:
        v = float(value)
        text = ('float("inf")' if v == math.inf else 'float("-inf")' if v == -math.inf
                else 'float("nan")' if v != v else repr(v))
    else:
        text = str(int(value))
    return f"tl.full({shape}, {text}, {TL_DTYPE[dtype.name]})"


def reduce_identity(kind: str, dtype: DType):
    """The identity of a reduction as a Python value (sum 0, max -inf / min of the dtype, ...)."""
    if kind == "sum":
        return 0
    if dtype.name == "bool":
        return kind != "max"
    if dtype.is_float:
        return -math.inf if kind == "max" else math.inf
    info = np.iinfo(dtype.np_dtype)
    return int(info.min) if kind == "max" else int(info.max)


# Ops Triton computes exactly in float16 (one correctly rounded result, as numpy's half type gives);
# every other op on a float16 value, and every bfloat16 op but select and cast, is computed in float32
# and rounded once, as numpy/ml_dtypes do. (The result is the same as a native bfloat16 op; Triton's
# CPU interpreter moreover stores bfloat16 as raw uint16 and would add the bit patterns.)
F16_NATIVE_OPS = frozenset({"neg", "abs", "add", "sub", "mul", "maximum", "minimum", "eq", "ne", "lt", "le",
                            "gt", "ge", "select", "cast", "sign", "floor"})
BF16_NATIVE_OPS = frozenset({"select", "cast"})


def op_text(e, args: list[str], arg_dtypes=()) -> str:
    """The Triton expression of an elementwise op, from the primitive's ``codegen["triton"]`` template."""
    template = primitive.get(e.op).codegen["triton"]
    half = [d for d in arg_dtypes if d.name in ("f16", "bf16")]
    native = F16_NATIVE_OPS if half and half[0].name == "f16" else BF16_NATIVE_OPS
    if half and e.op not in native:
        if e.dtype.name == "bool":  # a comparison: compare the widened values
            wide = [f"{a}.to(tl.float32)" if d.name in ("f16", "bf16") else a for a, d in zip(args, arg_dtypes)]
            return template.format(*wide, **e.attrs)
        wide = [f"{a}.to(tl.float32)" if d.name in ("f16", "bf16") else a for a, d in zip(args, arg_dtypes)]
        return f"{template.format(*wide, **e.attrs)}.to({TL_DTYPE[half[0].name]}, fp_downcast_rounding=\"rtne\")"
    return template.format(*args, **e.attrs)


def index_decomposition(flat: str, dims: tuple[int, ...], names: list[str]) -> list[str]:
    """Lines that split a row-major flat index over ``dims`` into per-dim indices ``names``."""
    lines = []
    stride = 1
    strides = []
    for d in reversed(dims):
        strides.append(stride)
        stride *= d
    strides.reverse()
    for k, (d, s, name) in enumerate(zip(dims, strides, names)):
        text = flat if s == 1 else f"({flat} // {s})"
        if k > 0:
            text = f"{text} % {d}"
        lines.append(f"{name} = {text}")
    return lines


@dataclass
class PrintedKernel:
    """The printed source of one kernel and what a launcher needs to know about it."""

    name: str
    source: str                  # the function (decorated), without the module header
    kind: str                    # pointwise, row, matmul, random_bits, ...
    signature: dict              # Triton signature: param name -> "*fp32" / "i32" / "constexpr"
    grid: tuple                  # grid dims; the string "BLOCK" in a dim means cdiv(n, BLOCK)
    work: int                    # elements the grid covers (for pointwise: cdiv by BLOCK)
    block_choices: tuple         # candidate BLOCK sizes (autotuned on a GPU)
    default_block: int           # BLOCK used without autotuning (the interpreter, AOT)
    constexprs: dict = field(default_factory=dict)   # other constexprs (matmul tiles)
    num_warps: int = 4
    num_stages: int = 2
    note: str = ""


def wide_indices(kernel: Kernel) -> bool:
    """Whether any flat index or offset may exceed int32 (then indices are computed in int64)."""
    biggest = max([p.size for p in kernel.params] + [kernel.outer_size * kernel.inner_size])
    return biggest > INT32_LIMIT


class _Printer:
    def __init__(self, kernel: Kernel):
        self.k = kernel
        self.row = bool(kernel.inner) or kernel.kind == "reduction"
        self.lines: list[str] = []
        self.outer_names = [f"o{i}" for i in range(len(kernel.outer))]
        self.inner_names = [f"j{i}" for i in range(len(kernel.inner))]
        self.index_names = self.outer_names + self.inner_names
        n_outer = len(kernel.outer)
        # dims whose index is a vector (one lane per element): the outer dims of a pointwise kernel,
        # the inner dims of a row kernel
        self.vector_dims = (range(n_outer, n_outer + len(kernel.inner)) if self.row else range(n_outer))
        self.inner_size = kernel.inner_size
        self.single_block = self.row and kernel.inner_size <= ROW_BLOCK_MAX
        self.row_done: set[int] = set()
        self.overrides: dict[int, str] = {}   # expr id -> text that replaces it (a matmul epilogue's acc)

    def emit(self, depth: int, text: str):
        self.lines.append("    " * depth + text)

    @staticmethod
    def var(i: int) -> str:
        return f"v{i}"

    def comment(self, i: int) -> str:
        label = self.k.exprs[i].label
        return f"  # {label}" if label else ""

    def is_vector(self, a: Affine) -> bool:
        return a.uses(self.vector_dims)

    # -- expressions ------------------------------------------------------------------------------
    def expr_text(self, i: int) -> str:
        e = self.k.exprs[i]
        if i in self.overrides:
            return self.overrides[i]
        if e.kind == "load":
            p = self.k.params[e.buffer]
            ptr = f"{p.name} + {affine_text(e.offset, self.index_names)}"
            text = (f"tl.load({ptr}, mask=mask, other=0)" if self.is_vector(e.offset)
                    else f"tl.load({ptr})")
            return f"({text} != 0)" if p.dtype.name == "bool" else text
        if e.kind == "literal":
            return literal(e.value, e.dtype)
        if e.kind == "index":
            if not any(e.offset.coeffs):
                return literal(e.offset.const, e.dtype)
            return f"({affine_text(e.offset, self.index_names)}).to({TL_DTYPE[e.dtype.name]})"
        return op_text(e, [self.var(a) for a in e.args], [self.k.exprs[a].dtype for a in e.args])

    def emit_row(self, i: int, depth: int):
        """A row-level value (once per program): its row-level arguments first."""
        if i in self.row_done:
            return
        e = self.k.exprs[i]
        assert not e.inner and e.kind != "reduce", f"{e.label} is not available at row level yet"
        for a in e.args:
            self.emit_row(a, depth)
        self.emit(depth, f"{self.var(i)} = {self.expr_text(i)}{self.comment(i)}")
        self.row_done.add(i)

    def emit_elem(self, i: int, depth: int, done: set[int]):
        """An element-level value (a vector over the block): its arguments first."""
        e = self.k.exprs[i]
        if i in done:
            return
        if not e.inner:
            if e.kind != "reduce":
                self.emit_row(i, depth)
            return
        for a in e.args:
            self.emit_elem(a, depth, done)
        self.emit(depth, f"{self.var(i)} = {self.expr_text(i)}{self.comment(i)}")
        done.add(i)

    def store_line(self, s) -> str:
        p = self.k.params[s.buffer]
        value = self.var(s.expr)
        if p.dtype.name == "bool":
            value = f"{value}.to(tl.uint8)"
        ptr = f"{p.name} + {affine_text(s.offset, self.index_names)}"
        mask = ", mask=mask" if self.is_vector(s.offset) else ""
        if not self.row and not mask:  # a one-element output: store from the block's first lane
            ptr, mask = f"{ptr} + tl.zeros_like(f)", ", mask=mask"
        return f"tl.store({ptr}, {value}{mask})  # store {s.label}"

    # -- kernels ----------------------------------------------------------------------------------
    def header(self, signature_extra: str):
        k = self.k
        args = ", ".join(p.name for p in k.params)
        self.emit(0, "@triton.jit")
        self.emit(0, f"def {k.name}({args}, {signature_extra}):")
        shape = (f"rows {list(k.outer)} x {list(k.inner)}, {k.phases} phase(s)" if self.row
                 else f"domain {list(k.outer)}")
        self.emit(1, f'"""{"row" if self.row else "pointwise"} kernel over {shape}; '
                     f'reads {", ".join(p.name + "=" + p.label for p in k.inputs()) or "nothing"}; '
                     f'writes {", ".join(p.name + "=" + p.label for p in k.outputs())}."""')
        for line in k.nodes:
            self.emit(1, f"# {line}")

    def print_pointwise(self):
        k = self.k
        self.header("BLOCK: tl.constexpr")
        pid = "tl.program_id(0).to(tl.int64)" if wide_indices(k) else "tl.program_id(0)"
        self.emit(1, f"f = {pid} * BLOCK + tl.arange(0, BLOCK)  # flat index over the domain")
        self.emit(1, f"mask = f < {k.outer_size}")
        self.emit_indices(1, "f", k.outer, self.outer_names)
        self.pointwise_body(1)

    def pointwise_body(self, depth: int):
        """Every output of a pointwise kernel at the indices ``f`` (and ``mask``) already defined."""
        done: set[int] = set()
        for s in self.k.stores:
            self.emit_elem(s.expr, depth, done)
        for s in self.k.stores:
            self.emit(depth, self.store_line(s))

    def emit_indices(self, depth: int, flat: str, dims, names):
        used = self.used_dims()
        if len(dims) == 1:
            if names[0] in used:
                self.emit(depth, f"{names[0]} = {flat}")
            return
        for line, name in zip(index_decomposition(flat, tuple(dims), names), names):
            if name in used:
                self.emit(depth, line)

    def used_dims(self) -> set[str]:
        offsets = [e.offset for e in self.k.exprs if e.offset is not None] + [s.offset for s in self.k.stores]
        return {n for a in offsets for c, n in zip(a.coeffs, self.index_names) if c}

    def print_row(self):
        k = self.k
        block = next_power_of_two(self.inner_size) if self.single_block else ROW_LOOP_BLOCK
        self.block = block
        self.header("BLOCK: tl.constexpr")
        wide = wide_indices(k)
        self.emit(1, f"row = tl.program_id(0){'.to(tl.int64)' if wide else ''}  # one program per row")
        if k.outer:
            self.emit_indices(1, "row", k.outer, self.outer_names)
        if self.single_block:
            self.emit(1, f"j = tl.arange(0, BLOCK)  # the whole row ({self.inner_size} elements) as one block")
            self.emit(1, f"mask = j < {self.inner_size}")
            self.emit_indices(1, "j", k.inner, self.inner_names)
        done: set[int] = set()
        for p in range(k.phases):
            roots = phase_roots(k.exprs, k.stores, p)
            reductions = [e for e in k.exprs if e.kind == "reduce" and e.phase == p]
            stores = [s for s in k.stores if s.inner and s.phase == p]
            self.emit(1, f"# phase {p}: " + ", ".join(
                [f"{e.reduce} for {e.label}" for e in reductions] + [f"store {s.label}" for s in stores]))
            for i in row_deps(self.k, roots):
                self.emit_row(i, 1)
            if self.single_block:
                for r in roots:
                    self.emit_elem(r, 1, done)
                for e in reductions:
                    self.emit(1, f"{self.var(e.id)} = {self.reduce_text(e)}{self.comment(e.id)}")
                for s in stores:
                    self.emit(1, self.store_line(s))
            else:
                for e in reductions:
                    self.emit(1, f"acc{e.id} = {literal(reduce_identity(e.reduce, e.dtype), e.dtype, '[BLOCK]')}")
                self.emit(1, f"for start in range(0, {self.inner_size}, BLOCK):")
                self.emit(2, "j = start + tl.arange(0, BLOCK)")
                self.emit(2, f"mask = j < {self.inner_size}")
                self.emit_indices(2, "j", k.inner, self.inner_names)
                loop_done: set[int] = set()
                for r in roots:
                    self.emit_elem(r, 2, loop_done)
                for e in reductions:
                    x = self.masked(e)
                    acc = f"acc{e.id}"
                    if e.reduce == "sum":
                        self.emit(2, f"{acc} = {acc} + {x}")
                    else:
                        fn = "kf_maximum" if e.reduce == "max" else "kf_minimum"
                        self.emit(2, f"{acc} = {fn}({acc}, {x})")
                for s in stores:
                    self.emit(2, self.store_line(s))
                for e in reductions:
                    fn = {"sum": "kf_reduce_sum", "max": "kf_reduce_max", "min": "kf_reduce_min"}[e.reduce]
                    self.emit(1, f"{self.var(e.id)} = {fn}(acc{e.id}){self.comment(e.id)}")
            self.row_done.update(e.id for e in reductions)
        for s in k.stores:
            if not s.inner:
                self.emit_row(s.expr, 1)
                self.emit(1, self.store_line(s))

    def masked(self, e) -> str:
        """The reduction operand with masked-off lanes set to the reduction's identity."""
        x = self.k.exprs[e.args[0]]
        ident = literal(reduce_identity(e.reduce, e.dtype), e.dtype)
        return f"tl.where(mask, {self.var(x.id)}, {ident})"

    def reduce_text(self, e) -> str:
        fn = {"sum": "kf_reduce_sum", "max": "kf_reduce_max", "min": "kf_reduce_min"}[e.reduce]
        x = self.k.exprs[e.args[0]]
        if not x.inner:
            # the operand does not vary along the row: broadcast it to the block before reducing
            ident = literal(reduce_identity(e.reduce, e.dtype), e.dtype)
            zeros = literal(0, e.dtype, "[BLOCK]")
            return f"{fn}(tl.where(mask, {zeros} + {self.var(x.id)}, {ident}))"
        return f"{fn}({self.masked(e)})"


def print_kernel(kernel: Kernel) -> PrintedKernel:
    """The ``@triton.jit`` source of ``kernel`` and its launch description."""
    p = _Printer(kernel)
    signature = {prm.name: POINTER_TYPE[prm.dtype.name] for prm in kernel.params}
    signature["BLOCK"] = "constexpr"
    if p.row:
        p.print_row()
        rows = kernel.outer_size
        return PrintedKernel(kernel.name, "\n".join(p.lines) + "\n", "row", signature, (rows,), rows,
                             (p.block,), p.block, num_warps=4 if p.block <= 1024 else 8)
    p.print_pointwise()
    n = kernel.outer_size
    default = min(1024, next_power_of_two(n))
    choices = tuple(b for b in POINTWISE_BLOCKS if b <= max(default, POINTWISE_BLOCKS[0])) or (default,)
    return PrintedKernel(kernel.name, "\n".join(p.lines) + "\n", "pointwise", signature, ("BLOCK",), n,
                         choices, default)

"""Print a Kernel description as readable numba source.

Choices, and why:

* Every buffer is a flat C-contiguous 1-D array and every offset a constant-folded affine expression
  of the loop indices, so the innermost loop is a unit-stride loop LLVM vectorizes (the shapes are
  baked into the source: a kernel is compiled for one shape signature).
* ``@njit`` with an explicit signature compiles eagerly (at import, or from numba's disk cache), with
  ``error_model="numpy"`` (x/0 is inf, no Python exception checks in the loops), ``boundscheck=False``
  and ``nogil=True``.
* ``fastmath``: off for pointwise kernels, so results are IEEE exact like the interpreter (NaN and
  inf behave, no reassociation). Kernels with float reductions get ``fastmath={"reassoc"}`` only:
  that lets LLVM split a sum into vector lanes (the only way a float sum vectorizes); NaN/inf
  semantics (``nnan``/``ninf``) stay off so max/min still propagate NaN. Max/min reductions
  accumulate with ``kf_max_acc``/``kf_min_acc`` (the ``llvm.maximum``/``minimum`` intrinsics, which
  LLVM vectorizes; a select-based max does not).
* ``prange`` over the outermost loop only when the loop nest does at least ``PARALLEL_MIN_WORK``
  element visits: below that, starting threads costs more than it saves. A flat pointwise loop is cut
  into ``CHUNK`` sized blocks so each thread runs a long contiguous inner loop.
* Buffer indices are printed as ``np.uint64(...)`` (see ``index``): no negative-index wraparound.
* Offsets are relative to each buffer's lowest touched element (``kernel.param_bases``; the driver
  passes ``buf[base:]``): kernels reading different slices of one buffer print the same loop nest,
  which the module compiles once.
* Each scalar result is converted to its node's dtype (``np.float32(...)``): numba promotes
  f32 op f64-literal to f64, which would change results and block f32 vectorization. Not where
  numba's result has that dtype already (``+ - *`` and negation of floats of the result's dtype:
  every kernel variable holds its expr's dtype): every call numba types costs compile time.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ...ir import primitive
from ...ir.types import DType
from ...passes.fusion import CHEAP_OPS as _CHEAP
from ..kernel import Affine, Kernel, affine_text, param_bases, phase_roots, row_deps

# Measured on the 2-core machines: a pointwise kernel over 300K floats takes 0.12 ms serial; the same
# with prange under load (other processes running) 0.3 ms with passive OpenMP waiting and 8 ms with
# spinning waits. Threads start to pay around a millisecond of serial work.
PARALLEL_MIN_WORK = 1 << 20
CHUNK = 1 << 14
SCRATCH_BLOCKS = 64  # a parallel row kernel with row scratch runs its rows in this many blocks

SCALAR = {"f32": "np.float32", "f64": "np.float64", "i8": "np.int8", "i32": "np.int32", "i64": "np.int64",
          "u8": "np.uint8", "u32": "np.uint32", "bool": "np.bool_"}
NUMBA_TYPE = {"f32": "float32", "f64": "float64", "i8": "int8", "i32": "int32", "i64": "int64",
              "u8": "uint8", "u32": "uint32", "bool": "boolean"}


def signature(kernel: Kernel) -> str:
    """Inputs read-only (``RO_f32`` from the helpers), outputs writable, all flat and contiguous."""
    return "nt.void(" + ", ".join(
        f"RO_{p.dtype.name}" if p.role == "in" else f"nt.{NUMBA_TYPE[p.dtype.name]}[::1]"
        for p in kernel.params) + ")"


def literal(value, dtype: DType) -> str:
    if dtype.name == "bool":
        return "True" if value else "False"
    if dtype.is_float:
        v = float(value)
        text = "np.inf" if v == math.inf else "-np.inf" if v == -math.inf else "np.nan" if v != v else repr(v)
        return text if dtype.name == "f64" else f"{SCALAR[dtype.name]}({text})"
    return f"{SCALAR[dtype.name]}({int(value)})"


def index(a: Affine, names: list[str]) -> str:
    """An element index, as unsigned: numba wraps a signed index that may be negative (``i < 0``:
    ``i + n``) and that select on every load keeps LLVM from vectorizing whenever it cannot prove the
    index non-negative (a row range ``lo..hi``, a prange body: 3-4x slower layer_norm). Offsets are
    never negative, so the cast is free and exact."""
    return f"np.uint64({affine_text(a, names)})"


def reduce_init(kind: str, dtype: DType) -> str:
    if kind == "sum":
        return literal(0, dtype)
    if dtype.name == "bool":
        return "False" if kind == "max" else "True"
    if dtype.is_float:
        return literal(-math.inf if kind == "max" else math.inf, dtype)
    info = np.iinfo(dtype.np_dtype)
    return literal(info.min if kind == "max" else info.max, dtype)


def _cast(text: str, dtype: DType) -> str:
    return text if dtype.name == "bool" else f"{SCALAR[dtype.name]}({text})"


# Ops whose numba result already has the operands' float dtype (numpy's rules: f32 + f32 is f32), so
# the conversion to the node's dtype is left out: each call numba types costs compile time.
_SAME_FLOAT_OPS = frozenset({"add", "sub", "mul", "neg"})


def op_text(e, args: list[str], arg_dtypes=None) -> str:
    template = primitive.get(e.op).codegen["numba"]
    attrs = {k: v for k, v in e.attrs.items()}
    text = template.format(*args, **attrs)
    if e.op == "cast":
        return text
    if e.op in _SAME_FLOAT_OPS and e.dtype.is_float and arg_dtypes and all(d == e.dtype for d in arg_dtypes):
        return text
    return _cast(text, e.dtype)


class _Printer:
    def __init__(self, kernel: Kernel):
        self.k = kernel
        self.lines: list[str] = []
        n_outer, n_inner = len(kernel.outer), len(kernel.inner)
        self.outer_names = [f"o{i}" for i in range(n_outer)]
        self.inner_names = [f"j{i}" for i in range(n_inner)]
        self.index_names = self.outer_names + self.inner_names
        self.row_done: set[int] = set()
        self.late_stash: list[int] = []
        self.bases = param_bases(kernel)  # the driver passes each buffer from its base on

    def element(self, buffer: int, offset: Affine) -> str:
        """``b3[np.uint64(...)]``: element ``offset`` of param ``buffer``, relative to its base."""
        relative = offset.shift(-self.bases[buffer])
        return f"{self.k.params[buffer].name}[{index(relative, self.index_names)}]"

    def emit(self, depth: int, text: str):
        self.lines.append("    " * depth + text)

    def var(self, i: int) -> str:
        return f"v{i}"

    # -- expressions --------------------------------------------------------------------------
    def expr_text(self, i: int) -> str:
        e = self.k.exprs[i]
        if e.kind == "load":
            return self.element(e.buffer, e.offset)
        if e.kind == "literal":
            return literal(e.value, e.dtype)
        if e.kind == "index":
            return _cast(affine_text(e.offset, self.index_names), e.dtype)
        return op_text(e, [self.var(a) for a in e.args], [self.k.exprs[a].dtype for a in e.args])

    def comment(self, i: int) -> str:
        return f"  # {self.k.exprs[i].label}" if self.k.exprs[i].label else ""

    def emit_row(self, i: int, depth: int):
        """Emit a row-level expr (and its row-level args) once per row."""
        if i in self.row_done:
            return
        e = self.k.exprs[i]
        assert not e.inner and e.kind != "reduce", f"{e} is not available at row level here"
        for a in e.args:
            self.emit_row(a, depth)
        self.emit(depth, f"{self.var(i)} = {self.expr_text(i)}{self.comment(i)}")
        self.row_done.add(i)

    def emit_elem(self, i: int, depth: int, phase: int, done: set[int]):
        if i in done or not self.k.exprs[i].inner:
            return
        stash_phase = self.k.stash.get(i)
        if stash_phase is not None and stash_phase < phase:
            self.emit(depth, f"{self.var(i)} = {self.stash_place(i)}{self.comment(i)}")
            done.add(i)
            return
        for a in self.k.exprs[i].args:
            self.emit_elem(a, depth, phase, done)
        self.emit(depth, f"{self.var(i)} = {self.expr_text(i)}{self.comment(i)}")
        if stash_phase == phase:
            self.late_stash.append(i)  # written after every load of this iteration (in-place safety)
        done.add(i)

    def stash_place(self, i: int) -> str:
        """Where a stashed value lives: the output row it borrows, or the row scratch ``s<i>``."""
        k = self.k
        if i in k.stash_out:
            st = k.stores[k.stash_out[i]]
            return self.element(st.buffer, st.offset)
        return f"s{i}[np.uint64({self.inner_flat()})]"

    def inner_flat(self) -> str:
        strides, s = [], 1
        for d in reversed(self.k.inner):
            strides.append(s)
            s *= d
        strides.reverse()
        return affine_text(Affine(0, tuple(strides)), self.inner_names)

    # -- loop nest ------------------------------------------------------------------------------
    def print(self) -> tuple[str, bool]:
        k = self.k
        parallel = k.work >= PARALLEL_MIN_WORK and bool(k.outer) and (k.outer[0] >= 2 or len(k.outer) > 1)
        depth = 1
        args = ", ".join(p.name for p in k.params)
        self.emit(0, f"def {k.name}({args}):")
        doc = (f'"""{k.kind} kernel: outer {list(k.outer)}, inner {list(k.inner)}, {k.phases} phase(s); '
               f'reads {", ".join(p.name + "=" + p.label for p in k.inputs()) or "nothing"}; '
               f'writes {", ".join(p.name + "=" + p.label for p in k.outputs())}."""')
        self.emit(1, doc)
        for line in k.nodes:
            self.emit(1, f"# {line}")
        if self.is_column_reduction():
            return self.print_columns(parallel), parallel
        chunked = parallel and len(k.outer) == 1 and not k.inner and k.outer[0] > CHUNK
        scratch = [i for i in k.stash if i not in k.stash_out]

        def allocate_scratch(d):  # once per call (serial) or per block of rows (parallel), not per row
            for i in scratch:
                self.emit(d, f"s{i} = np.empty({k.inner_size}, {SCALAR[k.exprs[i].dtype.name]})"
                             f"  # row scratch for {k.exprs[i].label}")
        if chunked:
            n = k.outer[0]
            self.emit(depth, f"for c in prange({-(-n // CHUNK)}):")
            self.emit(depth + 1, f"for o0 in range(c * {CHUNK}, min(c * {CHUNK} + {CHUNK}, {n})):")
            depth += 2
        elif parallel and scratch:
            n = k.outer[0]
            rows = -(-n // min(n, SCRATCH_BLOCKS))
            self.emit(depth, f"for c in prange({-(-n // rows)}):")
            allocate_scratch(depth + 1)
            self.emit(depth + 1, f"for o0 in range(c * {rows}, min(c * {rows} + {rows}, {n})):")
            depth += 2
            for i, size in enumerate(k.outer[1:], start=1):
                self.emit(depth, f"for {self.outer_names[i]} in range({size}):")
                depth += 1
        else:
            allocate_scratch(depth)
            for i, size in enumerate(k.outer):
                loop = "prange" if parallel and i == 0 else "range"
                self.emit(depth, f"for {self.outer_names[i]} in {loop}({size}):")
                depth += 1
        for p in range(k.phases):
            roots = phase_roots(k.exprs, k.stores, p)
            reductions = [e for e in k.exprs if e.kind == "reduce" and e.phase == p]
            for i in row_deps(self.k, roots):
                self.emit_row(i, depth)
            self.emit(depth, f"# phase {p}: " + ", ".join(
                [f"{e.reduce} for {e.label}" for e in reductions]
                + [f"store {s.label}" for s in k.stores if s.inner and s.phase == p]))
            for e in reductions:
                self.emit(depth, f"{self.var(e.id)} = {reduce_init(e.reduce, e.dtype)}")
            d = depth
            for j, size in enumerate(k.inner):
                self.emit(d, f"for {self.inner_names[j]} in range({size}):")
                d += 1
            done: set[int] = set()
            for r in roots:
                self.emit_elem(r, d, p, done)
            for i in self.late_stash:
                self.emit(d, f"{self.stash_place(i)} = {self.var(i)}  # stash {k.exprs[i].label}")
            self.late_stash = []
            for e in reductions:
                acc, x = self.var(e.id), self.var(e.args[0])
                if e.reduce == "sum":
                    self.emit(d, f"{acc} = {_cast(f'{acc} + {x}', e.dtype)}")
                else:
                    fn = "kf_max_acc" if e.reduce == "max" else "kf_min_acc"
                    self.emit(d, f"{acc} = {fn}({acc}, {x})")
            for s in k.stores:
                if s.inner and s.phase == p:
                    self.emit(d, f"{self.element(s.buffer, s.offset)} = {self.var(s.expr)}  # store {s.label}")
            self.row_done.update(e.id for e in reductions)
        row_stores = [s for s in k.stores if not s.inner]
        for s in row_stores:  # every value first, then the stores: an output may overwrite an input
            self.emit_row(s.expr, depth)
        for s in row_stores:
            self.emit(depth, f"{self.element(s.buffer, s.offset)} = {self.var(s.expr)}  # store {s.label}")
        return "\n".join(self.lines) + "\n", parallel


    # -- column reductions: reduced dims strided, the row dim unit-stride ------------------------
    def is_column_reduction(self) -> bool:
        """A one-phase reduction whose loads walk the single outer dim with unit stride and the inner
        dims with a larger one (a bias gradient: sum over the batch of a (batch, n) matrix). Looping
        rows outside would read strided (a 2048x1024 column sum: 6.7 ms against numpy's 0.34); the
        interchanged loop nest reads rows contiguously and keeps one accumulator per output in a small
        array (``print_columns``)."""
        k = self.k
        if len(k.outer) != 1 or not k.inner or k.phases != 1 or k.stash or any(s.inner for s in k.stores):
            return False
        inner_loads = [e for e in k.exprs if e.kind == "load" and e.inner]
        if not inner_loads or any(e.offset.coeffs[0] != 1 or e.offset.coeffs[-1] == 1 for e in inner_loads):
            return False
        roots = phase_roots(k.exprs, k.stores, 0)
        return all(k.exprs[i].kind in ("load", "literal", "index") or k.exprs[i].op in _CHEAP
                   for i in row_deps(self.k, roots))  # recomputed per element: must be cheap

    def print_columns(self, parallel: bool) -> str:
        """Serial: one pass over the rows, each adding into all n accumulators. Parallel: the outputs
        are cut into one block of contiguous columns per thread, each with its own accumulators (a
        thread reads a contiguous run of every row; no two write one output). Wider runs read faster:
        on 2 cores, 2048x1024 takes 0.27 ms in 2 blocks, 0.34 in 4 and 0.42 in 8 (numpy: 0.33)."""
        k = self.k
        n = k.outer[0]
        reductions = [e for e in k.exprs if e.kind == "reduce"]
        self.emit(1, "# column reduction: rows inside (unit stride), one accumulator per row")
        if parallel:
            width = -(-n // numba.config.NUMBA_NUM_THREADS)
            width = -(-width // 16) * 16             # whole 64-byte cache lines per block (f32)
            blocks = -(-n // width)
            self.emit(1, f"for c in prange({blocks}):  # blocks of {width} columns")
            self.emit(2, f"lo = c * {width}")
            self.emit(2, f"hi = min(lo + {width}, {n})")
            d, size, span, at = 2, width, "lo, hi", "o0 - lo"
        else:
            d, size, span, at = 1, n, str(n), "o0"
        for e in reductions:
            self.emit(d, f"acc{e.id} = np.full({size}, {reduce_init(e.reduce, e.dtype)})  # {e.label}")
        top = d
        for j, extent in enumerate(k.inner):
            self.emit(d, f"for {self.inner_names[j]} in range({extent}):")
            d += 1
        self.emit(d, f"for o0 in range({span}):")
        d += 1
        roots = phase_roots(k.exprs, k.stores, 0)
        for i in row_deps(self.k, roots):
            self.emit_row(i, d)
        done: set[int] = set()
        for r in roots:
            self.emit_elem(r, d, 0, done)
        for e in reductions:
            acc, x = f"acc{e.id}[{at}]", self.var(e.args[0])
            if e.reduce == "sum":
                self.emit(d, f"{acc} = {_cast(f'{acc} + {x}', e.dtype)}")
            else:
                fn = "kf_max_acc" if e.reduce == "max" else "kf_min_acc"
                self.emit(d, f"{acc} = {fn}({acc}, {x})")
        self.row_done = set()
        self.emit(top, f"for o0 in range({span}):")
        for e in reductions:
            self.emit(top + 1, f"{self.var(e.id)} = acc{e.id}[{at}]")
            self.row_done.add(e.id)
        for st in k.stores:
            self.emit_row(st.expr, top + 1)
        for st in k.stores:
            self.emit(top + 1, f"{self.element(st.buffer, st.offset)} = {self.var(st.expr)}  # store {st.label}")
        return "\n".join(self.lines) + "\n"


def print_kernel(kernel: Kernel, cache: bool = True) -> tuple[str, bool]:
    """(source of the decorated kernel function, whether it runs in parallel)."""
    body, parallel = _Printer(kernel).print()
    float_reduction = any(e.kind == "reduce" and e.dtype.is_float for e in kernel.exprs)
    fastmath = '{"reassoc"}' if float_reduction else "False"
    decorator = (f'@njit({signature(kernel)}, cache={cache}, parallel={parallel}, fastmath={fastmath}, '
                 f'error_model="numpy", boundscheck=False, nogil=True)')
    return decorator + "\n" + body, parallel

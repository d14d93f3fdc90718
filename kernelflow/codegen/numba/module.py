"""Generate ONE Python module per graph: every kernel plus a driver that runs the whole schedule.

The module looks like::

    import numpy as np
    from numba import prange
    from kernelflow.codegen.numba.helpers import *
    from kernelflow.codegen.numba.module import kernel_njit as njit   # numba.njit, or deferred

    @njit("void(float32[::1], float32[::1])", cache=True, ...)
    def k0_exp_add(b0, b1):
        ...

    def make_run(S):                 # S: the executable's state (pool buffers, constants, callables)
        f3 = S["f3"]                 # a pool slot, viewed as %3's dtype, flat
        f5 = f3[64:128]              # %5, placed inside the slot of %3 = concatenate(..., %5, ...)
        v5 = f5.reshape((1, 64))
        def run(a0, a1):             # one Python function executes the schedule
            if a0.__class__ is not _nd or a0.dtype is not _t0 or a0.shape != (64, 128): a0 = _coerce(0, a0)
            ...
            k0_exp_add(f0, f3)
            ...
            return [v5]
        return run

A call is therefore one Python function doing attribute-free local operations plus the kernel calls:
no per-step interpretation. Values have two local names: ``v<N>`` (the N-d array) and ``f<N>`` (its
flat, contiguous 1-D form that kernels take); each is created only where needed.

``module_source`` returns the source and the list of ``Binding``s the runtime must put in ``S``.
The kernels' ``njit`` is ``kernel_njit``: numba's, unless the loader defers their compilation to
schedule it itself (``deferred_kernels``: runtime/cache.py compiles a new module's kernels in
several processes).
"""
from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ir.types import DType
from ...passes.fusion import FusionPlan, Step, dot_free_dims
from ...passes.memory import MemoryPlan, indexing_kernel_op, window_kernel_op
from ..kernel import Kernel, param_bases
from .printer import print_kernel, signature


@dataclass
class Binding:
    name: str
    kind: str        # slot (flat view of a pool slot), slot_nd (shaped view), const, const_flat, ref, attrs
    payload: Any


def _num(label: str) -> int:
    return int(label[1:])


def _np_dtype_text(d: DType) -> str:
    return f"np.{d.np_dtype.name}"


class _Driver:
    def __init__(self, plan: FusionPlan, memory: MemoryPlan):
        self.plan = plan
        self.memory = memory
        self.names = plan.names
        self.lines: list[str] = []
        self.bindings: list[Binding] = []
        self.bound: set[str] = set()
        self.have_nd: set = set()
        self.have_flat: set = set()
        # make_run lines after the bindings: views of pool slots at an offset (placed concat pieces)
        self.derived: list[str] = []
        # kernel name -> (name of the kernel that runs it, per param of that one: the index of this
        # kernel's argument, or (size, dtype, base) of a scratch output): see ``_embed``
        self.callees: dict[str, tuple[str, list]] = {}
        self.transposed_rhs = _shared_transposed_rhs(plan)

    def n(self, v) -> int:
        return _num(self.names[v])

    def bind(self, name: str, kind: str, payload) -> str:
        if name not in self.bound:
            self.bound.add(name)
            self.bindings.append(Binding(name, kind, payload))
        return name

    def emit(self, text: str, depth: int = 2):
        self.lines.append("    " * depth + text)

    def nd(self, v) -> str:
        n = self.n(v)
        if v not in self.have_nd:
            self.emit(f"v{n} = f{n}.reshape({tuple(v.shape)!r})")
            self.have_nd.add(v)
        return f"v{n}"

    def flat(self, v) -> str:
        n = self.n(v)
        if v not in self.have_flat:
            self.emit(f"f{n} = v{n}.ravel()")  # a copy when the array is not contiguous
            self.have_flat.add(v)
        return f"f{n}"

    def fresh(self, v) -> str:
        """The allocator of an output array the caller will own: flat, recycled once the caller has
        dropped every reference to it (runtime.executable.OutputRecycler)."""
        return self.bind(f"_fresh{self.n(v)}", "recycle", (v.type.size, v.dtype))

    def storage_binding(self, v):
        """Pool slot values are bound once, in make_run; a value placed inside a concatenate's slot
        is a slice of that concatenate's flat buffer, made there too."""
        n = self.n(v)
        kind = self.memory.storage.get(v)
        if kind != "slot":
            return
        if v in self.memory.placed:
            root = self.memory.root_of[v]
            r = self.n(root)
            self.bind(f"f{r}", "slot", (self.memory.slot_of[root], root.dtype, root.type.size))
            if f"f{n}" not in self.bound:
                self.bound.add(f"f{n}")
                start = self.memory.offset_of[v]
                self.derived.append(f"f{n} = f{r}[{start}:{start + v.type.size}]")
                self.derived.append(f"v{n} = f{n}.reshape({tuple(v.shape)!r})")
        else:
            self.bind(f"f{n}", "slot", (self.memory.slot_of[v], v.dtype, v.type.size))
            self.bind(f"v{n}", "slot_nd", (self.memory.slot_of[v], v.dtype, v.shape))
        self.have_flat.add(v)
        self.have_nd.add(v)

    def slot_nd(self, v, name: str, shape) -> str:
        """A shaped view, bound in make_run, of the slot of ``v`` (a 'slot' value) as ``shape``."""
        if v in self.memory.placed:
            if name not in self.bound:
                self.storage_binding(v)
                self.bound.add(name)
                self.derived.append(f"{name} = f{self.n(v)}.reshape({tuple(shape)!r})")
            return name
        return self.bind(name, "slot_nd", (self.memory.slot_of[v], v.dtype, tuple(shape)))

    # -- steps --------------------------------------------------------------------------------
    def step(self, i: int, step: Step, kernel: Kernel | None, users, graph_outputs):
        outs = step.outputs(users, graph_outputs)
        for v in outs:
            self.storage_binding(v)
        label = ", ".join(f"{self.names[n.outputs[0]]} {n.op}" for n in step.nodes[:4])
        label += " ..." if len(step.nodes) > 4 else ""
        self.emit(f"# step {i} [{step.kind}] {label}")
        if step.kind == "constant":
            v = outs[0]
            n = self.n(v)
            self.bind(f"v{n}", "const", v)
            self.bind(f"f{n}", "const_flat", v)
            self.have_nd.add(v)
            self.have_flat.add(v)
        elif step.kind == "kernel":
            args = []
            for p, base in zip(kernel.params, param_bases(kernel)):
                v = p.value
                if p.role == "out" and self.memory.storage[v] == "fresh":
                    n = self.n(v)
                    self.emit(f"f{n} = {self.fresh(v)}()")
                    self.have_flat.add(v)
                # from its lowest element touched on (printer: offsets are relative to it)
                args.append(self.flat(v) + (f"[{base}:]" if base else ""))
            callee = self.callees.get(kernel.name)
            if callee is None:
                self.emit(f"{kernel.name}({', '.join(args)})")
            else:  # a kernel with more outputs: the extra ones go to scratch arrays nobody reads
                name, sources = callee
                texts = []
                for j, source in enumerate(sources):
                    if isinstance(source, int):
                        texts.append(args[source])
                    else:
                        size, dtype, base = source
                        scratch = self.bind(f"_unused{i}_{j}", "recycle", (size, dtype))
                        texts.append(f"{scratch}()" + (f"[{base}:]" if base else ""))
                self.emit(f"{name}({', '.join(texts)})  # {kernel.name}")
        elif step.kind == "library" and step.nodes[0].op == "dot_general":
            self.dot(step.nodes[0], outs[0])
        elif step.kind in ("library", "numpy") and window_kernel_op(step.nodes[0]):
            self.window(i, step.nodes[0], outs[0])
        elif step.kind == "numpy" and step.nodes[0].op == "concatenate":
            self.concatenate(step.nodes[0], outs[0])
        elif step.kind == "numpy" and indexing_kernel_op(step.nodes[0]):
            self.indexing(step.nodes[0], outs[0])
        elif step.kind == "view":
            for node in step.nodes:
                out = node.outputs[0]
                if out not in graph_outputs and all(self.reads_one_value(u, out) for u in users.get(out, ())):
                    self.emit(f"# v{self.n(out)}: not made, its readers take the one value it repeats")
                    continue
                self.emit(f"v{self.n(out)} = {self.view_expr(node)}")
                self.have_nd.add(out)
        else:  # numpy reference lowering (and conv through its im2col reference)
            node = step.nodes[0]
            ref = self.bind(f"_ref_{node.op}", "ref", node.op)
            attrs = self.bind(f"_attrs{i}", "attrs", dict(node.attrs))
            args = ", ".join(self.nd(x) for x in node.inputs)
            targets = ", ".join(f"v{self.n(v)}" for v in node.outputs)
            self.emit("with np.errstate(all='ignore'):")
            self.emit(f"{targets}{',' if len(node.outputs) == 1 else ''} = _as_tuple({ref}({args}, **{attrs}))",
                      depth=3)
            self.have_nd.update(node.outputs)

    def window(self, i: int, node, out):
        """A window loop kernel (kernelflow/codegen/numba/window.py) writing into ``out``'s buffer."""
        run = self.bind(f"_win_{node.op}", "window", node.op)
        attrs = self.bind(f"_attrs{i}", "attrs", dict(node.attrs))
        scratch = self.bind("_scratch", "scratch", None)
        o = self.n(out)
        if self.memory.storage[out] != "slot":
            self.emit(f"v{o} = {self.fresh(out)}().reshape({tuple(out.shape)!r})")
            self.have_nd.add(out)
        args = ", ".join(self.contiguous_nd(x) for x in node.inputs)
        self.emit(f"{run}({args}, v{o}, {scratch}, {i}, **{attrs})")

    def indexing(self, node, out):
        """gather / scatter_add as a loop kernel (kernelflow/codegen/numba/indexing.py) writing into
        ``out``'s flat buffer. scatter_add's operand and updates, when views repeating one value
        (``one_value``), are passed as that one-element value with step 0."""
        o = self.n(out)
        if self.memory.storage[out] != "slot":
            self.emit(f"f{o} = {self.fresh(out)}()")
        self.have_flat.add(out)
        data, idx = node.inputs[0], node.inputs[1]
        axis = node.attrs["axis"]
        outer = int(np.prod(data.shape[:axis], dtype=np.int64))
        inner = int(np.prod(data.shape[axis + 1:], dtype=np.int64))
        sizes = f"{outer}, {data.shape[axis]}, {inner}, {axis}, {str(node.loc) if node.loc else ''!r}"
        if node.op == "gather":
            self.emit(f"_ix_gather({self.flat(data)}, {self.flat(idx)}, f{o}, {sizes})")
            return

        def with_step(v) -> str:
            source = self.one_value(v)
            return f"{self.flat(v)}, 1" if source is None else f"{self.flat(source)}, 0"
        self.emit(f"_ix_scatter_add({with_step(data)}, {self.flat(idx)}, {with_step(node.inputs[2])}, f{o}, {sizes})")

    def one_value(self, v):
        """The one-element value that ``v`` repeats when ``v`` is a view (a broadcast, through
        reshapes) of one element and has more; else None."""
        u = v
        while self.memory.storage.get(u) == "view" and u.producer.inputs[0].type.size == 1:
            u = u.producer.inputs[0]
        return u if u is not v and v.type.size > 1 else None

    def reads_one_value(self, node, v) -> bool:
        """Does ``node`` read ``v`` only through ``one_value`` (so ``v`` itself need not be made)?"""
        return node.op == "scatter_add" and indexing_kernel_op(node) and v is not node.inputs[1] \
            and self.one_value(v) is not None

    def concatenate(self, node, out):
        """Into ``out``'s buffer (a pool slot, or the caller's fresh array). Pieces the memory plan
        placed inside that buffer are there already (their producers wrote them); the others are
        copied into their ranges."""
        o = self.n(out)
        if self.memory.storage[out] != "slot":
            self.emit(f"v{o} = {self.fresh(out)}().reshape({tuple(out.shape)!r})")
            self.have_nd.add(out)
        axis = node.attrs["axis"]
        there = [self.memory.placed.get(x, (None,))[0] is out for x in node.inputs]
        if not any(there):
            pieces = "".join(f"{self.nd(x)}, " for x in node.inputs)
            self.emit(f"np.concatenate(({pieces}), axis={axis}, out=v{o})")
            return
        self.emit(f"# {sum(there)} of {len(there)} pieces written in place by their producers")
        at = 0
        for x, done in zip(node.inputs, there):
            if not done:
                index = ":, " * axis + f"{at}:{at + x.shape[axis]}"
                self.emit(f"v{o}[{index}] = {self.nd(x)}")
            at += x.shape[axis]

    def contiguous_nd(self, v) -> str:
        """The N-d array of ``v``, C-contiguous (views of non-contiguous layouts are copied)."""
        if self.memory.storage.get(v) in ("slot", "input"):
            return self.nd(v)
        return f"np.ascontiguousarray({self.nd(v)})"

    def view_expr(self, node) -> str:
        x = self.nd(node.inputs[0])
        a = node.attrs
        if node.op == "reshape":
            return f"{x}.reshape({tuple(a['shape'])!r})"
        if node.op == "transpose":
            return f"{x}.transpose({tuple(a['perm'])!r})"
        if node.op == "broadcast_in_dim":
            with_ones = [1] * len(a["shape"])
            for i, d in enumerate(a["dims"]):
                with_ones[d] = node.inputs[0].shape[i]
            return f"np.broadcast_to({x}.reshape({tuple(with_ones)!r}), {tuple(a['shape'])!r})"
        if node.op == "slice":
            idx = ", ".join(f"{s}:{l}:{st}" for s, l, st in zip(a["start"], a["limit"], a["stride"]))
            return f"{x}[{idx}{',' if len(a['start']) == 1 else ''}]" if a["start"] else x
        if node.op == "rev":
            idx = ", ".join("::-1" if j in a["axes"] else ":" for j in range(node.inputs[0].ndim))
            return f"{x}[{idx}]" if idx else x
        raise AssertionError(node.op)

    def dot(self, node, out):
        lhs, rhs = node.inputs
        (lc, rc), (lb, rb) = node.attrs["contract"], node.attrs["batch"]
        lf, rf = dot_free_dims(lhs.ndim, lc, lb), dot_free_dims(rhs.ndim, rc, rb)
        size = lambda shape, dims: int(np.prod([shape[d] for d in dims], dtype=np.int64))  # noqa: E731
        b, m, k, n = size(lhs.shape, lb), size(lhs.shape, lf), size(lhs.shape, lc), size(rhs.shape, rf)
        three = (b, m, k) if lb else (m, k)

        def operand(v, perm, shape):
            text = self.nd(v)
            if tuple(perm) != tuple(range(v.ndim)):
                text += f".transpose({tuple(perm)!r})"
            if tuple(shape) != tuple(v.shape if tuple(perm) == tuple(range(v.ndim))
                                      else [v.shape[p] for p in perm]):
                text += f".reshape({tuple(shape)!r})"
            return text

        a = operand(lhs, tuple(lb) + tuple(lf) + tuple(lc), three)
        if rhs in self.transposed_rhs and _reads_rhs_transposed(node):
            bt = self.transposed_copy(rhs)
        else:
            bt = operand(rhs, tuple(rb) + tuple(rc) + tuple(rf), (b, k, n) if lb else (k, n))
        o = self.n(out)
        out_shape = (b, m, n) if lb else (m, n)
        if self.memory.storage[out] == "slot":
            target = self.slot_nd(out, f"m{o}", out_shape)
        else:
            self.emit(f"v{o} = {self.fresh(out)}().reshape({tuple(out.shape)!r})")
            self.have_nd.add(out)
            target = f"v{o}" if tuple(out.shape) == out_shape else f"v{o}.reshape({out_shape!r})"
        mm = self.bind("_matmul", "matmul", None)  # BLAS thread count chosen per shape (blas.py)
        self.emit(f"{mm}({a}, {bt}, {target}, {b * m * k * n})")

    def transposed_copy(self, w) -> str:
        """A contiguous copy of ``w.T`` (``w`` 2-D), made by its first reader in the schedule and read
        by all (see ``_shared_transposed_rhs``)."""
        name = f"T{self.n(w)}"
        if name not in self.bound:
            self.bind(name, "buffer", ((w.shape[1], w.shape[0]), w.dtype))
            copy = self.bind("_transpose_copy", "transpose_copy", None)
            self.emit(f"{copy}({self.nd(w)}, {name})  # read transposed by several GEMMs: one copy, NN GEMMs")
        return name


def _reads_rhs_transposed(node) -> bool:
    """A dot_general without batch dims that contracts the last dim of its 2-D rhs (``x @ w.T``)."""
    (_, rc), (_, rb) = node.attrs["contract"], node.attrs["batch"]
    return not rb and node.inputs[1].ndim == 2 and tuple(rc) == (1,)


def _shared_transposed_rhs(plan: FusionPlan) -> set:
    """2-D values that two or more GEMMs read as a transposed B operand.

    A GEMM is slower on a transposed B than on a plain one when the product has few rows: 32x1024 @
    (256x1024).T takes 151 us against 112 us with the transpose made contiguous first on OpenBLAS, 87
    against 80 us on MKL (128x256 @ (256x256).T: 96 against 88 us on OpenBLAS). The copy (OpenBLAS's
    omatcopy, 62 us for 256x1024) pays once two GEMMs share it: the LSTM's backward pass reads its
    recurrent weight transposed once per time step (W7: 63 GEMMs; ~2.4 ms per step on OpenBLAS, ~0.4
    on MKL). One reader alone keeps the transposed view."""
    counts: dict = {}
    for s in plan.steps:
        node = s.nodes[0]
        if s.kind == "library" and node.op == "dot_general" and _reads_rhs_transposed(node):
            counts[node.inputs[1]] = counts.get(node.inputs[1], 0) + 1
    return {v for v, c in counts.items() if c >= 2}


def _loop_nest_key(src: str, name: str) -> str:
    """A kernel's source without its name, docstring and comments: equal keys compile to the same code."""
    lines = []
    for line in src.replace(f"def {name}(", "def _(", 1).splitlines():
        code = line.split("#", 1)[0].rstrip()
        if code and not code.lstrip().startswith('"""'):
            lines.append(code)
    return "\n".join(lines)


_STORE = re.compile(r"^(\s*)(b\d+)(\[.*\] = v\d+)$")


@dataclass
class _StoreFrame:
    """A kernel's source as (decorator without the output types, code lines), where each plain store
    into an output (``b7[...] = v3``, the output named nowhere else) reads ``OUT[...] = v3`` and
    ``store_of[line]`` names its output. Two kernels whose frames are equal except for some store lines
    compute the same values; the one with more stores can run the other (``_embed``)."""
    head: tuple
    lines: list[str]
    store_of: dict[int, str]     # line index -> output param name
    n_outputs: int

    @staticmethod
    def of(kernel: Kernel, src: str) -> "_StoreFrame | None":
        decorator, _, rest = src.partition("\n")
        sig = signature(kernel)
        if not decorator.startswith(f"@njit({sig}"):
            return None
        inputs = [p for p in kernel.params if p.role == "in"]
        outputs = {p.name for p in kernel.params if p.role == "out"}
        head = (tuple(p.dtype.name for p in inputs), decorator[len(f"@njit({sig}"):])
        code = _loop_nest_key(rest, kernel.name).splitlines()[1:]  # without the def line
        lines, store_of = [], {}
        for line in code:
            m = _STORE.match(line)
            if m and m.group(2) in outputs:
                store_of[len(lines)] = m.group(2)
                line = f"{m.group(1)}OUT{m.group(3)}"
            lines.append(line)
        named = re.compile(r"\b(" + "|".join(sorted(outputs)) + r")\b") if outputs else None
        if named is not None and any(named.search(line) for line in lines):
            return None  # an output read, or written other than by one plain store
        if sorted(store_of.values()) != sorted(outputs):
            return None
        return _StoreFrame(head, lines, store_of, len(outputs))

    def embeds_in(self, other: "_StoreFrame") -> dict[str, str | None] | None:
        """If ``other`` is this frame with extra store lines: other's output -> ours (None: extra)."""
        if self.head != other.head or len(self.lines) >= len(other.lines):
            return None
        mine = 0
        mapping: dict[str, str | None] = {}
        for j, line in enumerate(other.lines):
            if mine < len(self.lines) and self.lines[mine] == line:
                if j in other.store_of:
                    mapping[other.store_of[j]] = self.store_of[mine]
                mine += 1
            elif j in other.store_of:
                mapping[other.store_of[j]] = None
            else:
                return None
        return mapping if mine == len(self.lines) else None


def _embed(kernels: dict[int, Kernel], frames: dict) -> dict[str, tuple[str, list]]:
    """Kernels that another kernel with the same loop nest and more outputs can run, passing scratch
    arrays for the outputs they do not have: the last step of an unrolled loop often stores one value
    fewer (nothing reads it after the loop), and would otherwise be compiled again for that."""
    by_name = {k.name: k for k in kernels.values()}
    order = sorted((n for n, f in frames.items() if f is not None), key=lambda n: -frames[n].n_outputs)
    hosts: list[str] = []
    callees: dict[str, tuple[str, list]] = {}
    for name in order:
        frame = frames[name]
        for host in hosts:
            mapping = frame.embeds_in(frames[host])
            if mapping is None:
                continue
            k, h = by_name[name], by_name[host]
            position = {p.name: j for j, p in enumerate(k.params)}
            bases = param_bases(h)
            sources: list = []
            for j, p in enumerate(h.params):
                if p.role == "in":
                    sources.append(j)  # same inputs, in the same order (equal frames)
                elif mapping[p.name] is not None:
                    sources.append(position[mapping[p.name]])
                else:
                    sources.append((p.size, p.dtype, bases[j]))
            callees[name] = (host, sources)
            break
        else:
            hosts.append(name)
    return callees


def module_source(plan: FusionPlan, kernels: dict[int, Kernel], memory: MemoryPlan,
                  cache: bool = True, profile: bool = False) -> tuple[str, list[Binding], dict[str, str]]:
    """(module source, bindings for make_run, kernel name -> kernel source).

    With ``profile``, the driver adds each step's wall time to ``S['_profile'][step]`` (a list of
    floats, one per step, and a call counter at the end)."""
    graph = plan.graph
    users = graph.users()
    graph_outputs = set(graph.outputs)
    head = [f'"""kernelflow: generated numba module for graph {graph.name!r} '
            f'({len(plan.steps)} steps, {len(kernels)} kernels). Regenerated from the IR; do not edit."""',
            "import math",
            "import numpy as np",
            "from numba import prange, types as nt",
            "from kernelflow.codegen.numba.helpers import *  # noqa: F401,F403",
            "from kernelflow.codegen.numba.module import kernel_njit as njit  # numba.njit; see there",
            "", ""]
    if any(s.kind == "numpy" and indexing_kernel_op(s.nodes[0]) for s in plan.steps):
        head[-2:-2] = ["from kernelflow.codegen.numba.indexing import run_gather as _ix_gather, "
                       "run_scatter_add as _ix_scatter_add"]
    kernel_sources = {}
    body = []
    first_of: dict[str, str] = {}  # loop nest text (no name, no comments) -> the kernel that has it
    frames = {}
    for k in kernels.values():
        src, _ = print_kernel(k, cache=cache)
        kernel_sources[k.name] = src
        frames[k.name] = _StoreFrame.of(k, src)
    callees = _embed(kernels, frames)
    for i, k in kernels.items():
        src = kernel_sources[k.name]
        if k.name in callees:
            name, sources = callees[k.name]
            unused = sum(1 for x in sources if not isinstance(x, int))
            body.append(f"{k.name} = {name}  # the same loop nest with {unused} more output(s), unused here\n")
            continue
        key = _loop_nest_key(src, k.name)
        if key in first_of:  # compile each distinct loop nest once (a training step repeats many)
            body.append(f"{k.name} = {first_of[key]}  # the same loop nest\n")
            continue
        first_of[key] = k.name
        body.append(src)
        body.append("")
    d = _Driver(plan, memory)
    d.callees = callees
    inputs = [f"a{i}" for i in range(len(graph.inputs))]
    for i, v in enumerate(graph.inputs):
        n = d.n(v)
        t = d.bind(f"_t{i}", "dtype", v.dtype)
        d.emit(f"if a{i}.__class__ is not _nd or a{i}.dtype is not {t} or a{i}.shape != {tuple(v.shape)!r}:")
        d.emit(f"a{i} = _coerce({i}, a{i})", depth=3)
        d.emit(f"v{n} = a{i}")
        d.have_nd.add(v)
    for i, step in enumerate(plan.steps):
        if profile:
            d.bind("_profile", "profile", len(plan.steps))
            d.bind("_clock", "clock", None)
            d.emit("_t = _clock()")
        d.step(i, step, kernels.get(i), users, graph_outputs)
        if profile:
            d.emit(f"_profile[{i}] += _clock() - _t")
    if profile:
        d.emit(f"_profile[{len(plan.steps)}] += 1")
    returned = []
    seen = set()
    for v in graph.outputs:
        text = d.nd(v)
        if v in seen or d.memory.storage.get(v) in ("input", "const", "view"):
            text = f"np.array({text})"  # the caller owns every output: never hand out an input or a constant
        seen.add(v)
        returned.append(text)
    d.emit(f"return [{', '.join(returned)}]")

    make = ["def make_run(S):",
            '    """Bind the executable\'s state (pool slots, constants, numpy lowerings) and return run()."""',
            "    _nd = np.ndarray",
            "    _coerce = S['_coerce']",
            "    _as_tuple = S['_as_tuple']"]
    for bnd in d.bindings:
        make.append(f"    {bnd.name} = S[{bnd.name!r}]")
    make.extend(f"    {line}" for line in d.derived)
    make.append(f"    def run({', '.join(inputs)}):")
    make.extend(d.lines)
    make.append("    return run")
    source = "\n".join(head + body + make) + "\n"
    return source, d.bindings, kernel_sources


# -- how the kernels of a generated module are compiled ----------------------------------------------
_LOADING = threading.local()


@dataclass
class DeferredKernel:
    """A kernel whose compilation the loader schedules itself (see ``deferred_kernels``)."""
    name: str
    dispatcher: Any
    signature: Any
    parallel: bool   # a prange kernel (compiled only by the loading process itself)
    cost: int        # an estimate of its compile time, for scheduling: bytecode size, transcendentals


def kernel_njit(*args, **options):
    """The ``njit`` the generated modules decorate their kernels with: ``numba.njit`` itself (compiled
    at import, from numba's cache or not), except while ``deferred_kernels()`` is active in this
    thread: then each kernel becomes a lazy dispatcher, recorded with its signature, and the loader
    compiles it later with ``compile_deferred`` (in whichever process it chooses: runtime/cache.py
    compiles the kernels of a new module in several processes)."""
    import numba  # noqa: PLC0415 - numba loads only when a module does
    from .helpers import quiet_numba_ssa  # noqa: PLC0415
    if len(args) != 1 or callable(args[0]):  # not the generated modules' njit(signature, ...)
        return numba.njit(*args, **options)
    deferred = getattr(_LOADING, "deferred", None)
    if deferred is None:
        def compile_now(fn):  # numba.njit(signature) compiles while decorating
            with quiet_numba_ssa():
                return numba.njit(*args, **options)(fn)
        return compile_now
    signature = args[0]

    def decorate(fn):
        dispatcher = numba.njit(**options)(fn)
        if not hasattr(dispatcher, "compile"):  # NUMBA_DISABLE_JIT: a plain function
            return dispatcher
        deferred.append(DeferredKernel(fn.__name__, dispatcher, signature, bool(options.get("parallel")),
                                       _compile_cost(fn)))
        return dispatcher
    return decorate


# Calls that numba inlines at its IR level (helpers.py): each costs about as much compile time as
# a few hundred bytes of kernel bytecode.
_EXPENSIVE_CALLS = {"kf_tanh": 6000, "kf_logistic": 6000, "kf_exp": 1500, "kf_log": 1500,
                    "kf_log1p": 1500, "kf_expm1": 1500}


def _compile_cost(fn) -> int:
    """Bytecode size plus the cost of each expensive helper call: the helper's LOAD_GLOBAL byte pairs
    are counted in the raw bytecode (``dis`` took 35 ms over W7's kernels, serially before the fork;
    a pair that happens to match at an odd offset only overestimates one kernel's cost a little)."""
    code = fn.__code__
    raw = code.co_code
    cost = len(raw)
    for name in _EXPENSIVE_CALLS.keys() & set(code.co_names):
        i = code.co_names.index(name)
        args = (i << 1, (i << 1) | 1) if _LOAD_GLOBAL_SHIFTED else (i,)
        if max(args) > 255:  # EXTENDED_ARG: count the name once
            cost += _EXPENSIVE_CALLS[name]
            continue
        calls = sum(raw.count(bytes((_LOAD_GLOBAL, a))) for a in args)
        cost += _EXPENSIVE_CALLS[name] * max(calls, 1)
    return cost


# LOAD_GLOBAL's argument is the name's index, shifted left by one from Python 3.11 on (the low bit
# says whether it also pushes NULL for a call).
_LOAD_GLOBAL = __import__("dis").opmap["LOAD_GLOBAL"]
_LOAD_GLOBAL_SHIFTED = __import__("sys").version_info >= (3, 11)


@contextlib.contextmanager
def deferred_kernels():
    """Within the block, importing a generated module compiles none of its kernels: they are appended,
    in source order, to the list the block receives."""
    saved = getattr(_LOADING, "deferred", None)
    found: list[DeferredKernel] = []
    _LOADING.deferred = found
    try:
        yield found
    finally:
        _LOADING.deferred = saved


def compile_deferred(kernel: DeferredKernel) -> None:
    """Compile (or load from numba's cache) a deferred kernel for its signature and close it to other
    signatures: exactly what ``numba.njit(signature)`` does at decoration time."""
    from numba.core import typeinfer  # noqa: PLC0415

    from .helpers import quiet_numba_ssa  # noqa: PLC0415
    dispatcher = kernel.dispatcher
    with typeinfer.register_dispatcher(dispatcher), quiet_numba_ssa():
        dispatcher.compile(kernel.signature)
    dispatcher.disable_compile()

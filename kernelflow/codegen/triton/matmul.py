"""dot_general as a tiled ``tl.dot`` matmul with float32 accumulation and an optional fused epilogue.

Every dot_general whose dims group into (batch, M, K) x (batch, K, N) with one stride per group (all
of matmul, batched matmul and the transposed operands of their gradients) becomes one kernel:

    grid = (tiles of the [M, N] output, batch); each program owns a BLOCK_M x BLOCK_N tile,
    loops over K in BLOCK_K steps (tl.dot, fp32 accumulator), then applies the epilogue and stores.

Program ids are swizzled in groups of GROUP_M tile rows so neighbouring programs share operand tiles
in L2. Operands keep their layout: a transposed operand is just other strides (no copy).

The epilogue is a pointwise kernel that reads the product element by element at its own index (bias
add, activation, ...): it is evaluated on the accumulator tile in registers and its outputs are
stored instead of the product, which never goes to memory.

float32 operands use ``input_precision="ieee"`` (products as exact as numpy's; TF32 would lose 13
mantissa bits); float16/bfloat16 operands run on the tensor cores (wgmma on sm_90) with an fp32
accumulator, rounded to the output dtype once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.graph import Node
from ..kernel import Kernel
from .printer import POINTER_TYPE, TL_DTYPE, PrintedKernel, _Printer, next_power_of_two

DOT_DTYPES = frozenset({"f16", "bf16", "f32"})
GROUP_M = 8
# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages): autotuned on a GPU, per dtype width.
CONFIGS_16BIT = ((128, 256, 64, 8, 3), (128, 128, 64, 8, 3), (128, 128, 32, 4, 4), (64, 128, 64, 4, 4),
                 (128, 64, 64, 4, 4), (64, 64, 64, 4, 3))
CONFIGS_32BIT = ((128, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 64, 32, 4, 3))


class NotLowerable(Exception):
    """A dot_general this lowering does not handle (the message says why)."""


@dataclass
class DotLayout:
    batch: int
    m: int
    n: int
    k: int
    lhs_strides: tuple[int, int, int]    # (batch, m, k) element strides of lhs
    rhs_strides: tuple[int, int, int]    # (batch, k, n) element strides of rhs


def _row_major(shape) -> list[int]:
    strides, s = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = s
        s *= shape[i]
    return strides


def _group(shape, dims, what: str) -> tuple[int, int]:
    """(size, stride) of ``dims`` (in this order) merged into one index, or raise NotLowerable."""
    strides = _row_major(shape)
    kept = [d for d in dims if shape[d] != 1]
    size = 1
    for d in dims:
        size *= shape[d]
    if not kept:
        return size, 0
    for a, b in zip(kept, kept[1:]):
        if strides[a] != strides[b] * shape[b]:
            raise NotLowerable(f"the {what} dims {list(dims)} of shape {list(shape)} are not one strided "
                               f"index (they would need a copy)")
    return size, strides[kept[-1]]


def dot_layout(node: Node) -> DotLayout:
    lhs, rhs = node.inputs
    (lc, rc), (lb, rb) = node.attrs["contract"], node.attrs["batch"]
    lfree = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
    rfree = [d for d in range(rhs.ndim) if d not in rc and d not in rb]
    b, lsb = _group(lhs.shape, lb, "lhs batch")
    _, rsb = _group(rhs.shape, rb, "rhs batch")
    m, lsm = _group(lhs.shape, lfree, "lhs free")
    n, rsn = _group(rhs.shape, rfree, "rhs free")
    k, lsk = _group(lhs.shape, lc, "lhs contracting")
    _, rsk = _group(rhs.shape, rc, "rhs contracting")
    return DotLayout(b, m, n, k, (lsb, lsm, lsk), (rsb, rsk, rsn))


def epilogue_fits(kernel: Kernel, dot_param: int, size: int) -> bool:
    """Whether a pointwise kernel reads the product (param ``dot_param``) only at its own index and
    writes every output at that index, over a domain of the product's size."""
    if kernel.inner or kernel.kind != "pointwise" or kernel.outer_size != size:
        return False
    identity = tuple(_row_major(kernel.outer))
    for e in kernel.exprs:
        if e.kind == "load" and e.buffer == dot_param and (e.offset.const != 0 or e.offset.coeffs != identity):
            return False
    return all(s.offset.const == 0 and s.offset.coeffs == identity for s in kernel.stores)


def print_matmul(name: str, node: Node, labels: dict, out_label: str,
                 epilogue: Kernel | None = None, dot_param: int | None = None,
                 interpret: bool = False) -> tuple[PrintedKernel, list]:
    """The kernel source; returns (printed kernel, the buffer Values of its params in order).

    Without an epilogue the params are (lhs, rhs, out). With one they are (lhs, rhs) followed by the
    epilogue kernel's params other than the product.
    """
    lhs, rhs = node.inputs
    dt = lhs.dtype.name
    if dt not in DOT_DTYPES:
        raise NotLowerable(f"dot_general on {dt} operands runs on the host (tl.dot takes f16/bf16/f32)")
    lay = dot_layout(node)
    out = node.outputs[0]
    p = None
    params = [("lhs", lhs, labels.get(lhs, "?")), ("rhs", rhs, labels.get(rhs, "?"))]
    if epilogue is not None:
        p = _Printer(epilogue)
        for prm in epilogue.params:
            if prm.name != epilogue.params[dot_param].name:
                params.append((prm.name, prm.value, prm.label))
    else:
        params.append(("out", out, out_label))
    epilogue_ops = ", ".join(dict.fromkeys(
        n.split(" = ")[1].split("(")[0] for n in (epilogue.nodes if epilogue else [])
        if n.split(" = ")[1].split("(")[0] not in ("broadcast_in_dim", "reshape", "transpose")))
    wide = max(v.type.size for _, v, _ in params) > 2 ** 31 - 1
    lines = []
    emit = lines.append
    emit("@triton.jit")
    emit(f"def {name}({', '.join(n for n, _, _ in params)}, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, "
         f"BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):")
    what = f"{out_label} = dot_general({labels.get(lhs, '?')}, {labels.get(rhs, '?')})"
    emit(f'    """matmul kernel: {lay.batch} x [{lay.m} x {lay.k}] @ [{lay.k} x {lay.n}] ({dt}, fp32 accumulator)'
         f'{"; fused epilogue: " + epilogue_ops if epilogue else ""}."""')
    emit(f"    # {what}")
    if epilogue is not None:
        for line in epilogue.nodes:
            emit(f"    # epilogue: {line}")
    emit("    pid = tl.program_id(0)")
    emit(f"    batch = tl.program_id(1){'.to(tl.int64)' if wide else ''}")
    emit(f"    tiles_m = tl.cdiv({lay.m}, BLOCK_M)")
    emit(f"    tiles_n = tl.cdiv({lay.n}, BLOCK_N)")
    emit("    # groups of GROUP_M tile rows, so consecutive programs reuse the same rhs tiles from L2")
    emit("    group = pid // (GROUP_M * tiles_n)")
    emit("    first_m = group * GROUP_M")
    emit("    group_rows = tl.minimum(tiles_m - first_m, GROUP_M)")
    emit("    pid_m = first_m + (pid % (GROUP_M * tiles_n)) % group_rows")
    emit("    pid_n = (pid % (GROUP_M * tiles_n)) // group_rows")
    emit("    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
    emit("    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)")
    if wide:
        emit("    rm = rm.to(tl.int64)")
        emit("    rn = rn.to(tl.int64)")
    emit("    rk = tl.arange(0, BLOCK_K)")
    (asb, asm, ask), (bsb, bsk, bsn) = lay.lhs_strides, lay.rhs_strides
    emit(f"    a_ptrs = lhs + batch * {asb} + rm[:, None] * {asm} + rk[None, :] * {ask}")
    emit(f"    b_ptrs = rhs + batch * {bsb} + rk[:, None] * {bsk} + rn[None, :] * {bsn}")
    emit("    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)")
    emit(f"    for k0 in range(0, {lay.k}, BLOCK_K):")
    emit(f"        a_tile = tl.load(a_ptrs, mask=(rm[:, None] < {lay.m}) & (rk[None, :] + k0 < {lay.k}), other=0.0)")
    emit(f"        b_tile = tl.load(b_ptrs, mask=(rk[:, None] + k0 < {lay.k}) & (rn[None, :] < {lay.n}), other=0.0)")
    precision = ', input_precision="ieee"' if dt == "f32" else ""
    emit(f"        acc = tl.dot(a_tile, b_tile, acc{precision})")
    emit(f"        a_ptrs += BLOCK_K * {ask}")
    emit(f"        b_ptrs += BLOCK_K * {bsk}")
    emit(f"    mask = (rm[:, None] < {lay.m}) & (rn[None, :] < {lay.n})")
    emit(f"    f = batch * {lay.m * lay.n} + rm[:, None] * {lay.n} + rn[None, :]  # flat index of the product")
    product = (f'acc.to({TL_DTYPE[dt]}, fp_downcast_rounding="rtne")' if dt in ("f16", "bf16")
               else f"acc.to({TL_DTYPE[dt]})")
    if epilogue is None:
        emit(f"    tl.store(out + f, {product}, mask=mask)  # store {out_label}")
    else:
        for e in epilogue.exprs:
            if e.kind == "load" and e.buffer == dot_param:
                p.overrides[e.id] = product
        p.emit_indices(1, "f", epilogue.outer, p.outer_names)
        p.pointwise_body(1)
        lines.extend(p.lines)
    size = 2 if dt in ("f16", "bf16") else 4
    configs = CONFIGS_16BIT if size == 2 else CONFIGS_32BIT
    if interpret:
        # Triton's interpreter costs ~1 ms per program: a few large tiles, tl.dot's minimum is 16
        bm = min(64, max(16, next_power_of_two(lay.m)))
        bn = min(64, max(16, next_power_of_two(lay.n)))
        bk = min(64, max(16, next_power_of_two(lay.k)))
        default = (bm, bn, bk, 4, 2)
    else:
        default = configs[1]
    signature = {n: POINTER_TYPE[v.dtype.name] for n, v, _ in params}
    signature.update({k: "constexpr" for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")})
    printed = PrintedKernel(
        name, "\n".join(lines) + "\n", "matmul", signature, ("MATMUL", lay.m, lay.n, lay.batch),
        lay.m * lay.n * lay.batch, configs, default,
        constexprs={"BLOCK_M": default[0], "BLOCK_N": default[1], "BLOCK_K": default[2], "GROUP_M": GROUP_M},
        num_warps=default[3], num_stages=default[4],
        note=f"{lay.batch} x {lay.m}x{lay.k} @ {lay.k}x{lay.n} {dt}" + (" + epilogue" if epilogue else ""))
    return printed, [v for _, v, _ in params]

"""Kernels for the structured primitives fusion leaves as single steps: random_bits, gather, scatter_add.

* ``random_bits``: element i (row-major) is the first word of threefry2x32-20(key, (i mod 2**32,
  i div 2**32)), the same function as the reference (``kf_threefry2x32`` in device.py), so dropout masks
  are bit-identical across backends.
* ``gather`` (numpy.take along an axis): one lane per output element; a negative index wraps once as
  in numpy. An index outside [-size, size) cannot raise inside a kernel: those lanes read 0 (the host
  reference and the CPU backend raise IndexError).
* ``scatter_add`` (numpy.add.at): the output starts as a copy of the operand, then one lane per update
  element adds it with ``tl.atomic_add`` (duplicates accumulate; on a GPU the order of float additions to
  one element is not fixed, so sums may differ in the last bits between runs).
"""
from __future__ import annotations

from ...ir.graph import Node
from .matmul import NotLowerable
from .printer import POINTER_TYPE, PrintedKernel, next_power_of_two

ATOMIC_DTYPES = frozenset({"f16", "f32", "f64", "i32", "i64", "u32"})


def _pointwise(name: str, n: int, signature: dict, lines: list[str], note: str) -> PrintedKernel:
    default = min(1024, next_power_of_two(n))
    choices = tuple(b for b in (512, 1024, 2048) if b <= max(default, 512))
    return PrintedKernel(name, "\n".join(lines) + "\n", "pointwise", signature, ("BLOCK",), n, choices, default,
                         note=note)


def _flat(n: int) -> list[str]:
    pid = "tl.program_id(0).to(tl.int64)" if n > 2 ** 31 - 1 else "tl.program_id(0)"
    return [f"    f = {pid} * BLOCK + tl.arange(0, BLOCK)  # flat output index",
            f"    mask = f < {n}"]


def print_random_bits(name: str, node: Node, labels: dict):
    out = node.outputs[0]
    n = out.type.size
    wide = n > 2 ** 32 - 1
    lines = ["@triton.jit",
             f"def {name}(key, out, BLOCK: tl.constexpr):",
             f'    """random_bits {labels.get(out, "?")} = threefry2x32-20(key, counter = flat index), first word."""',
             f"    # {labels.get(out, '?')} = random_bits({labels.get(node.inputs[0], '?')}) shape {list(out.shape)}"]
    lines += _flat(n if not wide else 2 ** 40)
    lines += ["    k0 = tl.load(key)",
              "    k1 = tl.load(key + 1)",
              "    low = f.to(tl.uint32)  # counter word 0: i mod 2**32",
              ("    high = (f >> 32).to(tl.uint32)  # counter word 1: i div 2**32" if wide
               else "    high = tl.zeros_like(low)  # counter word 1: i div 2**32 (0: fewer than 2**32 elements)"),
              "    bits, _ = kf_threefry2x32(k0, k1, low, high)",
              "    tl.store(out + f, bits, mask=mask)"]
    sig = {"key": "*u32", "out": "*u32", "BLOCK": "constexpr"}
    return _pointwise(name, n, sig, lines, "threefry2x32"), [node.inputs[0], out], {}


def _axis_split(shape, axis: int, idx_size: int):
    pre = 1
    for d in shape[:axis]:
        pre *= d
    post = 1
    for d in shape[axis + 1:]:
        post *= d
    return pre, shape[axis], post


def print_gather(name: str, node: Node, labels: dict):
    x, idx = node.inputs
    out = node.outputs[0]
    if x.dtype.name not in POINTER_TYPE:
        raise NotLowerable(f"gather of {x.dtype} is not lowered")
    axis = node.attrs["axis"]
    pre, size, post = _axis_split(x.shape, axis, idx.type.size)
    count = idx.type.size
    n = out.type.size
    load = "tl.load(x + src, mask=ok, other=0)"
    value = f"({load} != 0).to(tl.uint8)" if x.dtype.name == "bool" else load
    lines = ["@triton.jit",
             f"def {name}(x, idx, out, BLOCK: tl.constexpr):",
             f'    """gather: {labels.get(out, "?")} = take({labels.get(x, "?")}, {labels.get(idx, "?")}, '
             f'axis={axis})."""']
    lines += _flat(n)
    lines += [f"    q = f % {post}" if post != 1 else "    q = 0",
              f"    i = (f // {post}) % {count}" if post != 1 else f"    i = f % {count}",
              f"    p = f // {post * count}",
              "    k = tl.load(idx + i, mask=mask, other=0)",
              f"    k = tl.where(k < 0, k + {size}, k)  # a negative index wraps once, as numpy",
              f"    ok = mask & (k >= 0) & (k < {size})  # out-of-range lanes read 0",
              f"    src = (p * {size} + k) * {post} + q",
              f"    tl.store(out + f, {value}, mask=mask)"]
    sig = {"x": POINTER_TYPE[x.dtype.name], "idx": POINTER_TYPE[idx.dtype.name], "out": POINTER_TYPE[x.dtype.name],
           "BLOCK": "constexpr"}
    return _pointwise(name, n, sig, lines, "gather"), [x, idx, out], {}


def print_scatter_add(name: str, node: Node, labels: dict):
    operand, idx, updates = node.inputs
    out = node.outputs[0]
    if operand.dtype.name not in ATOMIC_DTYPES:
        raise NotLowerable(f"scatter_add of {operand.dtype} needs an atomic add Triton lacks; runs on the host")
    axis = node.attrs["axis"]
    pre, size, post = _axis_split(operand.shape, axis, idx.type.size)
    count = idx.type.size
    n = updates.type.size
    lines = ["@triton.jit",
             f"def {name}(updates, idx, out, BLOCK: tl.constexpr):",
             f'    """scatter_add: {labels.get(out, "?")} = {labels.get(operand, "?")} with '
             f'{labels.get(updates, "?")} added at {labels.get(idx, "?")} along axis {axis} '
             f'(out starts as a copy of the operand)."""']
    lines += _flat(n)
    lines += [f"    q = f % {post}" if post != 1 else "    q = 0",
              f"    i = (f // {post}) % {count}" if post != 1 else f"    i = f % {count}",
              f"    p = f // {post * count}",
              "    k = tl.load(idx + i, mask=mask, other=0)",
              f"    k = tl.where(k < 0, k + {size}, k)  # a negative index wraps once, as numpy",
              f"    ok = mask & (k >= 0) & (k < {size})  # out-of-range updates are dropped",
              "    u = tl.load(updates + f, mask=mask, other=0)",
              f"    tl.atomic_add(out + (p * {size} + k) * {post} + q, u, mask=ok)"]
    sig = {"updates": POINTER_TYPE[updates.dtype.name], "idx": POINTER_TYPE[idx.dtype.name],
           "out": POINTER_TYPE[operand.dtype.name], "BLOCK": "constexpr"}
    return _pointwise(name, n, sig, lines, "scatter_add"), [updates, idx, out], {"init_from": operand}

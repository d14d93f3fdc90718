"""Loop kernels for the window primitives (pooling, conv2d and their gradients) on the CPU.

Unlike the fused kernels, these are not generated per graph: they are written once here, take the
sizes as arguments, and are compiled by numba on first use per dtype (``cache=True``: the machine
code is kept in numba's disk cache beside this file, so later processes load it). The driver of a
generated module calls the ``run_*`` wrappers below with the output array it owns (a pool slot or
a fresh array) and a per-executable ``scratch`` dict for the im2col buffers, so steady-state calls
allocate nothing.

Convolutions are im2col + GEMM (``numpy.matmul`` on BLAS):

* ``conv2d``: ``cols[n, g] (Cg*KH*KW, OH*OW)`` from the padded input, then
  ``out[n, g] = w[g] (Og, Cg*KH*KW) @ cols[n, g]``, one batched matmul written into the output.
* ``conv2d_input_grad``: ``cols[n, g] = w[g]^T @ g[n, g]`` (batched matmul), then col2im adds each
  column element back at its input position.
* ``conv2d_weight_grad``: ONE GEMM per group with the batch in the contraction:
  ``dw[g] = gT[g] (Og, N*OH*OW) @ cols[g]^T`` with the columns laid out as (C*KH*KW, N, OH*OW) and
  the cotangent transposed to (G, Og, N, OH*OW) (a copy of the small cotangent, not of the columns).

Pooling follows the references in ``kernelflow/ir/primitives/window.py`` exactly: max pooling takes
the value at, and routes each window's gradient to its FIRST maximum in row-major order, a
NaN counting as the maximum (torch's choice); padding elements are never selected.

The inner loops run along an output row (``ow``) with the in-bounds range computed up front, so
stride-1 loops are unit-stride and vectorize.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .blas import matmul

_JIT = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)

WINDOW_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "reduce_window_max",
              "select_and_scatter_add", "select_and_gather", "reduce_window_sum",
              "reduce_window_sum_transpose")


@njit(**_JIT)
def _range(base, stride, size, count):
    """The output positions o in [0, count) with 0 <= o*stride + base < size, as [lo, hi)."""
    lo = 0
    if base < 0:
        lo = (-base + stride - 1) // stride
    hi = 0
    if size - base > 0:
        hi = (size - base + stride - 1) // stride
    if hi > count:
        hi = count
    if lo > hi:
        lo = hi
    return lo, hi


# -- im2col / col2im ------------------------------------------------------------------------------
@njit(**_JIT)
def _im2col(x, cols, kh, kw, oh, ow, sh, sw, pt, pl, dh, dw, stride_n, stride_r):
    """cols[n*stride_n + ((c*kh + i)*kw + j)*stride_r + a*ow + b] = xpad[n, c, a*sh + i*dh, b*sw + j*dw]."""
    n_, c_, h, w = x.shape
    xf = x.reshape(-1)
    for n in range(n_):
        for c in range(c_):
            plane = (n * c_ + c) * h * w
            for i in range(kh):
                for j in range(kw):
                    r = n * stride_n + ((c * kh + i) * kw + j) * stride_r
                    b0 = j * dw - pl
                    blo, bhi = _range(b0, sw, w, ow)
                    for a in range(oh):
                        row = r + a * ow
                        ih = a * sh + i * dh - pt
                        if ih < 0 or ih >= h:
                            for b in range(ow):
                                cols[row + b] = 0
                            continue
                        for b in range(blo):
                            cols[row + b] = 0
                        src = plane + ih * w + b0
                        if sw == 1:
                            for b in range(blo, bhi):
                                cols[row + b] = xf[src + b]
                        else:
                            for b in range(blo, bhi):
                                cols[row + b] = xf[src + b * sw]
                        for b in range(bhi, ow):
                            cols[row + b] = 0
    return


@njit(**_JIT)
def _col2im(cols, x, kh, kw, oh, ow, sh, sw, pt, pl, dh, dw):
    """x (zeroed here) += every column element at its input position: the transpose of _im2col
    with the (N, C*KH*KW, OH*OW) layout."""
    n_, c_, h, w = x.shape
    xf = x.reshape(-1)
    for k in range(xf.size):
        xf[k] = 0
    stride_r = oh * ow
    stride_n = c_ * kh * kw * stride_r
    for n in range(n_):
        for c in range(c_):
            plane = (n * c_ + c) * h * w
            for i in range(kh):
                for j in range(kw):
                    r = n * stride_n + ((c * kh + i) * kw + j) * stride_r
                    b0 = j * dw - pl
                    blo, bhi = _range(b0, sw, w, ow)
                    for a in range(oh):
                        ih = a * sh + i * dh - pt
                        if ih < 0 or ih >= h:
                            continue
                        row = r + a * ow
                        dst = plane + ih * w + b0
                        if sw == 1:
                            for b in range(blo, bhi):
                                xf[dst + b] += cols[row + b]
                        else:
                            for b in range(blo, bhi):
                                xf[dst + b * sw] += cols[row + b]
    return


# -- pooling --------------------------------------------------------------------------------------
# Flat indexing over (n*c) planes; the window is clipped to the input first, so the loops over it
# have no bounds tests.
@njit(**_JIT)
def _first_max(xf, p, h, w, i0, i1, j0, j1):
    """Flat index of the first maximum of a clipped window (row-major; a NaN is the maximum)."""
    best_at = (p * h + i0) * w + j0
    best = xf[best_at]
    for ih in range(i0, i1):
        row = (p * h + ih) * w
        for iw in range(j0, j1):
            v = xf[row + iw]
            if best == best and (v > best or v != v):
                best, best_at = v, row + iw
    return best_at


@njit(**_JIT)
def _pool_max(x, out, kh, kw, sh, sw, pt, pl):
    """Max pooling: each output is the value at its window's first maximum (a window clipped to the
    input is never empty: the shape rule keeps padding < window)."""
    planes, h, w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            for b in range(ow):
                j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                of[(p * oh + a) * ow + b] = xf[_first_max(xf, p, h, w, i0, i1, j0, j1)]
    return


@njit(**_JIT)
def _select_scatter(x, g, out, kh, kw, sh, sw, pt, pl):
    planes, h, w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = g.shape[2], g.shape[3]
    xf, gf, of = x.reshape(-1), g.reshape(-1), out.reshape(-1)
    for k in range(of.size):
        of[k] = 0
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            for b in range(ow):
                j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                of[_first_max(xf, p, h, w, i0, i1, j0, j1)] += gf[(p * oh + a) * ow + b]
    return


@njit(**_JIT)
def _select_gather(x, t, out, kh, kw, sh, sw, pt, pl):
    planes, h, w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    xf, tf, of = x.reshape(-1), t.reshape(-1), out.reshape(-1)
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            for b in range(ow):
                j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                of[(p * oh + a) * ow + b] = tf[_first_max(xf, p, h, w, i0, i1, j0, j1)]
    return


@njit(**_JIT)
def _pool_sum(x, out, kh, kw, sh, sw, pt, pl, zero):
    planes, h, w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            for b in range(ow):
                j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                s = zero
                for ih in range(i0, i1):
                    row = (p * h + ih) * w
                    for iw in range(j0, j1):
                        s += xf[row + iw]
                of[(p * oh + a) * ow + b] = s
    return


@njit(**_JIT)
def _pool_sum_transpose(g, out, kh, kw, sh, sw, pt, pl):
    planes, h, w = out.shape[0] * out.shape[1], out.shape[2], out.shape[3]
    oh, ow = g.shape[2], g.shape[3]
    gf, of = g.reshape(-1), out.reshape(-1)
    for k in range(of.size):
        of[k] = 0
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            for b in range(ow):
                j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                v = gf[(p * oh + a) * ow + b]
                for ih in range(i0, i1):
                    row = (p * h + ih) * w
                    for iw in range(j0, j1):
                        of[row + iw] += v
    return


# -- wrappers the generated driver calls -----------------------------------------------------------
def _scratch(scratch: dict, key, size: int, dtype) -> np.ndarray:
    buf = scratch.get(key)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = scratch[key] = np.empty(size, dtype)
    return buf[:size]


def run_conv2d(x, w, out, scratch, key, stride, padding, dilation, groups):
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = out.shape[2], out.shape[3]
    rows, length = c * kh * kw, oh * ow
    cols = _scratch(scratch, key, n * rows * length, x.dtype)
    _im2col(x, cols, kh, kw, oh, ow, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1],
            rows * length, length)
    matmul(w.reshape(groups, o // groups, cg * kh * kw), cols.reshape(n, groups, cg * kh * kw, length),
           out.reshape(n, groups, o // groups, length), n * o * rows // groups * length)


def run_conv2d_input_grad(g, w, out, scratch, key, stride, padding, dilation, groups, input_shape=None):
    n, c, _, _ = out.shape
    o, cg, kh, kw = w.shape
    oh, ow = g.shape[2], g.shape[3]
    rows, length = c * kh * kw, oh * ow
    cols = _scratch(scratch, key, n * rows * length, g.dtype)
    wt = w.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    matmul(wt, g.reshape(n, groups, o // groups, length), cols.reshape(n, groups, cg * kh * kw, length),
           n * o * rows // groups * length)
    _col2im(cols, out, kh, kw, oh, ow, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1])


def run_conv2d_weight_grad(x, g, out, scratch, key, stride, padding, dilation, groups, weight_shape=None):
    n, c, _, _ = x.shape
    o, cg, kh, kw = out.shape
    oh, ow = g.shape[2], g.shape[3]
    rows, length = c * kh * kw, oh * ow
    cols = _scratch(scratch, key, n * rows * length, x.dtype)
    # columns as (C*KH*KW, N, OH*OW): the batch joins the contraction of one GEMM per group
    _im2col(x, cols, kh, kw, oh, ow, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1],
            length, n * length)
    gt = _scratch(scratch, (key, "g"), g.size, g.dtype).reshape(groups, o // groups, n, length)
    np.copyto(gt, g.reshape(n, groups, o // groups, length).transpose(1, 2, 0, 3))
    matmul(gt.reshape(groups, o // groups, n * length),
           cols.reshape(groups, cg * kh * kw, n * length).transpose(0, 2, 1),
           out.reshape(groups, o // groups, cg * kh * kw), n * o * rows // groups * length)


def run_reduce_window_max(x, out, scratch, key, window, stride, padding):
    _pool_max(x, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def run_select_and_scatter_add(x, g, out, scratch, key, window, stride, padding):
    _select_scatter(x, g, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def run_select_and_gather(x, t, out, scratch, key, window, stride, padding):
    _select_gather(x, t, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def run_reduce_window_sum(x, out, scratch, key, window, stride, padding):
    _pool_sum(x, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2], x.dtype.type(0))


def run_reduce_window_sum_transpose(g, out, scratch, key, window, stride, padding, input_shape=None):
    _pool_sum_transpose(g, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


RUNNERS = {op: globals()[f"run_{op}"] for op in WINDOW_OPS}

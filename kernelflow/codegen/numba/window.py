"""Loop kernels for the window primitives (pooling, conv2d and their gradients) on the CPU.

Unlike the fused kernels, these are not generated per graph: they are written once here, take the
sizes as arguments, and are compiled by numba on first use per dtype (``cache=True``: the machine
code is kept in numba's disk cache beside this file, so later processes load it). The driver of a
generated module calls the ``run_*`` wrappers below with the output array it owns (a pool slot or
a fresh array) and a per-executable ``scratch`` dict for the im2col and batch-innermost buffers, so
steady-state calls allocate little (the direct loops' accumulator rows).

Convolutions have two implementations; ``_direct`` picks one per shape (rule and measurements at
DIRECT_MAX_GROUP_CHANNELS below):

* Direct loops (horizontal stride 1, few channels per group, long rows: LeNet's convs). The input
  (and the cotangent) are copied to a (channels, rows, columns, batch) layout with the padding
  written as zeros; an output row across the batch is then OW*N contiguous elements and every
  kernel tap reads a contiguous slice of the same length at a fixed offset, so all three ops are
  long unit-stride multiply-add loops with no bounds tests (see the comment above
  ``_to_batch_inner``). conv2d: 8 taps x 2 output channels per pass; conv2d_input_grad: output
  channels x 2 input channels added into padded batch-innermost planes; conv2d_weight_grad: dot
  products, 4 taps x 2 output channels per pass. Work items (rows, channel pairs, tap groups) run on
  numba's threads when a conv does at least THREADS_MIN_MACS multiply-adds.
* im2col + GEMM (``numpy.matmul`` on BLAS), for everything else:

  - ``conv2d``: ``cols[n, g] (Cg*KH*KW, OH*OW)`` from the padded input, then
    ``out[n, g] = w[g] (Og, Cg*KH*KW) @ cols[n, g]``, one batched matmul written into the output.
  - ``conv2d_input_grad``: ``cols[n, g] = w[g]^T @ g[n, g]`` (batched matmul), then col2im adds each
    column element back at its input position.
  - ``conv2d_weight_grad``: ONE GEMM per group with the batch in the contraction:
    ``dw[g] = gT[g] (Og, N*OH*OW) @ cols[g]^T`` with the columns laid out as (C*KH*KW, N, OH*OW) and
    the cotangent transposed to (G, Og, N, OH*OW) (a copy of the small cotangent, not of the columns).

Pooling follows the references in ``kernelflow/ir/primitives/window.py`` exactly: max pooling takes
the value at, and routes each window's gradient to its FIRST maximum in row-major order, a
NaN counting as the maximum (torch's choice); padding elements are never selected. Max pooling's
forward runs the windows of an output row together, one window element per pass with a select
(no branch); select_and_scatter_add of non-overlapping unpadded windows at batch >= POOL_MIN_BATCH
runs on batch-innermost copies (branch-free vector loops over the batch); otherwise the gradients
(select_and_scatter_add, select_and_gather) search each window in turn.

The pooling loops run along an output row (``ow``) with the in-bounds range computed up front.
"""
from __future__ import annotations

import numpy as np
import numba
from numba import njit, prange

from .blas import matmul

_JIT = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)
# Convolution loops: multiply-adds fused (one rounding, as in BLAS); the weight gradient's dot
# products also reassociated, which is what lets a float sum use vector lanes.
_CONTRACT = dict(_JIT, fastmath={"contract"})
_REASSOC = dict(_JIT, fastmath={"contract", "reassoc"})

# Which convolutions run as direct loops (any padding, dilation, groups and vertical stride), and
# which as im2col + BLAS GEMM: direct when the horizontal stride is 1, a group has at most
# DIRECT_MAX_GROUP_CHANNELS output channels and an output row across the batch (OW*N) has at least
# DIRECT_MIN_ROW elements. The direct loops run at ~28 GMAC/s whatever the channel counts (one
# thread, AVX2 width); GEMM gets faster with more output channels. Measured (ms, direct / GEMM,
# forward; the gradients alike): LeNet conv2 (64,6,14,14)*(16,6,5,5) 0.60 / 1.36;
# (64,32,16,16)*(32,32,3,3) 5.3 / 7.4; (32,64,16,16)*(64,64,3,3) 10.5 / 9.3;
# (16,128,8,8)*(128,128,3,3) 6.4 / 3.6; batch 1 (1,32,56,56)*(32,32,3,3) 1.5 / 1.1.
DIRECT_MAX_GROUP_CHANNELS = 32
DIRECT_MIN_ROW = 128
# Direct convs with at least this many multiply-adds (~0.5 ms on one core) run their work items on
# numba's threads. Measured on the 2-core machines: (64,32,16,16)*(32,32,3,3), 151M, 6.2 -> 3.9 ms
# with 2 threads on a quiet machine; LeNet's conv2 (15M) 0.57 -> 0.46 ms quiet, but no gain at all
# (and up to 2x slower) while other processes hold a core, which is the usual state of a shared
# machine; conv1 (7.5M) never gained. The copies in and out of the batch-innermost layout stay
# serial.
THREADS_MIN_MACS = 1 << 24

# select_and_scatter_add of non-overlapping windows without padding runs on batch-innermost copies
# (vector loops over the batch) from this batch size; smaller batches (short vectors, and the copies
# in and out cost more than they save) and other windows search each window in turn. Measured, one
# thread, 2x2 windows: LeNet's (64,6,28,28) 0.67 -> 0.51 ms, (64,16,10,10) 0.22 -> 0.12;
# (N,16,28,28) by window / batch innermost: N=8 0.21 / 0.28, N=16 0.42 / 0.34, N=64 1.77 / 1.48.
POOL_MIN_BATCH = 16

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


# -- direct convolution, batch innermost ----------------------------------------------------------
# Tensors are copied to a (channels, rows, columns, batch) layout: one output row of one channel is
# then OW*N contiguous elements, and each kernel tap (c, i, j) reads a contiguous input slice of the
# same length at a fixed offset. Every loop below runs along such a row, unit-stride and long (640
# elements for LeNet's second conv at batch 64), with no padding tests: the copies carry the zero
# padding. Several taps and two output rows go to a pass: a pass loads and stores each accumulator
# once per 4-8 multiply-adds and shares the input loads between the two outputs (numba cannot keep
# an accumulator in registers across passes; this keeps the loops near the FMA rate, ~30-40 GMAC/s
# on one core at LLVM's 256-bit vector width). Index slices (``buf[offset:]``, indexed from 0) keep
# the loop indices provably non-negative: a signed ``buf[offset + q]`` makes numba test for
# negative indices and LLVM falls back to gathers.
@njit(**_JIT)
def _to_batch_inner(x, xt, pt, pl):
    """xt (C, HP, WP, N) <- x (N, C, H, W) with the batch innermost and zero padding: pt rows on top,
    pl columns on the left, the rest of HP x WP at the bottom and right. Eight images at a time, so
    that each column writes eight contiguous elements (1.5-2x faster than one image at a time)."""
    n_, c_, h, w = x.shape
    hp, wp = xt.shape[1], xt.shape[2]
    row = wp * n_
    xtf = xt.reshape(-1)
    for c in range(c_):
        for y in range(hp):
            dst = xtf[(c * hp + y) * row:(c * hp + y + 1) * row]
            if y < pt or y >= pt + h:
                dst[:] = 0
                continue
            dst[:pl * n_] = 0
            dst[(pl + w) * n_:] = 0
            n = 0
            ys = y - pt
            while n + 8 <= n_:
                r0, r1, r2, r3 = x[n, c, ys], x[n + 1, c, ys], x[n + 2, c, ys], x[n + 3, c, ys]
                r4, r5, r6, r7 = x[n + 4, c, ys], x[n + 5, c, ys], x[n + 6, c, ys], x[n + 7, c, ys]
                for b in range(w):
                    d = dst[(b + pl) * n_ + n:]
                    d[0], d[1], d[2], d[3] = r0[b], r1[b], r2[b], r3[b]
                    d[4], d[5], d[6], d[7] = r4[b], r5[b], r6[b], r7[b]
                n += 8
            while n < n_:
                src = x[n, c, ys]
                for b in range(w):
                    dst[(b + pl) * n_ + n] = src[b]
                n += 1
    return


@njit(**_JIT)
def _from_batch_inner(acc, out, c, y):
    """out[n, c, y, b] = acc[b * N + n]: one batch-innermost row back to NCHW."""
    n_, w = out.shape[0], out.shape[3]
    for n in range(n_):
        dst = out[n, c, y]
        for b in range(w):
            dst[b] = acc[b * n_ + n]
    return


@njit(**_JIT)
def _batch_inner_to_nchw(xt, out):
    """out (N, C, H, W) <- xt (C, H, W, N), the inverse of _to_batch_inner without padding."""
    c_, h, w, n_ = xt.shape
    xf = xt.reshape(-1)
    for c in range(c_):
        for y in range(h):
            _from_batch_inner(xf[(c * h + y) * w * n_:], out, c, y)
    return


@njit(**_JIT)
def _tap_offsets(cg, kh, kw, hp, wp, n_, dh, dw):
    """Offset of tap (c, i, j) from a window's first element in a (C, HP, WP, N) tensor, in
    (c, i, j) order (the order of a weight's flattened (C/groups, KH, KW))."""
    offs = np.empty(cg * kh * kw, np.int64)
    for c in range(cg):
        for i in range(kh):
            for j in range(kw):
                offs[(c * kh + i) * kw + j] = ((c * hp + i * dh) * wp + j * dw) * n_
    return offs


@njit(**_CONTRACT)
def _add_taps(acc, src, offs, wts):
    """acc[q] += sum_t wts[t] * src[offs[t] + q] for one output (a lone channel of a pair; depthwise
    convs): 8, then 4, then 1 taps per pass."""
    length, ntaps = acc.size, offs.size
    t = 0
    while t + 8 <= ntaps:
        a0, a1, a2, a3 = wts[t], wts[t + 1], wts[t + 2], wts[t + 3]
        a4, a5, a6, a7 = wts[t + 4], wts[t + 5], wts[t + 6], wts[t + 7]
        s0, s1, s2, s3 = src[offs[t]:], src[offs[t + 1]:], src[offs[t + 2]:], src[offs[t + 3]:]
        s4, s5, s6, s7 = src[offs[t + 4]:], src[offs[t + 5]:], src[offs[t + 6]:], src[offs[t + 7]:]
        for q in range(length):
            acc[q] += (a0 * s0[q] + a1 * s1[q] + a2 * s2[q] + a3 * s3[q]
                       + a4 * s4[q] + a5 * s5[q] + a6 * s6[q] + a7 * s7[q])
        t += 8
    while t + 4 <= ntaps:
        a0, a1, a2, a3 = wts[t], wts[t + 1], wts[t + 2], wts[t + 3]
        s0, s1, s2, s3 = src[offs[t]:], src[offs[t + 1]:], src[offs[t + 2]:], src[offs[t + 3]:]
        for q in range(length):
            acc[q] += a0 * s0[q] + a1 * s1[q] + a2 * s2[q] + a3 * s3[q]
        t += 4
    while t < ntaps:
        a0, s0 = wts[t], src[offs[t]:]
        for q in range(length):
            acc[q] += a0 * s0[q]
        t += 1
    return


@njit(**_CONTRACT)
def _add_taps_pair(acc0, acc1, src, offs, wts0, wts1):
    """acc0[q] += sum_t wts0[t] * src[offs[t] + q] and acc1 likewise with wts1: two outputs share
    each pass's loads of src (8 taps x 2 outputs per pass: 16 multiply-adds for 8 + 2 loads)."""
    length, ntaps = acc0.size, offs.size
    t = 0
    while t + 8 <= ntaps:
        a0, a1, a2, a3 = wts0[t], wts0[t + 1], wts0[t + 2], wts0[t + 3]
        a4, a5, a6, a7 = wts0[t + 4], wts0[t + 5], wts0[t + 6], wts0[t + 7]
        b0, b1, b2, b3 = wts1[t], wts1[t + 1], wts1[t + 2], wts1[t + 3]
        b4, b5, b6, b7 = wts1[t + 4], wts1[t + 5], wts1[t + 6], wts1[t + 7]
        s0, s1, s2, s3 = src[offs[t]:], src[offs[t + 1]:], src[offs[t + 2]:], src[offs[t + 3]:]
        s4, s5, s6, s7 = src[offs[t + 4]:], src[offs[t + 5]:], src[offs[t + 6]:], src[offs[t + 7]:]
        for q in range(length):
            x0, x1, x2, x3, x4, x5, x6, x7 = s0[q], s1[q], s2[q], s3[q], s4[q], s5[q], s6[q], s7[q]
            acc0[q] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4 + a5 * x5 + a6 * x6 + a7 * x7
            acc1[q] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4 + b5 * x5 + b6 * x6 + b7 * x7
        t += 8
    while t + 4 <= ntaps:
        a0, a1, a2, a3 = wts0[t], wts0[t + 1], wts0[t + 2], wts0[t + 3]
        b0, b1, b2, b3 = wts1[t], wts1[t + 1], wts1[t + 2], wts1[t + 3]
        s0, s1, s2, s3 = src[offs[t]:], src[offs[t + 1]:], src[offs[t + 2]:], src[offs[t + 3]:]
        for q in range(length):
            x0, x1, x2, x3 = s0[q], s1[q], s2[q], s3[q]
            acc0[q] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            acc1[q] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
        t += 4
    while t < ntaps:
        a0, b0, s0 = wts0[t], wts1[t], src[offs[t]:]
        for q in range(length):
            acc0[q] += a0 * s0[q]
            acc1[q] += b0 * s0[q]
        t += 1
    return


@njit(**_CONTRACT)
def _conv_out_rows(item, xt, w, out, sh, groups, offs):
    """Output row a of two output channels of a group (or one at the group's end), OW*N elements
    each with the batch innermost: the sum over the taps of the tap's weight times the input slice at
    the tap's offset from the row's first window."""
    _, hp, wp, n_ = xt.shape
    o_, cg = w.shape[0], w.shape[1]
    oh, ow = out.shape[2], out.shape[3]
    og = o_ // groups
    per_group = (og + 1) // 2
    block, a = item // oh, item % oh
    g = block // per_group
    o = g * og + 2 * (block % per_group)
    wr, src = w.reshape(o_, -1), xt.reshape(-1)[(g * cg * hp + a * sh) * wp * n_:]
    acc0 = np.zeros(ow * n_, out.dtype)
    if o + 1 == (g + 1) * og:  # a lone last channel
        _add_taps(acc0, src, offs, wr[o])
    else:
        acc1 = np.zeros(ow * n_, out.dtype)
        _add_taps_pair(acc0, acc1, src, offs, wr[o], wr[o + 1])
        _from_batch_inner(acc1, out, o + 1, a)
    _from_batch_inner(acc0, out, o, a)
    return


@njit(**_CONTRACT)
def _conv_in_channels(block, gt, w, dxt, out, sh, pt, pl, dh, dw, groups):
    """Two input channels c, c2 of a group (or one at the group's end) of the input gradient: the
    padded batch-innermost planes dxt[c], dxt[c2] (zeroed here) get, for each kernel tap (i, j) and
    output row a, the output-gradient rows (OW*N) of the group's output channels times their
    weights, at row a*sh + i*dh and column offset j*dw; their unpadded parts then go back to NCHW."""
    o_, oh, ow, n_ = gt.shape
    cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    wp = dxt.shape[2]
    og = o_ // groups
    per_group = (cg + 1) // 2
    g = block // per_group
    c = g * cg + 2 * (block % per_group)
    lone = c + 1 == (g + 1) * cg  # a lone last channel
    c2 = c if lone else c + 1
    length = ow * n_
    plane0, plane1 = dxt[c].reshape(-1), dxt[c2].reshape(-1)
    plane0[:] = 0
    plane1[:] = 0
    offs = np.empty(og, np.int64)
    wts0, wts1 = np.empty(og, out.dtype), np.empty(og, out.dtype)
    for k in range(og):
        offs[k] = (g * og + k) * oh * length
    gf = gt.reshape(-1)
    for i in range(kh):
        for j in range(kw):
            for k in range(og):
                wts0[k] = w[g * og + k, c - g * cg, i, j]
                wts1[k] = w[g * og + k, c2 - g * cg, i, j]
            for a in range(oh):
                start = ((a * sh + i * dh) * wp + j * dw) * n_
                if lone:
                    _add_taps(plane0[start:start + length], gf[a * length:], offs, wts0)
                else:
                    _add_taps_pair(plane0[start:start + length], plane1[start:start + length],
                                   gf[a * length:], offs, wts0, wts1)
    for y in range(out.shape[2]):
        _from_batch_inner(plane0[((y + pt) * wp + pl) * n_:], out, c, y)
        _from_batch_inner(plane1[((y + pt) * wp + pl) * n_:], out, c2, y)
    return


@njit(**_REASSOC)
def _conv_weight_channels(item, xt, gt, out, sh, groups, offs):
    """Work item ``item`` of the weight gradient: four taps (flattened C/groups*KH*KW order) of two
    output channels (channels 2*k and 2*k+1 of a group, or one at the group's end). Each is the sum
    over output rows of the dot product of the output-gradient row (OW*N) with the input slice at
    the tap's offset. Two channels x four taps per pass: 6 loads per 8 multiply-adds. Float sums
    are reassociated (vector lanes), like BLAS."""
    _, hp, wp, n_ = xt.shape
    o_, oh, ow, _ = gt.shape
    cg = out.shape[1]
    og = o_ // groups
    per_group = (og + 1) // 2
    taps = offs.size
    block, t = item // ((taps + 3) // 4), item % ((taps + 3) // 4) * 4
    g = block // per_group
    o = g * og + 2 * (block % per_group)
    o2 = min(o + 1, (g + 1) * og - 1)  # o2 == o: a lone last channel
    c0 = g * cg
    dw0, dw1 = out.reshape(o_, -1)[o], out.reshape(o_, -1)[o2]
    length = ow * n_
    xf, gf = xt.reshape(-1), gt.reshape(-1)
    zero = np.zeros(1, out.dtype)[0]
    last = min(t + 4, taps) - 1  # past the last tap, the 4-wide pass repeats it (dropped)
    t0, t1, t2, t3 = offs[t], offs[min(t + 1, last)], offs[min(t + 2, last)], offs[last]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    if o2 == o:  # a lone last channel: one row of accumulators
        for a in range(oh):
            g0 = gf[(o * oh + a) * length:]
            xr = xf[(c0 * hp + a * sh) * wp * n_:]
            x0, x1, x2, x3 = xr[t0:], xr[t1:], xr[t2:], xr[t3:]
            for q in range(length):
                u = g0[q]
                s00 += u * x0[q]
                s01 += u * x1[q]
                s02 += u * x2[q]
                s03 += u * x3[q]
    for a in range(oh if o2 != o else 0):
        g0, g1 = gf[(o * oh + a) * length:], gf[(o2 * oh + a) * length:]
        xr = xf[(c0 * hp + a * sh) * wp * n_:]
        x0, x1, x2, x3 = xr[t0:], xr[t1:], xr[t2:], xr[t3:]
        for q in range(length):
            u, v = g0[q], g1[q]
            y0, y1, y2, y3 = x0[q], x1[q], x2[q], x3[q]
            s00 += u * y0
            s01 += u * y1
            s02 += u * y2
            s03 += u * y3
            s10 += v * y0
            s11 += v * y1
            s12 += v * y2
            s13 += v * y3
    first, second = (s00, s01, s02, s03), (s10, s11, s12, s13)
    for k in range(last - t + 1):
        dw0[t + k] = first[k]
        if o2 != o:
            dw1[t + k] = second[k]
    return


# The same loops over channels, serial and with threads (a separate function each: numba's disk
# cache does not tell a parallel compilation of a function from a serial one).
@njit(**_JIT)
def _conv_direct(xt, w, out, sh, groups, offs):
    for item in range(groups * ((out.shape[1] // groups + 1) // 2) * out.shape[2]):
        _conv_out_rows(item, xt, w, out, sh, groups, offs)
    return


@njit(parallel=True, **_JIT)
def _conv_direct_threads(xt, w, out, sh, groups, offs):
    for item in prange(groups * ((out.shape[1] // groups + 1) // 2) * out.shape[2]):
        _conv_out_rows(item, xt, w, out, sh, groups, offs)
    return


@njit(**_JIT)
def _conv_input_grad_direct(gt, w, dxt, out, sh, pt, pl, dh, dw, groups):
    for block in range(groups * ((out.shape[1] // groups + 1) // 2)):
        _conv_in_channels(block, gt, w, dxt, out, sh, pt, pl, dh, dw, groups)
    return


@njit(parallel=True, **_JIT)
def _conv_input_grad_direct_threads(gt, w, dxt, out, sh, pt, pl, dh, dw, groups):
    for block in prange(groups * ((out.shape[1] // groups + 1) // 2)):
        _conv_in_channels(block, gt, w, dxt, out, sh, pt, pl, dh, dw, groups)
    return


@njit(**_JIT)
def _conv_weight_grad_direct(xt, gt, out, sh, groups, offs):
    for item in range(groups * ((out.shape[0] // groups + 1) // 2) * ((offs.size + 3) // 4)):
        _conv_weight_channels(item, xt, gt, out, sh, groups, offs)
    return


@njit(parallel=True, **_JIT)
def _conv_weight_grad_direct_threads(xt, gt, out, sh, groups, offs):
    for item in prange(groups * ((out.shape[0] // groups + 1) // 2) * ((offs.size + 3) // 4)):
        _conv_weight_channels(item, xt, gt, out, sh, groups, offs)
    return


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
    input is never empty: the shape rule keeps padding < window). The windows inside the input
    columns of an output row are done together, one window element per pass along the row: the
    running maximum is a select (no branch), so a row of windows costs a few cycles per element
    (random data makes a branchy maximum mispredict). Windows clipped by padding: one by one.
    Unsigned column indices: no negative-index test in the loop (0.22 -> 0.16 ms per 300K inputs)."""
    planes, h, w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    usw = np.uint64(sw)
    blo = min((pl + sw - 1) // sw, ow)                  # first b with b*sw - pl >= 0
    bhi = max(min((w + pl - kw) // sw + 1, ow), blo)    # past the last b with b*sw - pl + kw <= w
    for p in range(planes):
        for a in range(oh):
            i0, i1 = max(a * sh - pt, 0), min(a * sh - pt + kh, h)
            orow = of[(p * oh + a) * ow:(p * oh + a + 1) * ow]
            for b in range(ow):
                if b < blo or b >= bhi:
                    j0, j1 = max(b * sw - pl, 0), min(b * sw - pl + kw, w)
                    orow[b] = xf[_first_max(xf, p, h, w, i0, i1, j0, j1)]
            best = orow[blo:bhi]
            for ih in range(i0, i1):
                for jw in range(kw):
                    row = xf[(p * h + ih) * w + blo * sw - pl + jw:]
                    if ih == i0 and jw == 0:
                        for b in range(bhi - blo):
                            best[b] = row[np.uint64(b) * usw]
                        continue
                    for b in range(bhi - blo):
                        v, cur = row[np.uint64(b) * usw], best[b]
                        best[b] = v if (cur == cur) & ((v > cur) | (v != v)) else cur
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
def _select_scatter_batch_inner(xt, gi, dxi, kh, kw, sh, sw):
    """select_and_scatter_add for windows that neither overlap nor reach into padding, on
    batch-innermost copies: xt (C, H, W, N) the input, gi (C, OH, OW, N) and dxi (C, H, W, N) the
    cotangent and the result viewed as integers of the element width. Every window tap is then N
    contiguous elements, so both passes are unit-stride vector loops over the batch: the running
    maximum (a select), then each tap in row-major order writes the cotangent's bits where it is the
    first element equal to the maximum (or the first NaN) and zero bits elsewhere (each element is
    in at most one window: a plain store)."""
    c_, h, w, n_ = xt.shape
    oh, ow = gi.shape[1], gi.shape[2]
    xf, gf, df = xt.reshape(-1), gi.reshape(-1), dxi.reshape(-1)
    df[:] = 0
    best = np.empty(n_, xt.dtype)
    taken = np.empty(n_, gi.dtype)
    for c in range(c_):
        for a in range(oh):
            for b in range(ow):
                first = ((c * h + a * sh) * w + b * sw) * n_
                best[:] = xf[first:first + n_]
                for ih in range(kh):
                    for jw in range(kw):
                        if ih == 0 and jw == 0:
                            continue
                        tap = xf[first + (ih * w + jw) * n_:]
                        for n in range(n_):
                            v, cur = tap[n], best[n]
                            best[n] = v if (cur == cur) & ((v > cur) | (v != v)) else cur
                taken[:] = 0
                grow = gf[((c * oh + a) * ow + b) * n_:]
                for ih in range(kh):
                    for jw in range(kw):
                        k = first + (ih * w + jw) * n_
                        tap, dst = xf[k:], df[k:]
                        for n in range(n_):
                            v, done, gv = tap[n], taken[n], grow[n]
                            mask = -((v == best[n]) | (v != v)) & ~done  # all ones at the first hit
                            taken[n] = done | mask
                            dst[n] = gv & mask
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


def _conv2d_gemm(x, w, out, scratch, key, stride, padding, dilation, groups):
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = out.shape[2], out.shape[3]
    rows, length = c * kh * kw, oh * ow
    cols = _scratch(scratch, key, n * rows * length, x.dtype)
    _im2col(x, cols, kh, kw, oh, ow, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1],
            rows * length, length)
    matmul(w.reshape(groups, o // groups, cg * kh * kw), cols.reshape(n, groups, cg * kh * kw, length),
           out.reshape(n, groups, o // groups, length), n * o * rows // groups * length)


def _conv2d_input_grad_gemm(g, w, out, scratch, key, stride, padding, dilation, groups, input_shape=None):
    n, c, _, _ = out.shape
    o, cg, kh, kw = w.shape
    oh, ow = g.shape[2], g.shape[3]
    rows, length = c * kh * kw, oh * ow
    cols = _scratch(scratch, key, n * rows * length, g.dtype)
    wt = w.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    matmul(wt, g.reshape(n, groups, o // groups, length), cols.reshape(n, groups, cg * kh * kw, length),
           n * o * rows // groups * length)
    _col2im(cols, out, kh, kw, oh, ow, stride[0], stride[1], padding[0], padding[2], dilation[0], dilation[1])


def _conv2d_weight_grad_gemm(x, g, out, scratch, key, stride, padding, dilation, groups, weight_shape=None):
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


def _direct(out_shape, w_shape, stride, groups) -> bool:
    """Direct loops or im2col + GEMM for a conv with this output and weight shape (the rule above)."""
    n, o, _, ow = out_shape
    return stride[1] == 1 and o // groups <= DIRECT_MAX_GROUP_CHANNELS and ow * n >= DIRECT_MIN_ROW


def _threads(macs) -> bool:
    return macs >= THREADS_MIN_MACS and numba.get_num_threads() > 1


def _conv_macs(out_shape, w_shape) -> int:
    """Multiply-adds of a conv2d with this output and weight shape (all three ops do as many)."""
    n, o, oh, ow = out_shape
    return n * o * oh * ow * w_shape[1] * w_shape[2] * w_shape[3]


def _batch_inner(scratch, key, x, pads) -> np.ndarray:
    """x (N, C, H, W) copied to a scratch (C, H + top + bottom, W + left + right, N)."""
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    shape = (c, h + top + bottom, w + left + right, n)
    xt = _scratch(scratch, key, int(np.prod(shape)), x.dtype).reshape(shape)
    _to_batch_inner(x, xt, top, left)
    return xt


def run_conv2d(x, w, out, scratch, key, stride, padding, dilation, groups):
    macs = _conv_macs(out.shape, w.shape)
    if not _direct(out.shape, w.shape, stride, groups):
        return _conv2d_gemm(x, w, out, scratch, key, stride, padding, dilation, groups)
    xt = _batch_inner(scratch, key, x, padding)
    _, cg, kh, kw = w.shape
    offs = _tap_offsets(cg, kh, kw, xt.shape[1], xt.shape[2], xt.shape[3], dilation[0], dilation[1])
    run = _conv_direct_threads if _threads(macs) else _conv_direct
    run(xt, w, out, stride[0], groups, offs)


def run_conv2d_input_grad(g, w, out, scratch, key, stride, padding, dilation, groups, input_shape=None):
    macs = _conv_macs(g.shape, w.shape)
    if not _direct(g.shape, w.shape, stride, groups):
        return _conv2d_input_grad_gemm(g, w, out, scratch, key, stride, padding, dilation, groups)
    gt = _batch_inner(scratch, key, g, (0, 0, 0, 0))
    n, c, h, wd = out.shape
    top, bottom, left, right = padding
    shape = (c, h + top + bottom, wd + left + right, n)
    dxt = _scratch(scratch, (key, "dx"), int(np.prod(shape)), out.dtype).reshape(shape)
    run = _conv_input_grad_direct_threads if _threads(macs) else _conv_input_grad_direct
    run(gt, w, dxt, out, stride[0], top, left, dilation[0], dilation[1], groups)


def run_conv2d_weight_grad(x, g, out, scratch, key, stride, padding, dilation, groups, weight_shape=None):
    macs = _conv_macs(g.shape, out.shape)
    if not _direct(g.shape, out.shape, stride, groups):
        return _conv2d_weight_grad_gemm(x, g, out, scratch, key, stride, padding, dilation, groups)
    xt = _batch_inner(scratch, key, x, padding)
    gt = _batch_inner(scratch, (key, "g"), g, (0, 0, 0, 0))
    _, cg, kh, kw = out.shape
    offs = _tap_offsets(cg, kh, kw, xt.shape[1], xt.shape[2], xt.shape[3], dilation[0], dilation[1])
    run = _conv_weight_grad_direct_threads if _threads(macs) else _conv_weight_grad_direct
    run(xt, gt, out, stride[0], groups, offs)


def run_reduce_window_max(x, out, scratch, key, window, stride, padding):
    _pool_max(x, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def _bits(a: np.ndarray) -> np.ndarray:
    """``a`` viewed as signed integers of its element width (bit masks select elements)."""
    return a.view(f"i{a.dtype.itemsize}")


def run_select_and_scatter_add(x, g, out, scratch, key, window, stride, padding):
    apart = stride[0] >= window[0] and stride[1] >= window[1]
    if apart and not any(padding) and x.shape[0] >= POOL_MIN_BATCH:
        # non-overlapping windows inside the input: vector loops over the batch (rule at POOL_MIN_BATCH)
        xt = _batch_inner(scratch, key, x, (0, 0, 0, 0))
        gt = _batch_inner(scratch, (key, "g"), g, (0, 0, 0, 0))
        dxt = _scratch(scratch, (key, "dx"), xt.size, out.dtype).reshape(xt.shape)
        _select_scatter_batch_inner(xt, _bits(gt), _bits(dxt), window[0], window[1], stride[0], stride[1])
        _batch_inner_to_nchw(dxt, out)
        return
    _select_scatter(x, g, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def run_select_and_gather(x, t, out, scratch, key, window, stride, padding):
    _select_gather(x, t, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


def run_reduce_window_sum(x, out, scratch, key, window, stride, padding):
    _pool_sum(x, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2], x.dtype.type(0))


def run_reduce_window_sum_transpose(g, out, scratch, key, window, stride, padding, input_shape=None):
    _pool_sum_transpose(g, out, window[0], window[1], stride[0], stride[1], padding[0], padding[2])


RUNNERS = {op: globals()[f"run_{op}"] for op in WINDOW_OPS}

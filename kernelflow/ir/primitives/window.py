"""Window primitives: 2-D convolution and pooling on NCHW tensors (torch.nn.functional conventions).

Attributes (all tuples of ints): ``stride=(sh, sw)``, ``padding=(top, bottom, left, right)``,
``dilation=(dh, dw)``, ``window=(kh, kw)``; ``groups`` is an int; ``input_shape``/``weight_shape``
are full shapes. An output spatial size is ``(H + top + bottom - dh*(kh-1) - 1) // sh + 1``.

The family is closed under differentiation: every gradient is another primitive of this module.
  conv2d(x, w)               -> [conv2d_input_grad(g, w), conv2d_weight_grad(x, g)]
  conv2d_input_grad(g, w)    -> [conv2d(c, w), conv2d_weight_grad(c, g)]
  conv2d_weight_grad(x, g)   -> [conv2d_input_grad(g, c), conv2d(x, c)]
  reduce_window_max(x)       -> [select_and_scatter_add(x, g)]
  select_and_scatter_add(x, g) -> [None, select_and_gather(x, c)]
  select_and_gather(x, t)    -> [None, select_and_scatter_add(x, g)]
  reduce_window_sum(x)       -> [reduce_window_sum_transpose(g)]
  reduce_window_sum_transpose(g) -> [reduce_window_sum(c)]
Max pooling routes each window to its FIRST maximum in row-major order (torch's choice on ties).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..primitive import Primitive, register
from ..types import DTypeError, ShapeError, TensorType


# -- attribute checks --------------------------------------------------------------------------
def _ints(name: str, value, length: int, minimum: int) -> tuple[int, ...]:
    """A tuple of ``length`` ints, each >= minimum."""
    ok = (isinstance(value, tuple) and len(value) == length
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value))
    if not ok:
        raise ShapeError(f"{name} must be a tuple of {length} ints >= {minimum}, got {value!r}")
    return value


def _groups(groups) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ShapeError(f"groups must be a positive int, got {groups!r}")
    return groups


def _check_rank4(what: str, t) -> None:
    shape = t.shape if isinstance(t, TensorType) else t
    if len(shape) != 4:
        raise ShapeError(f"{what} must be rank 4 (N, C, H, W), got shape {list(shape)}")


def _check_dtype(*types: TensorType) -> None:
    first = types[0].dtype
    for t in types[1:]:
        if t.dtype != first:
            raise DTypeError(f"operand dtypes differ: {', '.join(str(t.dtype) for t in types)}")
    if not (first.is_float or first.is_integer):
        raise DTypeError(f"needs float or integer operands, got {first}")


def _out_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Number of window positions along one dim (may be <= 0: the caller reports it)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def _spatial_out(in_shape, kernel_hw, stride, padding, dilation, what: str) -> tuple[int, int]:
    """(OH, OW) of a window op over the last two dims of ``in_shape``; ShapeError if empty."""
    kh, kw = kernel_hw
    oh = _out_size(in_shape[2], kh, stride[0], padding[0], padding[1], dilation[0])
    ow = _out_size(in_shape[3], kw, stride[1], padding[2], padding[3], dilation[1])
    if oh < 1 or ow < 1:
        raise ShapeError(
            f"{what} {list(kernel_hw)} (dilation {list(dilation)}) does not fit input shape "
            f"{list(in_shape)} with padding {list(padding)} and stride {list(stride)}: "
            f"output spatial size would be {oh}x{ow}")
    return oh, ow


def _conv_attrs(stride, padding, dilation, groups):
    return (_ints("stride", stride, 2, 1), _ints("padding", padding, 4, 0),
            _ints("dilation", dilation, 2, 1), _groups(groups))


def _conv_out_shape(x_shape, w_shape, stride, padding, dilation, groups) -> tuple[int, ...]:
    """The conv2d output shape for these input/weight shapes, with every check and a clear error."""
    _check_rank4("conv input", x_shape)
    if len(w_shape) != 4:
        raise ShapeError(f"conv weight must be rank 4 (O, C/groups, KH, KW), got shape {list(w_shape)}")
    n, c, _, _ = x_shape
    o, cg, kh, kw = w_shape
    if c % groups or o % groups:
        raise ShapeError(f"groups={groups} must divide the input channels ({c}, input shape {list(x_shape)}) "
                         f"and the output channels ({o}, weight shape {list(w_shape)})")
    if cg != c // groups:
        raise ShapeError(f"weight shape {list(w_shape)} needs {c // groups} input channels per group "
                         f"(input shape {list(x_shape)}, groups={groups}), has {cg}")
    if kh < 1 or kw < 1:
        raise ShapeError(f"kernel {[kh, kw]} of weight shape {list(w_shape)} is empty")
    oh, ow = _spatial_out(x_shape, (kh, kw), stride, padding, dilation, "kernel")
    return (n, o, oh, ow)


def _pool_attrs(window, stride, padding):
    return (_ints("window", window, 2, 1), _ints("stride", stride, 2, 1), _ints("padding", padding, 4, 0))


def _pool_out_shape(x_shape, window, stride, padding) -> tuple[int, ...]:
    _check_rank4("pooling input", x_shape)
    oh, ow = _spatial_out(x_shape, window, stride, padding, (1, 1), "window")
    return (x_shape[0], x_shape[1], oh, ow)


def _check_max_padding(window, padding) -> None:
    """Padding smaller than the window, so that every window holds at least one real element."""
    kh, kw = window
    top, bottom, left, right = padding
    if max(top, bottom) >= kh or max(left, right) >= kw:
        raise ShapeError(f"max pooling padding {list(padding)} must be smaller than the window {list(window)} "
                         f"(a window of padding only has no maximum)")


def _check_same_shape(what: str, t: TensorType, shape) -> None:
    if t.shape != tuple(shape):
        raise ShapeError(f"{what} has shape {list(t.shape)}, expected {list(shape)}")


# -- shape rules -------------------------------------------------------------------------------
def _conv2d_rule(x: TensorType, w: TensorType, *, stride, padding, dilation, groups):
    _check_dtype(x, w)
    attrs = _conv_attrs(stride, padding, dilation, groups)
    return TensorType(x.dtype, _conv_out_shape(x.shape, w.shape, *attrs))


def _conv2d_input_grad_rule(g: TensorType, w: TensorType, *, input_shape, stride, padding, dilation, groups):
    _check_dtype(g, w)
    attrs = _conv_attrs(stride, padding, dilation, groups)
    input_shape = _ints("input_shape", input_shape, 4, 0)
    _check_same_shape(f"cotangent (the conv of input shape {list(input_shape)} with weight shape "
                      f"{list(w.shape)}, stride {list(stride)}, padding {list(padding)}, "
                      f"dilation {list(dilation)})", g, _conv_out_shape(input_shape, w.shape, *attrs))
    return TensorType(g.dtype, input_shape)


def _conv2d_weight_grad_rule(x: TensorType, g: TensorType, *, weight_shape, stride, padding, dilation, groups):
    _check_dtype(x, g)
    attrs = _conv_attrs(stride, padding, dilation, groups)
    weight_shape = _ints("weight_shape", weight_shape, 4, 0)
    _check_same_shape(f"cotangent (the conv of input shape {list(x.shape)} with weight shape "
                      f"{list(weight_shape)}, stride {list(stride)}, padding {list(padding)}, "
                      f"dilation {list(dilation)})", g, _conv_out_shape(x.shape, weight_shape, *attrs))
    return TensorType(x.dtype, weight_shape)


def _reduce_window_max_rule(x: TensorType, *, window, stride, padding):
    _check_dtype(x)
    window, stride, padding = _pool_attrs(window, stride, padding)
    _check_max_padding(window, padding)
    return TensorType(x.dtype, _pool_out_shape(x.shape, window, stride, padding))


def _select_and_scatter_add_rule(x: TensorType, g: TensorType, *, window, stride, padding):
    pooled = _reduce_window_max_rule(x, window=window, stride=stride, padding=padding)
    _check_dtype(x, g)
    _check_same_shape(f"cotangent (max pooling of shape {list(x.shape)}, window {list(window)}, "
                      f"stride {list(stride)}, padding {list(padding)})", g, pooled.shape)
    return x


def _select_and_gather_rule(x: TensorType, t: TensorType, *, window, stride, padding):
    pooled = _reduce_window_max_rule(x, window=window, stride=stride, padding=padding)
    _check_dtype(x, t)
    _check_same_shape("the gathered tensor (it must be shaped like the pooled input)", t, x.shape)
    return pooled


def _reduce_window_sum_rule(x: TensorType, *, window, stride, padding):
    _check_dtype(x)
    window, stride, padding = _pool_attrs(window, stride, padding)
    return TensorType(x.dtype, _pool_out_shape(x.shape, window, stride, padding))


def _reduce_window_sum_transpose_rule(g: TensorType, *, window, stride, padding, input_shape):
    _check_dtype(g)
    window, stride, padding = _pool_attrs(window, stride, padding)
    input_shape = _ints("input_shape", input_shape, 4, 0)
    _check_same_shape(f"cotangent (sum pooling of shape {list(input_shape)}, window {list(window)}, "
                      f"stride {list(stride)}, padding {list(padding)})",
                      g, _pool_out_shape(input_shape, window, stride, padding))
    return TensorType(g.dtype, input_shape)


# -- reference helpers -------------------------------------------------------------------------
def _pad(x: np.ndarray, padding, value=0) -> np.ndarray:
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(xp: np.ndarray, kernel_hw, stride, dilation, out_hw) -> np.ndarray:
    """A read-only view (N, C, OH, OW, KH, KW) of the windows of the padded input ``xp``."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_hw, stride, dilation, out_hw
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = sliding_window_view(xp, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]


def _scatter_windows(cols: np.ndarray, padded_hw, stride, dilation) -> np.ndarray:
    """The transpose of ``_windows`` (col2im): add each window element (N, C, OH, OW, KH, KW) back
    at its position of a zero padded input (N, C, HP, WP)."""
    n, c, oh, ow, kh, kw = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = np.zeros((n, c) + tuple(padded_hw), dtype=cols.dtype)
    for i in range(kh):  # each kernel offset touches distinct positions, so += is exact
        for j in range(kw):
            out[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[..., i, j]
    return out


def _crop(xp: np.ndarray, padding, shape) -> np.ndarray:
    top, _, left, _ = padding
    return xp[:, :, top:top + shape[2], left:left + shape[3]]


def _conv2d_reference(x, w, *, stride, padding, dilation, groups):
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    _, _, oh, ow = _conv_out_shape(x.shape, w.shape, stride, padding, dilation, groups)
    cols = _windows(_pad(x, padding), (kh, kw), stride, dilation, (oh, ow))
    cols = cols.reshape(n, groups, cg, oh, ow, kh, kw)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", cols, wg, optimize=True)
    return out.reshape(n, o, oh, ow).astype(x.dtype, copy=False)


def _conv2d_input_grad_reference(g, w, *, input_shape, stride, padding, dilation, groups):
    n, c, h, wd = input_shape
    o, cg, kh, kw = w.shape
    _, _, oh, ow = g.shape
    gg = g.reshape(n, groups, o // groups, oh, ow)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    cols = np.einsum("ngohw,gocij->ngchwij", gg, wg, optimize=True).reshape(n, c, oh, ow, kh, kw)
    padded_hw = (h + padding[0] + padding[1], wd + padding[2] + padding[3])
    xp = _scatter_windows(cols.astype(g.dtype, copy=False), padded_hw, stride, dilation)
    return np.ascontiguousarray(_crop(xp, padding, input_shape))


def _conv2d_weight_grad_reference(x, g, *, weight_shape, stride, padding, dilation, groups):
    n, c, _, _ = x.shape
    o, cg, kh, kw = weight_shape
    _, _, oh, ow = g.shape
    cols = _windows(_pad(x, padding), (kh, kw), stride, dilation, (oh, ow))
    cols = cols.reshape(n, groups, cg, oh, ow, kh, kw)
    gg = g.reshape(n, groups, o // groups, oh, ow)
    out = np.einsum("ngchwij,ngohw->gocij", cols, gg, optimize=True)
    return out.reshape(weight_shape).astype(x.dtype, copy=False)


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _first_max_index(x, window, stride, padding) -> np.ndarray:
    """(N, C, OH, OW): the row-major index within each window of its first maximum (a real element,
    never padding; a NaN counts as the maximum, as in torch)."""
    _, _, oh, ow = _pool_out_shape(x.shape, window, stride, padding)
    cols = _windows(_pad(x, padding, _lowest(x.dtype)), window, stride, (1, 1), (oh, ow))
    real = _windows(_pad(np.ones(x.shape, dtype=bool), padding, False), window, stride, (1, 1), (oh, ow))
    top = cols.max(axis=(4, 5), keepdims=True)
    is_max = cols == top
    if x.dtype.kind == "f":
        is_max |= np.isnan(cols)  # top is NaN exactly when the window holds a NaN
    is_max &= real
    return is_max.reshape(is_max.shape[:4] + (-1,)).argmax(axis=-1)


def _reduce_window_max_reference(x, *, window, stride, padding):
    _, _, oh, ow = _pool_out_shape(x.shape, window, stride, padding)
    cols = _windows(_pad(x, padding, _lowest(x.dtype)), window, stride, (1, 1), (oh, ow))
    return cols.max(axis=(4, 5))


def _select_and_scatter_add_reference(x, g, *, window, stride, padding):
    first = _first_max_index(x, window, stride, padding)
    kh, kw = window
    onehot = first[..., None] == np.arange(kh * kw)
    cols = np.where(onehot, g[..., None], np.zeros((), g.dtype)).reshape(g.shape + (kh, kw))
    padded_hw = (x.shape[2] + padding[0] + padding[1], x.shape[3] + padding[2] + padding[3])
    xp = _scatter_windows(cols, padded_hw, stride, (1, 1))
    return np.ascontiguousarray(_crop(xp, padding, x.shape))


def _select_and_gather_reference(x, t, *, window, stride, padding):
    first = _first_max_index(x, window, stride, padding)
    oh, ow = first.shape[2:]
    cols = _windows(_pad(t, padding), window, stride, (1, 1), (oh, ow))
    cols = cols.reshape(cols.shape[:4] + (-1,))
    return np.take_along_axis(cols, first[..., None], axis=-1)[..., 0]


def _reduce_window_sum_reference(x, *, window, stride, padding):
    _, _, oh, ow = _pool_out_shape(x.shape, window, stride, padding)
    cols = _windows(_pad(x, padding), window, stride, (1, 1), (oh, ow))
    return cols.sum(axis=(4, 5), dtype=x.dtype)


def _reduce_window_sum_transpose_reference(g, *, window, stride, padding, input_shape):
    kh, kw = window
    cols = np.broadcast_to(g[..., None, None], g.shape + (kh, kw))
    padded_hw = (input_shape[2] + padding[0] + padding[1], input_shape[3] + padding[2] + padding[3])
    xp = _scatter_windows(cols, padded_hw, stride, (1, 1))
    return np.ascontiguousarray(_crop(xp, padding, input_shape))


# -- gradient rules ----------------------------------------------------------------------------
def _conv_attrs_of(node) -> dict:
    return {k: node.attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _pool_attrs_of(node) -> dict:
    return {k: node.attrs[k] for k in ("window", "stride", "padding")}


def _conv2d_grad(b, g, node):
    x, w = node.inputs
    a = _conv_attrs_of(node)
    return [b.conv2d_input_grad(g, w, input_shape=x.shape, **a),
            b.conv2d_weight_grad(x, g, weight_shape=w.shape, **a)]


def _conv2d_input_grad_grad(b, c, node):
    g, w = node.inputs
    a = _conv_attrs_of(node)
    return [b.conv2d(c, w, **a), b.conv2d_weight_grad(c, g, weight_shape=w.shape, **a)]


def _conv2d_weight_grad_grad(b, c, node):
    x, g = node.inputs
    a = _conv_attrs_of(node)
    return [b.conv2d_input_grad(g, c, input_shape=x.shape, **a), b.conv2d(x, c, **a)]


def _reduce_window_max_grad(b, g, node):
    (x,) = node.inputs
    return [b.select_and_scatter_add(x, g, **_pool_attrs_of(node))]


def _select_and_scatter_add_grad(b, c, node):
    x, _ = node.inputs
    return [None, b.select_and_gather(x, c, **_pool_attrs_of(node))]


def _select_and_gather_grad(b, g, node):
    x, _ = node.inputs
    return [None, b.select_and_scatter_add(x, g, **_pool_attrs_of(node))]


def _reduce_window_sum_grad(b, g, node):
    (x,) = node.inputs
    return [b.reduce_window_sum_transpose(g, input_shape=x.shape, **_pool_attrs_of(node))]


def _reduce_window_sum_transpose_grad(b, c, node):
    return [b.reduce_window_sum(c, **_pool_attrs_of(node))]


# -- registrations -----------------------------------------------------------------------------
_CONV = {"numba": "@conv", "triton": "@conv"}
_POOL = {"numba": "@pool", "triton": "@pool"}
_CONV_ATTRS = ("stride", "padding", "dilation", "groups")
_POOL_ATTRS = ("window", "stride", "padding")

register(Primitive(
    "conv2d", "window", _conv2d_rule, _conv2d_reference, _conv2d_grad, _CONV,
    attr_names=_CONV_ATTRS,
    doc="conv2d(x[N,C,H,W], w[O,C/groups,KH,KW]) -> [N,O,OH,OW]: torch.nn.functional.conv2d "
        "(cross-correlation) with zero padding (top, bottom, left, right)"))
register(Primitive(
    "conv2d_input_grad", "window", _conv2d_input_grad_rule, _conv2d_input_grad_reference,
    _conv2d_input_grad_grad, _CONV, attr_names=("input_shape",) + _CONV_ATTRS,
    doc="conv2d_input_grad(g, w) -> input_shape: the transpose of conv2d with respect to x"))
register(Primitive(
    "conv2d_weight_grad", "window", _conv2d_weight_grad_rule, _conv2d_weight_grad_reference,
    _conv2d_weight_grad_grad, _CONV, attr_names=("weight_shape",) + _CONV_ATTRS,
    doc="conv2d_weight_grad(x, g) -> weight_shape: the transpose of conv2d with respect to w"))
register(Primitive(
    "reduce_window_max", "window", _reduce_window_max_rule, _reduce_window_max_reference,
    _reduce_window_max_grad, _POOL, attr_names=_POOL_ATTRS,
    doc="max pooling over the last two dims of a rank-4 input, padding with -inf (max_pool2d)"))
register(Primitive(
    "select_and_scatter_add", "window", _select_and_scatter_add_rule, _select_and_scatter_add_reference,
    _select_and_scatter_add_grad, _POOL, attr_names=_POOL_ATTRS,
    doc="select_and_scatter_add(x, g) -> x-shaped: each g element added at the first maximum of x "
        "(row-major) in its window; the gradient of reduce_window_max"))
register(Primitive(
    "select_and_gather", "window", _select_and_gather_rule, _select_and_gather_reference,
    _select_and_gather_grad, _POOL, attr_names=_POOL_ATTRS,
    doc="select_and_gather(x, t) -> pooled shape: the element of t at the first maximum of x in "
        "each window; the transpose of select_and_scatter_add in g"))
register(Primitive(
    "reduce_window_sum", "window", _reduce_window_sum_rule, _reduce_window_sum_reference,
    _reduce_window_sum_grad, _POOL, attr_names=_POOL_ATTRS,
    doc="sum pooling over the last two dims of a rank-4 input with zero padding"))
register(Primitive(
    "reduce_window_sum_transpose", "window", _reduce_window_sum_transpose_rule,
    _reduce_window_sum_transpose_reference, _reduce_window_sum_transpose_grad, _POOL,
    attr_names=_POOL_ATTRS + ("input_shape",),
    doc="reduce_window_sum_transpose(g) -> input_shape: each input position gets the sum of g over "
        "the windows covering it"))

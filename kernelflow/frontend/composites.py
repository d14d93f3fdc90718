"""Composite ops, each written once as a composition of primitives.

They are plain numpy code over ``np.*`` functions and kernelflow primitives, so the same function traces
(``Tracer`` operands dispatch to the IR) and runs eagerly on numpy arrays. Autodiff and fusion only ever
see the primitives they are made of. Convolution and pooling follow torch.nn.functional's conventions
(NCHW inputs, OIHW weights).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import random as kf_random
from .ops import erf, primitive_call, rsqrt, sigmoid  # noqa: F401  (sigmoid is re-exported)
from .tracer import Tracer


def _arr(x):
    return x if isinstance(x, Tracer) else np.asarray(x)


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) % ndim for a in axes))


def relu(x):
    """max(x, 0), with gradient 0 at x == 0 (as torch)."""
    x = _arr(x)
    return np.where(x > 0, x, 0)


def softmax(x, axis=-1):
    x = _arr(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) without overflow: the maximum is subtracted first (rows of -inf give -inf)."""
    x = _arr(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return s
    axes = _axes(axis, x.ndim)
    return np.reshape(s, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def log_softmax(x, axis=-1):
    x = _arr(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def mean(x, axis=None, keepdims=False):
    return np.mean(_arr(x), axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False, ddof=0):
    """The mean squared deviation from the mean (numpy's np.var, ``ddof`` for the unbiased estimate)."""
    x = _arr(x)
    centered = x - np.mean(x, axis=axis, keepdims=True)
    count = math.prod(x.shape[a] for a in _axes(axis, x.ndim)) - ddof
    return np.sum(centered * centered, axis=axis, keepdims=keepdims) / builtins.max(count, 0)


def layer_norm(x, gamma=None, beta=None, eps=1e-5, axis=-1):
    """(x - mean) / sqrt(var + eps) over ``axis`` (an int or a tuple of the trailing axes), then
    ``* gamma + beta`` (broadcast against the trailing dimensions, as torch's weight and bias)."""
    x = _arr(x)
    mu = np.mean(x, axis=axis, keepdims=True)
    centered = x - mu
    variance = np.mean(centered * centered, axis=axis, keepdims=True)
    y = centered * rsqrt(variance + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(x, approximate=False):
    """x * Phi(x). ``approximate=True`` (or 'tanh') uses the tanh form, as torch's approximate='tanh'."""
    x = _arr(x)
    if approximate in (True, "tanh"):
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))
    if approximate not in (False, None, "none"):
        raise ValueError(f"gelu: approximate must be False/'none' or True/'tanh', got {approximate!r}")
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))


def one_hot(labels, n: int, dtype=np.float32):
    """``labels[..., None] == arange(n)`` as ``dtype``: shape labels.shape + (n,)."""
    labels = _arr(labels)
    return (labels[..., None] == np.arange(n)).astype(dtype)


def _nll_of_labels(logp, labels, class_axis: int):
    """-logp at each integer label, as a masked sum over the class axis rather than a gather: the mask is
    index arithmetic, so fusion makes log_softmax + pick + sum one row kernel (forward and backward).
    A label outside [0, C) gives NaN when traced (check_nan finds it) and an IndexError eagerly."""
    n_classes = logp.shape[class_axis]
    if isinstance(labels, np.ndarray) and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)].reshape(-1)[0]
        raise IndexError(f"cross_entropy: label {bad} is out of range for {n_classes} classes")
    classes = np.arange(n_classes).reshape([n_classes if a == class_axis else 1 for a in range(logp.ndim)])
    mask = np.expand_dims(labels, class_axis) == classes
    nll = -np.sum(np.where(mask, logp, 0.0), axis=class_axis)
    return np.where(np.any(mask, axis=class_axis), nll, np.nan)


def cross_entropy(logits, labels, reduction: str = "mean"):
    """torch.nn.functional.cross_entropy: logits (N, C) (or (C,), or (N, C, d1, ...) with classes on
    axis 1) and integer class labels (N,) (or (N, d1, ...)), or class probabilities shaped like logits.
    ``reduction`` is 'mean', 'sum' or 'none'."""
    logits = _arr(logits)
    labels = _arr(labels)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    class_axis = 0 if logits.ndim == 1 else 1
    logp = log_softmax(logits, axis=class_axis)
    if labels.dtype.kind == "f":
        if labels.shape != logits.shape:
            from ..ir import ShapeError  # noqa: PLC0415
            raise ShapeError(f"cross_entropy: class probabilities must have the logits' shape "
                             f"{list(logits.shape)}, got {list(labels.shape)}")
        nll = -np.sum(labels * logp, axis=class_axis)
    else:
        nll = _nll_of_labels(logp, labels, class_axis)
    if reduction == "mean":
        return np.mean(nll)
    if reduction == "sum":
        return np.sum(nll)
    return nll


# -- convolution and pooling (torch.nn.functional conventions) ------------------------------------------------
def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {v!r}")
    return v


def _promote(x, w):
    dt = np.result_type(x.dtype, w.dtype)
    return (x if x.dtype == dt else x.astype(dt)), (w if w.dtype == dt else w.astype(dt))


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation as torch.nn.functional.conv2d: x (N, C, H, W) or (C, H, W), w (O, C/groups,
    KH, KW), optional bias b (O,); padding an int, a pair, 'valid' or 'same' (stride 1)."""
    x, w = _promote(_arr(x), _arr(w))
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    stride = _pair(stride, "conv2d stride")
    dilation = _pair(dilation, "conv2d dilation")
    kh, kw = w.shape[2:] if w.ndim == 4 else (1, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("conv2d: padding='same' needs stride 1 (as in torch)")
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # the odd pixel goes bottom/right
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        ph, pw = _pair(padding, "conv2d padding")
        pads = (ph, ph, pw, pw)
    y = primitive_call("conv2d", x, w, stride=stride, padding=pads, dilation=dilation, groups=int(groups))
    if b is not None:
        y = y + np.reshape(_arr(b), (1, -1, 1, 1))
    return y[0] if unbatched else y


def _pool_args(kernel_size, stride, padding, what):
    window = _pair(kernel_size, f"{what} kernel_size")
    stride = window if stride is None else _pair(stride, f"{what} stride")
    ph, pw = _pair(padding, f"{what} padding")
    return window, stride, (ph, ph, pw, pw)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """torch.nn.functional.max_pool2d (stride defaults to kernel_size; padding is -inf)."""
    x = _arr(x)
    window, stride, pads = _pool_args(kernel_size, stride, padding, "max_pool2d")
    return primitive_call("reduce_window_max", x, window=window, stride=stride, padding=pads)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """torch.nn.functional.avg_pool2d with count_include_pad=True: window sums (zero padding) / window
    size."""
    x = _arr(x)
    window, stride, pads = _pool_args(kernel_size, stride, padding, "avg_pool2d")
    s = primitive_call("reduce_window_sum", x, window=window, stride=stride, padding=pads)
    return s / (window[0] * window[1])


def dropout(x, rate: float, key):
    """Zero each element with probability ``rate`` and scale the rest by 1 / (1 - rate) (inverted dropout).
    The mask comes from ``key`` (kf.random), so it is the same on every backend."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate!r}")
    x = _arr(x)
    if rate == 0.0:
        return x
    keep = 1.0 - rate
    u = kf_random.uniform(key, x.shape, np.float32)
    return np.where(u < keep, x / keep, 0)

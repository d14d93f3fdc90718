"""Convolution and pooling over NCHW images, with torch.nn.functional's conventions (weights OIHW)."""
from __future__ import annotations

import numpy as np

from . import initializers
from .layer import Layer, check_input_rank
from .layers import _kf


def _pair(v, what: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2 or not all(isinstance(p, (int, np.integer)) for p in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
    return int(pair[0]), int(pair[1])


def window_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _output_hw(layer, input_shape, kernel, stride, padding, dilation=(1, 1)):
    h, w = input_shape[1:]
    out = tuple(window_output_size(s, k, st, p, d)
                for s, k, st, p, d in zip((h, w), kernel, stride, padding, dilation))
    if min(out) < 1:
        raise ValueError(f"{type(layer).__name__}: the {kernel[0]}x{kernel[1]} window (stride {stride}, padding "
                         f"{padding}, dilation {dilation}) does not fit the {h}x{w} input")
    return out


class Conv2D(Layer):
    """2-D convolution: x [N, C, H, W], kernel [filters, C / groups, kh, kw], bias [filters].

    ``padding`` is an int, a pair, "valid" (0) or "same" (output size = input size at stride 1; needs an odd
    dilated kernel)."""

    name = "conv2d"

    def __init__(self, filters: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 l2: float = 0.0):
        super().__init__(l2)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if padding == "valid":
            padding = 0
        elif padding == "same":
            extents = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            if any(e % 2 for e in extents):
                raise ValueError(f"Conv2D padding='same' needs an odd kernel size, got {self.kernel_size}")
            padding = tuple(e // 2 for e in extents)
        self.padding = _pair(padding, "padding")
        self.groups = int(groups)
        if self.filters % self.groups:
            raise ValueError(f"Conv2D: filters ({self.filters}) must be divisible by groups ({self.groups})")
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def init(self, key, input_shape):
        check_input_rank(self, input_shape, 3, "images [C, H, W]")
        channels = input_shape[0]
        if channels % self.groups:
            raise ValueError(f"Conv2D: input channels ({channels}) must be divisible by groups ({self.groups})")
        out_hw = _output_hw(self, input_shape, self.kernel_size, self.stride, self.padding, self.dilation)
        rng = initializers.rng_from_key(key)
        shape = (self.filters, channels // self.groups) + self.kernel_size
        params = {"kernel": initializers.get(self.kernel_initializer)(rng, shape)}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(rng, (self.filters,))
        return params, (self.filters,) + out_hw

    def apply(self, params, x, key=None, training=False):
        return _kf().conv2d(x, params["kernel"], params.get("bias") if self.use_bias else None,
                            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


class _Pool2D(Layer):
    def __init__(self, pool_size=2, stride=None, padding=0):
        super().__init__()
        self.pool_size = _pair(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if any(2 * p > k for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most half the pool size "
                             f"{self.pool_size} (as in torch)")

    def output_shape(self, input_shape):
        check_input_rank(self, input_shape, 3, "images [C, H, W]")
        return (input_shape[0],) + _output_hw(self, input_shape, self.pool_size, self.stride, self.padding)


class MaxPool2D(_Pool2D):
    """Maximum over pool_size windows (stride defaults to pool_size; padding counts as -inf)."""

    name = "max_pool2d"

    def apply(self, params, x, key=None, training=False):
        return _kf().max_pool2d(x, self.pool_size, self.stride, self.padding)


class AvgPool2D(_Pool2D):
    """Mean over pool_size windows (padding counts as zeros in the mean, torch's count_include_pad=True)."""

    name = "avg_pool2d"

    def apply(self, params, x, key=None, training=False):
        return _kf().avg_pool2d(x, self.pool_size, self.stride, self.padding)

"""Core layers: Dense, Flatten, Dropout, Embedding, LayerNorm and the activations."""
from __future__ import annotations

import math

import numpy as np

from . import initializers
from .layer import Layer


def _kf():
    import kernelflow  # noqa: PLC0415 (kernelflow imports kf.nn: resolve the composites at call time)
    return kernelflow


class Dense(Layer):
    """``y = x @ kernel + bias``; kernel [in, units] (torch.nn.Linear's weight transposed). Applies to the
    last axis, so [batch, time, features] inputs work too."""

    name = "dense"

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", l2: float = 0.0):
        super().__init__(l2)
        self.units = int(units)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def init(self, key, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"Dense needs inputs with a feature axis, got example shape {list(input_shape)}")
        rng = initializers.rng_from_key(key)
        params = {"kernel": initializers.get(self.kernel_initializer)(rng, (input_shape[-1], self.units))}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(rng, (self.units,))
        return params, tuple(input_shape[:-1]) + (self.units,)

    def apply(self, params, x, key=None, training=False):
        y = x @ params["kernel"]
        return y + params["bias"] if self.use_bias else y


class Flatten(Layer):
    """[batch, d1, d2, ...] -> [batch, d1 * d2 * ...]."""

    name = "flatten"

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def apply(self, params, x, key=None, training=False):
        return x.reshape((x.shape[0], math.prod(x.shape[1:])))


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of the activations while training and scales the rest by 1/(1 - rate)
    (inverted dropout); the identity at inference. The mask comes from the stateless key passed to apply."""

    name = "dropout"
    uses_key = True

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def apply(self, params, x, key=None, training=False):
        if not training or self.rate == 0.0:
            return x
        if key is None:
            raise ValueError("Dropout(training=True) needs a random key: apply(params, x, key=kf.random.key(0), "
                             "training=True)")
        return _kf().dropout(x, self.rate, key)


class Embedding(Layer):
    """Integer ids [batch, ...] -> vectors [batch, ..., dim] by row lookup in ``embeddings`` [vocab, dim]."""

    name = "embedding"
    regularized = ("embeddings",)

    def __init__(self, vocab_size: int, dim: int, initializer="small_uniform", l2: float = 0.0):
        super().__init__(l2)
        self.vocab_size, self.dim = int(vocab_size), int(dim)
        self.initializer = initializer

    def init(self, key, input_shape):
        rng = initializers.rng_from_key(key)
        table = initializers.get(self.initializer)(rng, (self.vocab_size, self.dim))
        return {"embeddings": table}, tuple(input_shape) + (self.dim,)

    def apply(self, params, x, key=None, training=False):
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(f"Embedding needs integer ids, got {x.dtype}")
        return np.take(params["embeddings"], x, axis=0)


class LayerNorm(Layer):
    """Normalises over the last axis: ``(x - mean) / sqrt(var + eps) * gamma + beta`` (biased variance,
    as torch.nn.LayerNorm)."""

    name = "layer_norm"
    regularized = ()

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)

    def init(self, key, input_shape):
        size = input_shape[-1]
        return {"gamma": np.ones(size, np.float32), "beta": np.zeros(size, np.float32)}, tuple(input_shape)

    def apply(self, params, x, key=None, training=False):
        return _kf().layer_norm(x, params["gamma"], params["beta"], eps=self.eps, axis=-1)


class ReLU(Layer):
    name = "relu"

    def apply(self, params, x, key=None, training=False):
        return _kf().relu(x)


class Tanh(Layer):
    name = "tanh"

    def apply(self, params, x, key=None, training=False):
        return np.tanh(x)


class Sigmoid(Layer):
    name = "sigmoid"

    def apply(self, params, x, key=None, training=False):
        return _kf().sigmoid(x)


class Softmax(Layer):
    """Softmax over ``axis``. Do not put it before ``loss="cross_entropy"``, which takes logits."""

    name = "softmax"

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def apply(self, params, x, key=None, training=False):
        return _kf().softmax(x, axis=self.axis)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softmax": Softmax}

__all__ = ["Dense", "Flatten", "Dropout", "Embedding", "LayerNorm", "ReLU", "Tanh", "Sigmoid", "Softmax"]

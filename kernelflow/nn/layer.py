"""The functional layer protocol that every kf.nn layer follows.

    params, output_shape = layer.init(key, input_shape)    # shapes of ONE example: no batch dimension
    y = layer.apply(params, x, key=None, training=False)   # x has a leading batch dimension

``params`` is a plain dict of numpy arrays (``{}`` for layers without weights). ``apply`` is written with
numpy-style operations, so it runs eagerly on numpy arrays and traces inside ``kf.jit`` / ``kf.grad``.
"""
from __future__ import annotations

import numpy as np


class Layer:
    uses_key = False  # True for layers that need a random key when training (Dropout)
    name = "layer"

    def __init__(self, l2: float = 0.0):
        if l2 < 0:
            raise ValueError(f"{type(self).__name__}: l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def init(self, key, input_shape: tuple[int, ...]):
        """Default for layers without weights: no parameters, shape from ``output_shape``."""
        return {}, self.output_shape(tuple(input_shape))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def apply(self, params, x, key=None, training: bool = False):
        raise NotImplementedError

    def __call__(self, params, x, key=None, training: bool = False):
        return self.apply(params, x, key=key, training=training)

    # L2 weight regularisation: ``l2 * sum(w**2)`` over the weights named here (never the biases)
    regularized = ("kernel",)

    def regularization(self, params):
        if self.l2 == 0.0:
            return 0.0
        return sum(self.l2 * np.sum(params[name] * params[name]) for name in self.regularized if name in params)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def check_input_rank(layer, input_shape, rank: int, what: str):
    if len(input_shape) != rank:
        raise ValueError(f"{type(layer).__name__} expects {what} (shape of one example, without the batch "
                         f"dimension), got shape {list(input_shape)}")

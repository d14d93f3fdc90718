"""Recurrent layers over [batch, time, features] sequences: SimpleRNN, LSTM, GRU.

The recurrences are plain numpy-style Python loops over time, so tracing unrolls them into one graph
(forward and, through kf.grad, backward). The input projection ``x @ kernel + bias`` of all time steps is one
matmul before the loop; only ``h @ recurrent_kernel`` is per step.

Weight layouts (torch.nn's, transposed to [in, out] like Dense; gate blocks side by side):
  SimpleRNN  kernel [F, H]   recurrent_kernel [H, H]   bias [H]       h = tanh(x W + h U + b)
  LSTM       kernel [F, 4H]  recurrent_kernel [H, 4H]  bias [4H]      gates i, f, g, o (torch's order)
  GRU        kernel [F, 3H]  recurrent_kernel [H, 3H]  bias [3H], recurrent_bias [3H]; gates r, z, n
torch keeps two biases per layer (b_ih, b_hh); SimpleRNN and LSTM only ever use their sum, so one bias here
equals ``b_ih + b_hh``. GRU needs both, because b_hn sits inside the reset gate's product:
  n = tanh(x W_n + b_in + r * (h U_n + b_hn)),  h' = (1 - z) * n + z * h.
The initial state is zero unless given.
"""
from __future__ import annotations

import numpy as np

from . import initializers
from .layer import Layer, check_input_rank
from .layers import _kf


class _Recurrent(Layer):
    gates = 1
    state_size = 1  # how many [batch, units] arrays the state holds
    regularized = ("kernel", "recurrent_kernel")

    def __init__(self, units: int, return_sequences: bool = False, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", l2: float = 0.0):
        super().__init__(l2)
        self.units = int(units)
        self.return_sequences = return_sequences
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer

    def _bias(self, rng) -> dict:
        return {"bias": np.zeros(self.gates * self.units, np.float32)}

    def init(self, key, input_shape):
        check_input_rank(self, input_shape, 2, "sequences [time, features]")
        rng = initializers.rng_from_key(key)
        width = self.gates * self.units
        params = {"kernel": initializers.get(self.kernel_initializer)(rng, (input_shape[1], width)),
                  "recurrent_kernel": initializers.get(self.recurrent_initializer)(rng, (self.units, width))}
        params.update(self._bias(rng))
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        return params, out

    def initial_state(self, batch: int, dtype=np.float32) -> tuple:
        return tuple(np.zeros((batch, self.units), dtype) for _ in range(self.state_size))

    def cell(self, params, projected, state):
        """One step from the projected input ``x_t @ kernel + bias`` [N, gates*H]: ``(h, new_state)``.
        ``state`` None means the zero state (the first step skips the recurrent matmul)."""
        raise NotImplementedError

    def step(self, params, x_t, state=None):
        """One time step on raw inputs x_t [N, F]: ``(h, new_state)`` (for sampling, one step at a time)."""
        return self.cell(params, x_t @ params["kernel"] + params["bias"], state)

    def scan(self, params, x, state=None):
        """Run over x [N, T, F]: ``(outputs [N, T, H], final_state)``."""
        projected = x @ params["kernel"] + params["bias"]  # every time step in one matmul
        outputs = []
        for t in range(x.shape[1]):
            h, state = self.cell(params, projected[:, t, :], state)
            outputs.append(h)
        return np.stack(outputs, axis=1), state

    def apply(self, params, x, key=None, training=False):
        outputs, state = self.scan(params, x)
        return outputs if self.return_sequences else state[0]


class SimpleRNN(_Recurrent):
    name = "simple_rnn"

    def cell(self, params, projected, state):
        pre = projected if state is None else projected + state[0] @ params["recurrent_kernel"]
        h = np.tanh(pre)
        return h, (h,)


class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber); state (h, c). The forget gate's bias starts at 1
    (Jozefowicz et al. 2015, Keras's unit_forget_bias)."""

    name = "lstm"
    gates = 4
    state_size = 2

    def _bias(self, rng):
        bias = np.zeros(4 * self.units, np.float32)
        bias[self.units:2 * self.units] = 1.0
        return {"bias": bias}

    def cell(self, params, projected, state):
        kf, H = _kf(), self.units
        z = projected if state is None else projected + state[0] @ params["recurrent_kernel"]
        i = kf.sigmoid(z[:, 0 * H:1 * H])
        f = kf.sigmoid(z[:, 1 * H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = kf.sigmoid(z[:, 3 * H:4 * H])
        c = i * g if state is None else f * state[1] + i * g
        h = o * np.tanh(c)
        return h, (h, c)


class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al. 2014) in torch's formulation (the reset gate applies after the
    recurrent matmul, Keras's reset_after=True)."""

    name = "gru"
    gates = 3

    def _bias(self, rng):
        return {"bias": np.zeros(3 * self.units, np.float32),
                "recurrent_bias": np.zeros(3 * self.units, np.float32)}

    def cell(self, params, projected, state):
        kf, H = _kf(), self.units
        if state is None:
            recurrent = params["recurrent_bias"]
        else:
            recurrent = state[0] @ params["recurrent_kernel"] + params["recurrent_bias"]
        r = kf.sigmoid(projected[:, 0 * H:1 * H] + recurrent[..., 0 * H:1 * H])
        z = kf.sigmoid(projected[:, 1 * H:2 * H] + recurrent[..., 1 * H:2 * H])
        n = np.tanh(projected[:, 2 * H:3 * H] + r * recurrent[..., 2 * H:3 * H])
        h = (1.0 - z) * n if state is None else (1.0 - z) * n + z * state[0]
        return h, (h,)

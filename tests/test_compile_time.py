"""What the compile-time work must not change: kernels that differ only in where they read a buffer
share one compiled function (offsets relative to each buffer's base) and still compute what numpy does."""
from __future__ import annotations

import numpy as np

from kernelflow.ir import GraphBuilder, TensorType, as_dtype
from kernelflow.runtime import compile_graph


def build(inputs, fn, name="case"):
    b = GraphBuilder(name)
    vals = [b.add_input(TensorType(as_dtype(d), tuple(s))) for s, d in inputs]
    outs = fn(b, *vals)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def dot(b, x, y):
    return b.dot_general(x, y, contract=((1,), (0,)), batch=((), ()))


def cols(b, y, lo, hi):
    return b.slice(y, start=(0, lo), limit=(y.shape[0], hi), stride=(1, 1))


def rnn(b, x, wx, wh):
    """An unrolled recurrence: one GEMM for every step's input projection, each step reads its own
    columns of it (as the W7 LSTM does after its GEMMs are merged)."""
    y = dot(b, x, wx)
    h = b.tanh(cols(b, y, 0, 16))
    for t in range(1, 4):
        h = b.tanh(b.add(cols(b, y, 16 * t, 16 * t + 16), dot(b, h, wh)))
    return [h]


def rnn_numpy(x, wx, wh):
    y = x.astype(np.float64) @ wx
    h = np.tanh(y[:, :16])
    for t in range(1, 4):
        h = np.tanh(y[:, 16 * t:16 * t + 16] + h @ wh)
    return h


def test_kernels_reading_different_slices_of_a_buffer_compile_once():
    g = build([((8, 16), "f32"), ((16, 64), "f32"), ((16, 16), "f32")], rnn, "rnn")
    exe = compile_graph(g)
    names = [k.name for k in exe.kernels]
    assert len(names) == 4
    for later in names[2:]:  # steps 1..3 differ only in the column offset they read y at
        assert f"{later} = {names[1]}  # the same loop nest" in exe.source
    x, wx, wh = rand(8, 16), rand(16, 64, seed=1) * 0.3, rand(16, 16, seed=2) * 0.3
    np.testing.assert_allclose(exe(x, wx, wh)[0], rnn_numpy(x, wx, wh), rtol=2e-5, atol=1e-6)


def test_reversed_slices_read_from_their_lowest_element():
    """rev walks a buffer backwards: its base is the lowest element it reaches, not its first read."""
    def fn(b, x):
        outs = []
        for t in range(3):
            piece = b.slice(x, start=(4 * t + 1,), limit=(4 * t + 4,), stride=(1,))
            outs.append(b.exp(b.rev(piece, axes=(0,))))
            x = b.reshape(b.dot_general(b.reshape(x, shape=(1, 12)), b.full((12, 12), 0.5, x.dtype),
                                        contract=((1,), (0,)), batch=((), ())), shape=(12,))
        return outs
    g = build([((12,), "f32")], fn, "rev")
    exe = compile_graph(g)
    x = rand(12)
    want, xx = [], x.astype(np.float64)
    for t in range(3):
        want.append(np.exp(xx[4 * t + 1:4 * t + 4][::-1]))
        xx = xx @ np.full((12, 12), 0.5)
    for got, w in zip(exe(x), want):
        np.testing.assert_allclose(got, w, rtol=2e-5)
    assert "the same loop nest" in exe.source

"""How the numba driver hands GEMM operands to BLAS (codegen/numba/module.py ``dot``, blas.py).

A 2-D value that several GEMMs read transposed as their B operand (``x @ w.T``, the LSTM's recurrent
weight in its backward pass) is copied transposed once per call, by its first reader, and every reader
runs a plain GEMM on the copy. Results are compared with the reference interpreter, over two calls with
different values (the copy is made again on every call, never kept from the last).
"""
from __future__ import annotations

import numpy as np
import pytest

from kernelflow.codegen.numba import blas
from kernelflow.ir.interpret import interpret
from kernelflow.runtime import compile_graph

from test_fusion import build, rand

X_WT = {"contract": ((1,), (1,)), "batch": ((), ())}     # x @ w.T
X_W = {"contract": ((1,), (0,)), "batch": ((), ())}      # x @ w


def compare_twice(graph, make_args):
    exe = compile_graph(graph)
    for seed in (0, 1):
        args = make_args(seed)
        want = interpret(exe.graph, args)
        for got, ref in zip(exe(*args), want):
            np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-5)
    return exe


def chain(readers):
    """h_{i+1} = tanh(h_i @ w.T) for ``readers`` steps: GEMMs that depend on one another, so that the
    merge pass cannot make them one."""
    def fn(b, x, w):
        h = x
        for _ in range(readers):
            h = b.tanh(b.dot_general(h, w, **X_WT))
        return h
    return build([((4, 6), "f32"), ((6, 6), "f32")], fn)


def chain_args(seed):
    return [rand(4, 6, seed=seed), rand(6, 6, seed=seed + 10) * 0.5]


def test_a_weight_read_transposed_by_several_gemms_is_copied_once_and_results_agree():
    exe = compare_twice(chain(3), chain_args)
    assert exe.source.count("_transpose_copy(") == 1
    assert exe.source.count("_matmul(") == 3


def test_one_transposed_reader_keeps_the_view():
    exe = compare_twice(chain(1), chain_args)
    assert "_transpose_copy(" not in exe.source


def test_a_weight_read_both_plain_and_transposed_copies_only_for_the_transposed_readers():
    def fn(b, x, w):
        plain = b.dot_general(x, w, **X_W)
        t1 = b.tanh(b.dot_general(plain, w, **X_WT))
        return b.dot_general(t1, w, **X_WT), plain
    exe = compare_twice(build([((4, 6), "f32"), ((6, 6), "f32")], fn), chain_args)
    assert exe.source.count("_transpose_copy(") == 1


def test_a_computed_weight_is_copied_after_it_is_computed():
    def fn(b, x, w):
        w2 = b.tanh(w)                      # a kernel's output, in a pool slot
        h = b.dot_general(x, w2, **X_WT)
        return b.dot_general(b.tanh(h), w2, **X_WT)
    exe = compare_twice(build([((4, 6), "f32"), ((6, 6), "f32")], fn), chain_args)
    assert exe.source.count("_transpose_copy(") == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("layout", ["c", "fortran", "strided"])
def test_transpose_copy_matches_numpy(dtype, layout):
    src = (np.arange(7 * 5 * 2).reshape(7, 10) * 3 % 11).astype(dtype)
    src = {"c": src[:, :5].copy(), "fortran": np.asfortranarray(src[:, :5]), "strided": src[:, ::2]}[layout]
    dst = np.full((5, 7), -1, dtype)
    blas.transpose_copy(src, dst)
    np.testing.assert_array_equal(dst, src.T)


def test_transpose_copy_uses_openblas_where_numpy_bundles_it():
    # numpy's wheels bundle OpenBLAS with omatcopy; a numpy built on another BLAS falls back to copyto
    if not blas._OPENBLAS:
        pytest.skip("numpy has no bundled OpenBLAS here")
    assert np.dtype(np.float32) in blas._OMATCOPY and np.dtype(np.float64) in blas._OMATCOPY

"""GEMMs through MKL (codegen/numba/mkl.py, opt-in with KERNELFLOW_BLAS=mkl) against numpy.matmul, over the
operand layouts the driver and the window kernels hand it: transposed views, row slices, size-1 dims,
batch dims that broadcast, and the cases MKL must decline (then blas.gemm falls back to numpy). MKL is
loaded here by the test itself; the default library of this process stays OpenBLAS."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from kernelflow.codegen.numba import mkl


def _try_mkl():
    try:
        return mkl.load("mkl")
    except RuntimeError:
        return None


MKL = _try_mkl()
needs_mkl = pytest.mark.skipif(MKL is None, reason="MKL is not installed here (pip install 'kernelflow[mkl]')")


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def views(m, k, dtype):
    """The same (m, k) values as a C array, a transposed copy's view, and a row/column slice of a wider one."""
    base = rand(m, k, dtype=dtype)
    wide = rand(m + 3, k + 5, dtype=dtype, seed=1)
    wide[2:2 + m, 1:1 + k] = base
    return {"c": base, "t": np.ascontiguousarray(base.T).T, "slice": wide[2:2 + m, 1:1 + k]}


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(5, 7, 3), (1, 7, 3), (5, 1, 3), (5, 7, 1), (32, 256, 64)])
@pytest.mark.parametrize("la", ["c", "t", "slice"])
@pytest.mark.parametrize("lb", ["c", "t", "slice"])
def test_two_dimensional_gemms_match_numpy(dtype, m, k, n, la, lb):
    a, b = views(m, k, dtype)[la], views(k, n, dtype)[lb]
    out = np.full((m, n), np.nan, dtype)
    assert MKL.matmul(a, b, out)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=rtol, atol=rtol * k)


@needs_mkl
def test_output_row_slice_keeps_the_other_columns():
    a, b = rand(4, 6), rand(6, 3, seed=2)
    wide = np.zeros((4, 8), np.float32)
    assert MKL.matmul(a, b, wide[:, 2:5])
    np.testing.assert_allclose(wide[:, 2:5], a @ b, rtol=1e-5)
    assert not wide[:, :2].any() and not wide[:, 5:].any()


@needs_mkl
@pytest.mark.parametrize("a_shape, b_shape, takes", [
    ((3, 4, 5), (3, 5, 2), True),           # batched
    ((4, 5), (3, 5, 2), True),              # a broadcast over the batch (a conv's weight)
    ((2, 3, 4, 5), (1, 3, 5, 2), False),    # b repeats along one batch dim only: no single stride
    ((2, 3, 4, 5), (1, 1, 5, 2), True),     # b broadcast along both
    ((6, 1, 4, 5), (6, 1, 5, 2), True),     # a size-1 batch dim
    ((1, 4, 5), (1, 5, 2), True),           # a batch of one (the output's batch stride is 0)
])
def test_batched_gemms_match_numpy(a_shape, b_shape, takes):
    a, b = rand(*a_shape), rand(*b_shape, seed=3)
    want = np.matmul(a, b)
    out = np.full(want.shape, np.nan, np.float32)
    if not MKL.matmul(a, b, out):
        assert not takes
        np.matmul(a, b, out=out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@needs_mkl
def test_operands_mkl_cannot_take_are_declined_and_gemm_falls_back():
    a = rand(4, 6)
    cases = [
        (a[:, ::2], rand(3, 2), np.empty((4, 2), np.float32)),                 # no unit stride
        (a.astype(np.int32), rand(6, 2).astype(np.int32), np.empty((4, 2), np.int32)),  # not a float
        (a, rand(6, 2).astype(np.float64), np.empty((4, 2), np.float32)),      # mixed dtypes
        (a, rand(6, 2), np.empty((2, 4), np.float32).T),                       # output column-major
        (rand(3, 4, 6)[:, :, ::2], rand(3, 3, 2), np.empty((3, 4, 2), np.float32)),
        # matrices that overlap (sliding windows of one buffer): MKL would refuse the batch stride
        (np.lib.stride_tricks.sliding_window_view(rand(9, 6), (4, 6))[:, 0], rand(6, 2),
         np.empty((6, 4, 2), np.float32)),
    ]
    for x, y, out in cases:
        assert not MKL.matmul(x, y, out)
        np.matmul(x, y, out=out)
        np.testing.assert_allclose(out, np.matmul(x, y), rtol=1e-5, atol=1e-6)


def test_layout_of_operands():
    x = np.zeros((4, 6), np.float32)
    assert mkl._layout(x) == (mkl.NO_TRANS, 6)
    assert mkl._layout(x.T) == (mkl.TRANS, 6)
    assert mkl._layout(np.zeros((4, 10), np.float32)[:, 2:8]) == (mkl.NO_TRANS, 10)
    assert mkl._layout(x[:, ::2]) is None
    assert mkl._layout(np.zeros((1, 6), np.float32)[:, :]) == (mkl.NO_TRANS, 6)


def library_in_new_process(choice):
    """(library, OMP_WAIT_POLICY) in a new process (the library is chosen at import), or its error."""
    code = ("import os, kernelflow; from kernelflow.codegen.numba import blas; "
            "print(blas.LIBRARY, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KERNELFLOW_BLAS")}
    if choice is not None:
        env["KERNELFLOW_BLAS"] = choice
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def test_openblas_is_the_default_and_waits_passively():
    assert library_in_new_process(None) == ["openblas", "PASSIVE"]
    assert library_in_new_process("openblas") == ["openblas", "PASSIVE"]


@needs_mkl
def test_kernelflow_blas_mkl_runs_gemms_on_mkl_with_spinning_threads():
    assert library_in_new_process("mkl") == ["mkl", "None"]


def test_an_unknown_blas_choice_is_an_error_that_names_the_variable():
    assert "KERNELFLOW_BLAS='atlas'" in library_in_new_process("atlas")
    with pytest.raises(ValueError, match="expected one of openblas, mkl"):
        mkl.load("atlas")

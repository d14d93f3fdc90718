"""The process-wide BLAS thread mode (codegen/numba/blas.py): the policy on given call times, and results."""
import os
import subprocess
import sys

import numpy as np
import pytest

from kernelflow.codegen.numba import blas

SHAPES = [((128, 784), (784, 256)), ((128, 256), (256, 256))]  # two GEMMs per "step", alternating


def run_calls(mode, seconds_for, n):
    """n calls through the policy; seconds_for(shape index, mode) is what each call 'took'."""
    modes = []
    for i in range(n):
        m = mode.pick()
        modes.append(m)
        mode.record(SHAPES[i % 2], m, seconds_for(i % 2, m))
    return modes


def quiet(shape, mode):
    return (2.0, 0.5)[shape] * (0.6 if mode else 1.0)     # all threads faster


def loaded(shape, mode):
    return (2.0, 0.5)[shape] * (5.0 if mode else 1.0)     # another process holds a core: stalls


def test_it_starts_on_one_thread_and_a_quiet_machine_moves_it_to_all_threads_at_the_first_burst():
    mode = blas.ThreadMode()
    modes = run_calls(mode, quiet, blas.FIRST_BURST + blas.BURST_CALLS + 2)
    assert modes[:blas.FIRST_BURST - 1] == [0] * (blas.FIRST_BURST - 1)
    assert mode.mode == 1 and modes[-1] == 1


def test_under_load_it_stays_on_one_thread_from_the_first_call():
    mode = blas.ThreadMode()
    modes = run_calls(mode, loaded, 2_000)
    assert mode.mode == 0 and modes.count(1) < 0.02 * len(modes)


def test_on_a_quiet_machine_it_stays_on_all_threads_and_tries_one_thread_less_and_less_often():
    mode = blas.ThreadMode()
    modes = run_calls(mode, quiet, 20_000)
    assert mode.mode == 1
    modes = modes[blas.FIRST_BURST + blas.BURST_CALLS:]  # after the first switch to all threads
    bursts = [i for i in range(1, len(modes)) if modes[i] == 0 and modes[i - 1] == 1]
    gaps = np.diff(bursts)
    assert all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:]))     # the wait doubles while bursts lose
    assert modes.count(0) < 0.01 * len(modes)


def test_it_follows_the_load_to_one_thread_and_back():
    mode = blas.ThreadMode()
    run_calls(mode, quiet, 1_000)
    assert mode.mode == 1
    under_load = run_calls(mode, loaded, 4_000)
    assert mode.mode == 0 and under_load[-2_000:].count(1) < 0.02 * 2_000
    run_calls(mode, quiet, 3 * blas.MAX_BURST_EVERY)
    assert mode.mode == 1


def test_the_first_call_after_a_switch_is_not_measured():
    """Waking OpenBLAS's sleeping helper thread costs extra on the first call in the other mode."""
    mode = blas.ThreadMode()
    mode.record(SHAPES[0], 1, 1.0)        # first call ever: not steady
    mode.record(SHAPES[0], 1, 2.0)
    mode.record(SHAPES[0], 0, 100.0)      # the switch
    mode.record(SHAPES[0], 0, 3.0)
    assert mode.average[SHAPES[0]] == [3.0, 2.0]


def test_matmul_is_right_in_either_mode():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((96, 300), dtype=np.float32)
    b = rng.standard_normal((300, 200), dtype=np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    saved = blas.MODE.mode
    try:
        for forced in (0, 1):
            blas.MODE.mode = forced
            for macs in (1, 1 << 40):     # below the threshold; measured in the mode
                out = np.full((96, 200), np.nan, np.float32)
                blas.matmul(a, b, out, macs)
                np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    finally:
        blas.MODE.mode = saved


def test_a_new_gemm_shape_is_measured_again_soon_after_a_long_backed_off_decision():
    """In one process a first model's GEMMs (loaded machine: one thread, bursts backed off to thousands
    of calls apart) must not decide for the next model's GEMMs without measuring them."""
    mode = blas.ThreadMode()
    run_calls(mode, loaded, 20_000)
    assert mode.mode == 0 and mode.every > 1_000
    other = ((32, 256), (256, 1024))
    modes = []
    for _ in range(blas.FIRST_BURST + blas.BURST_CALLS + 2):  # the machine is quiet now
        m = mode.pick()
        modes.append(m)
        mode.record(other, m, 0.6 if m else 1.0)
    assert 1 in modes[:blas.FIRST_BURST + blas.BURST_CALLS]  # a burst on all threads came at once
    assert mode.mode == 1


@pytest.mark.skipif(blas.LIBRARY != "openblas", reason="the advice is about numpy's OpenBLAS")
def test_kernel_advice_only_for_openblas_without_avx512_on_a_host_with_it(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    advice = blas.kernel_advice("Haswell", host_avx512=True)
    assert "Haswell" in advice and "OPENBLAS_CORETYPE=Haswell" in advice and "AVX-512" in advice
    assert blas.kernel_advice("SkylakeX", host_avx512=True) is None
    assert blas.kernel_advice("SapphireRapids", host_avx512=True) is None
    assert blas.kernel_advice("Haswell", host_avx512=False) is None
    assert blas.kernel_advice(None, host_avx512=True) is None
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert "because" not in blas.kernel_advice("Zen", host_avx512=True)


def test_openblas_names_the_kernels_it_was_told_to_load():
    # an independent check of openblas_corename: a new process whose OpenBLAS is told which kernels to use
    code = "from kernelflow.codegen.numba import blas; print(blas.openblas_corename(), blas.host_has_avx512())"
    env = dict(os.environ, OPENBLAS_CORETYPE="Sandybridge")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    core, avx512 = done.stdout.split()
    assert core.lower() == "sandybridge"
    if os.path.exists("/proc/cpuinfo"):   # the kernel's own view of the CPU, an independent oracle
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        assert avx512 == str(all(x in flags for x in ("avx512f", "avx512bw", "avx512dq", "avx512vl")))

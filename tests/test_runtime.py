"""The runtime: input checks, fresh outputs, buffer reuse, threads, inspection, the interpret backend,
and a compiled MLP training step that matches the interpreter step for step."""
from __future__ import annotations

import os
import threading
import weakref


import numpy as np
import pytest

import kernelflow as kf
from kernelflow.ir import DTypeError, GraphBuilder, ShapeError, TensorType, as_dtype
from kernelflow.ir.interpret import interpret
from kernelflow.runtime import compile_graph


def build(inputs, fn, name="case"):
    b = GraphBuilder(name)
    vals = [b.add_input(TensorType(as_dtype(d), tuple(s))) for s, d in inputs]
    outs = fn(b, *vals)
    return b.finish(list(outs) if isinstance(outs, (list, tuple)) else [outs])


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def chain():
    """exp -> (transpose, library) -> tanh: three steps with intermediates in the pool."""
    def fn(b, x, w):
        e = b.exp(x)
        m = b.dot_general(e, w, contract=((1,), (0,)), batch=((), ()))
        return [b.tanh(m), b.reduce_sum(e, axes=(0,))]
    g = build([((6, 5), "f32"), ((5, 4), "f32")], fn, "chain")
    return g, compile_graph(g)


def test_inputs_are_checked_like_the_interpreter(chain):
    g, exe = chain
    x, w = rand(6, 5), rand(5, 4, seed=1)
    with pytest.raises(ShapeError, match="input 0"):
        exe(rand(5, 6), w)
    with pytest.raises(DTypeError, match="float32"):
        exe(x.astype(np.float64), w)
    with pytest.raises(TypeError, match="takes 2 inputs"):
        exe(x)


def test_non_contiguous_and_read_only_inputs_are_read_correctly(chain):
    g, exe = chain
    big = rand(12, 10)
    x = big[::2, ::2]                  # strided view
    w = np.asfortranarray(rand(5, 4, seed=1))
    w.flags.writeable = False
    for got, want in zip(exe(x, w), interpret(g, [np.ascontiguousarray(x), np.ascontiguousarray(w)])):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    t = rand(5, 6).T                   # transposed view
    for got, want in zip(exe(t, w), interpret(g, [np.ascontiguousarray(t), np.ascontiguousarray(w)])):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_outputs_are_fresh_and_pool_reuse_is_invisible(chain):
    g, exe = chain
    x1, x2, w = rand(6, 5), rand(6, 5, seed=2), rand(5, 4, seed=1)
    first = exe(x1, w)
    keep = [a.copy() for a in first]
    second = exe(x2, w)
    for a, k in zip(first, keep):  # a later call does not overwrite what an earlier call returned
        np.testing.assert_array_equal(a, k)
    for got, want in zip(second, interpret(g, [x2, w])):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert not np.shares_memory(first[0], second[0])


def test_released_outputs_are_recycled_held_ones_never(chain):
    """An output the caller dropped is reused by a later call (no page faults on a new array); one
    the caller holds, directly or through a view, is never written again."""
    g, exe = chain
    w = rand(5, 4, seed=1)
    xs = [rand(6, 5, seed=s) for s in range(6)]
    wants = [interpret(g, [x, w]) for x in xs]
    bases = []
    for x, want in zip(xs[:4], wants):  # y = f(x) in a loop: two arrays alternate
        y = exe(x, w)
        np.testing.assert_allclose(y[0], want[0], rtol=2e-5, atol=1e-6)
        bases.append(weakref.ref(y[0].base))  # the flat array behind the output
    assert bases[2]() is not None and bases[2]() is bases[0]() and bases[3]() is bases[1]()
    del y
    held = exe(xs[4], w)[0]
    view = exe(xs[5], w)[0][1:, ::2]  # only a view of the second result survives
    for x in xs[:4]:
        exe(x, w)
    np.testing.assert_allclose(held, wants[4][0], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(view, wants[5][0][1:, ::2], rtol=2e-5, atol=1e-6)


def test_kernels_with_the_same_loop_nest_are_compiled_once():
    """exp before and after a GEMM of the same shape: two kernels, one compiled function."""
    def fn(b, x):
        e = b.exp(x)
        return [b.exp(b.dot_general(e, x, contract=((1,), (0,)), batch=((), ())))]
    g = build([((8, 8), "f32")], fn, "twice")
    exe = compile_graph(g)
    names = [k.name for k in exe.kernels]
    assert len(names) == 2
    assert f"{names[1]} = {names[0]}  # the same loop nest" in exe.source
    assert getattr(exe.module, names[1]) is getattr(exe.module, names[0])
    x = rand(8, 8) * 0.3
    np.testing.assert_allclose(exe(x)[0], np.exp(np.exp(x.astype(np.float64)) @ x), rtol=1e-5)


def test_identity_and_repeated_outputs_are_copies():
    g = build([((3,), "f32")], lambda b, x: [x, x, b.neg(x)])
    exe = compile_graph(g)
    x = rand(3)
    a, b_, c = exe(x)
    assert not np.shares_memory(a, x) and not np.shares_memory(a, b_)
    a[0] = 100.0
    assert x[0] != 100.0


def test_buffers_are_reused_by_liveness():
    """A chain of library calls: each intermediate dies at the next step, so two slots serve four values."""
    def fn(b, x, w):
        for _ in range(4):
            x = b.dot_general(x, w, contract=((1,), (0,)), batch=((), ()))
        return b.neg(x)
    g = build([((8, 8), "f32"), ((8, 8), "f32")], fn)
    exe = compile_graph(g)
    slots = exe.memory.slot_of
    assert len(slots) == 4 and len(exe.memory.slot_bytes) == 2
    assert exe.memory.peak <= exe.memory.peak_unfused
    assert "slot 0" in exe.ir("plan")
    x, w = rand(8, 8), rand(8, 8, seed=1) * 0.3
    np.testing.assert_allclose(exe(x, w)[0], interpret(g, [x, w])[0], rtol=1e-5, atol=1e-6)


def test_concurrent_calls_from_threads(chain):
    g, exe = chain
    w = rand(5, 4, seed=1)
    xs = [rand(6, 5, seed=10 + i) for i in range(6)]
    wants = [interpret(g, [x, w]) for x in xs]
    errors = []

    def work(i):
        for _ in range(30):
            got = exe(xs[i], w)
            if not all(np.allclose(a, b, rtol=2e-5, atol=1e-6) for a, b in zip(got, wants[i])):
                errors.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_inspection_and_in_process_memo(chain):
    g, exe = chain
    assert compile_graph(g) is exe
    assert [k.name for k in exe.kernels] and all(k.source.startswith("@njit") for k in exe.kernels)
    for stage in ("input", "optimized", "fused", "plan", "kernels", "module"):
        assert exe.ir(stage)
    with pytest.raises(ValueError, match="unknown stage"):
        exe.ir("bogus")
    assert "def make_run" in exe.source and "_matmul(" in exe.source
    compile(exe.source, "<generated>", "exec")  # the whole module is plain Python


def test_interpret_backend():
    g = build([((4,), "f32")], lambda b, x: b.exp(x))
    exe = compile_graph(g, backend="interpret")
    x = rand(4)
    np.testing.assert_array_equal(exe(x)[0], np.exp(x))
    assert exe.kernels == [] and "interpreter" in exe.explain()
    with pytest.raises(ValueError, match="unknown backend"):
        compile_graph(g, backend="cuda")


def test_large_pointwise_runs_in_parallel_chunks():
    n = 1 << 20
    g = build([((n,), "f32"), ((n,), "f32")], lambda b, x, y: b.add(b.mul(x, y), x))
    exe = compile_graph(g)
    assert "prange" in exe.kernels[0].source
    x, y = rand(n), rand(n, seed=1)
    np.testing.assert_allclose(exe(x, y)[0], x * y + x, rtol=1e-6)


def test_mlp_training_step_matches_the_interpreter_for_20_steps():
    rng = np.random.default_rng(0)
    sizes = [12, 16, 4]
    params = [(rng.standard_normal((a, b)).astype(np.float32) * 0.3, np.zeros(b, np.float32))
              for a, b in zip(sizes, sizes[1:])]
    x = rng.standard_normal((10, 12)).astype(np.float32)
    labels = rng.integers(0, 4, 10).astype(np.int32)

    def loss_fn(params, x, labels):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = kf.relu(h)
        return kf.cross_entropy(h, labels)

    def step(params, x, labels):
        loss, grads = kf.value_and_grad(loss_fn)(params, x, labels)
        return loss, [(w - 0.1 * gw, b - 0.1 * gb) for (w, b), (gw, gb) in zip(params, grads)]

    compiled = kf.jit(step)
    reference = kf.jit(step, backend="interpret")
    p_c, p_r = params, params
    for _ in range(20):
        loss_c, p_c = compiled(p_c, x, labels)
        loss_r, p_r = reference(p_r, x, labels)
        np.testing.assert_allclose(loss_c, loss_r, rtol=1e-4, atol=1e-6)
    assert float(loss_c) < float(compiled(params, x, labels)[0])  # it learned


def test_profile_table_has_bytes_and_rates():
    """KERNELFLOW_PROFILE's table: one row per step with the bytes it moves (computed here from the
    shapes: a (64, 128) f32 softmax reads and writes 32 KiB each) and a rate."""
    def fn(b, x):
        m = b.emit("broadcast_in_dim", b.reduce_max(x, axes=(1,)), shape=x.shape, dims=(0,))
        e = b.exp(b.sub(x, m))
        return [b.div(e, b.emit("broadcast_in_dim", b.reduce_sum(e, axes=(1,)), shape=x.shape, dims=(0,)))]
    exe = compile_graph(build([((64, 128), "f32")], fn, "prof"), profile=True)
    assert "no profile" in exe.profile()
    exe(rand(64, 128))
    lines = exe.profile().splitlines()
    assert "MiB" in lines[1] and "GB/s" in lines[1]
    kernel_rows = [line for line in lines[2:] if " kernel " in line]
    assert len(kernel_rows) == 1
    assert abs(float(kernel_rows[0].split()[4]) - 2 * 64 * 128 * 4 / 2**20) < 0.006  # printed to 0.01 MiB


def test_profile_bytes_of_a_kernel_reading_slices_count_the_slices():
    """A kernel that reads four column blocks of one row block of a big buffer (an LSTM step's gates in
    a merged GEMM result) moves those rows, not the whole buffer: (8, 64) read + 4 (8, 16) written."""
    def fn(b, x):
        rows = b.emit("slice", x, start=(8, 0), limit=(16, 64), stride=(1, 1))
        blocks = [b.emit("slice", rows, start=(0, 16 * k), limit=(8, 16 * (k + 1)), stride=(1, 1))
                  for k in range(4)]
        return [b.exp(blk) for blk in blocks]
    exe = compile_graph(build([((256, 64), "f32")], fn, "prof_slices"), profile=True)
    x = rand(256, 64)
    outs = exe(x)
    for k, out in enumerate(outs):  # the compiled result itself, against numpy
        np.testing.assert_allclose(out, np.exp(x[8:16, 16 * k:16 * (k + 1)]), rtol=1e-6)
    kernel_rows = [line for line in exe.profile().splitlines()[2:] if " kernel " in line]
    moved = sum(float(row.split()[4]) for row in kernel_rows)
    assert abs(moved - 2 * 8 * 64 * 4 / 2**20) < 0.006 * len(kernel_rows)


def test_profile_bytes_of_a_concatenate_count_only_the_pieces_it_copies():
    """Pieces written in place by their producers (kernel outputs) move nothing in the concatenate's
    step; a graph input is copied: read and written once, (4, 8) f32 = 128 bytes each way."""
    def fn(b, x, y):
        return [b.mul(b.concatenate(b.tanh(x), b.exp(y), x, axis=0), b.concatenate(x, y, x, axis=0))]
    exe = compile_graph(build([((4, 8), "f32"), ((4, 8), "f32")], fn, "prof_concat"), profile=True)
    x, y = rand(4, 8), rand(4, 8, seed=1)
    (out,) = exe(x, y)
    np.testing.assert_allclose(out, np.concatenate([np.tanh(x), np.exp(y), x]) * np.concatenate([x, y, x]),
                               rtol=1e-6)
    steps = [i for i, s in enumerate(exe.plan.steps) if s.nodes[0].op == "concatenate"]
    assert len(exe.memory.placed) == 2  # tanh(x) and exp(y)
    # first: only x is copied (128 bytes read, 128 written); second: x, y, x all copied
    assert sorted(exe.step_bytes(i) for i in steps) == [2 * 128, 3 * 2 * 128]


def test_profile_env_prints_table_at_exit(tmp_path):
    """KERNELFLOW_PROFILE=1 alone (no code change) prints the table of every executable that ran."""
    import subprocess
    import sys
    script = ("import numpy as np, kernelflow as kf\n"
              "f = kf.jit(lambda x: np.exp(x) * 2.0)\n"
              "f(np.ones((8, 4), np.float32))\n")
    env = dict(os.environ, KERNELFLOW_PROFILE="1", KERNELFLOW_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "profile of" in done.stderr and "1 calls" in done.stderr and " kernel " in done.stderr
    env["KERNELFLOW_PROFILE"] = "0"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "profile of" not in done.stderr


def test_compiling_after_the_warning_filters_were_reset_warns_nothing(tmp_path):
    """pytest restores the process's warning filters after each test (a notebook may too), dropping the
    filter kernelflow installed at import; compiling exp/tanh/logistic kernels afterwards must still not
    raise numba's internal SSA warning about the IR-inlined helpers (a kernel with several exps did).
    In a new process with an empty cache and in-process compilation, so that numba really compiles here."""
    import subprocess
    import sys
    script = """
import warnings, numpy as np
from kernelflow.ir import GraphBuilder, TensorType, float32
from kernelflow.runtime import compile_graph
def graph():
    b = GraphBuilder("reset_filters")
    v = b.add_input(TensorType(float32, (256, 64)))
    rows = b.emit("slice", v, start=(8, 0), limit=(16, 64), stride=(1, 1))
    blocks = [b.emit("slice", rows, start=(0, 16 * k), limit=(8, 16 * (k + 1)), stride=(1, 1)) for k in range(4)]
    return b.finish([b.exp(b.mul(blk, b.full_like(blk, 1.25))) for blk in blocks])
x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32)
for profile in (False, True):  # (the profiled module's kernels compile at import, the others deferred)
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        outs = compile_graph(graph(), profile=profile)(x)
    print(sorted({w.category.__name__ for w in caught}))
    for k, got in enumerate(outs):
        np.testing.assert_allclose(got, np.exp(x[8:16, 16 * k:16 * (k + 1)].astype(np.float64) * 1.25), rtol=1e-6)
"""
    env = dict(os.environ, KERNELFLOW_CACHE_DIR=str(tmp_path), KERNELFLOW_COMPILE_JOBS="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NumbaIRAssumptionWarning" not in done.stdout + done.stderr


def test_a_cold_compile_prints_nothing(tmp_path):
    """Compiling the float32 tanh/logistic helpers in a new process with an empty cache writes nothing to
    stderr (numba's internal SSA check used to warn once per kernel about the inlined helpers)."""
    import subprocess
    import sys
    script = ("import numpy as np, kernelflow as kf\n"
              "f = kf.jit(lambda x, y: kf.sigmoid(x) * np.tanh(y) + kf.sigmoid(y))\n"
              "a = np.linspace(-3, 3, 64 * 32, dtype=np.float32).reshape(64, 32)\n"
              "np.testing.assert_allclose(f(a, a), 1 / (1 + np.exp(-a)) * np.tanh(a) + 1 / (1 + np.exp(-a)),"
              " rtol=1e-5, atol=1e-6)\n")
    env = dict(os.environ, KERNELFLOW_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_profile_table_carries_the_blas_kernel_advice_only_with_a_gemm(monkeypatch):
    """The advice line (codegen/numba/blas.py ``kernel_advice``) follows the table of a schedule that runs
    a GEMM, and only then."""
    from kernelflow.codegen.numba import blas
    monkeypatch.setattr(blas, "kernel_advice", lambda core, host_avx512: "note: ADVICE")

    def gemm(b, x, w):
        return [b.dot_general(x, w, contract=((1,), (0,)), batch=((), ()))]
    exe = compile_graph(build([((8, 16), "f32"), ((16, 4), "f32")], gemm, "prof_gemm"), profile=True)
    exe(rand(8, 16), rand(16, 4))
    assert exe.profile().splitlines()[-1] == "note: ADVICE"
    exe = compile_graph(build([((8, 16), "f32")], lambda b, x: [b.exp(x)], "prof_exp"), profile=True)
    exe(rand(8, 16))
    assert "ADVICE" not in exe.profile()

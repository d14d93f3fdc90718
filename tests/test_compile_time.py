"""What the compile-time work must not change: kernels that differ only in where they read a buffer
share one compiled function (offsets relative to each buffer's base) and still compute what numpy does."""
from __future__ import annotations

import numpy as np

from kernelflow.ir import GraphBuilder
from kernelflow.runtime import compile_graph
from test_fusion import build, rand


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


# -- kernels compiled by several processes (runtime/cache.py), tested in fresh processes ------------------
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

PARALLEL_SCRIPT = textwrap.dedent('''
    import json, os, sys, threading, time
    import numpy as np
    from kernelflow.ir import GraphBuilder, TensorType, float32
    from kernelflow.runtime import cache, compile_graph
    mode = sys.argv[1]
    if mode == "child_dies":  # every forked child exits at once: the parent must compile everything
        parent, real = os.getpid(), cache._compile_from_queue
        cache._compile_from_queue = lambda *a: os._exit(3) if os.getpid() != parent else real(*a)
    if mode == "threads":  # another thread exists: no fork
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
    b = GraphBuilder("jobs")
    x = b.add_input(TensorType(float32, (6, 9)))
    w = b.add_input(TensorType(float32, (9, 9)))
    m = b.reduce_max(x, axes=(1,))
    e = b.exp(b.sub(x, b.broadcast_in_dim(m, shape=(6, 9), dims=(0,))))
    p = b.div(e, b.broadcast_in_dim(b.reduce_sum(e, axes=(1,)), shape=(6, 9), dims=(0,)))
    h = b.tanh(b.dot_general(p, w, contract=((1,), (0,)), batch=((), ())))
    y = b.logistic(b.mul(b.dot_general(h, w, contract=((1,), (0,)), batch=((), ())), h))
    g = b.finish([p, y, b.reduce_sum(b.mul(y, y), axes=(0,))])
    exe = compile_graph(g)
    xs = (np.arange(54, dtype=np.float32).reshape(6, 9) - 20) / 9
    ws = np.cos(np.arange(81, dtype=np.float32)).reshape(9, 9) / 3
    out = exe(xs, ws)
    info = {k: exe.compile_info.get(k) for k in ("compiled", "cache_hits", "compile_jobs", "compiled_in_children")}
    info["kernels"] = len({id(getattr(exe.module, k)) for k in exe.compile_info["kernel_names"]})
    info["out"] = [o.tolist() for o in out]
    print(json.dumps(info))
''')


def run_jobs(cache_dir, mode="plain", jobs="2"):
    env = dict(os.environ, KERNELFLOW_CACHE_DIR=str(cache_dir), KERNELFLOW_CACHE="1",
               KERNELFLOW_COMPILE_JOBS=jobs)
    done = subprocess.run([sys.executable, "-c", PARALLEL_SCRIPT, mode], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def jobs_oracle():
    x = (np.arange(54, dtype=np.float64).reshape(6, 9) - 20) / 9
    w = np.cos(np.arange(81, dtype=np.float32)).reshape(9, 9).astype(np.float64) / 3
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    h = np.tanh(p @ w)
    y = 1 / (1 + np.exp(-((h @ w) * h)))
    return [p, y, (y * y).sum(axis=0)]


def check_outputs(report):
    for got, want in zip(report["out"], jobs_oracle()):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_kernels_compiled_by_two_processes_are_all_compiled_and_cached(tmp_path):
    cold = run_jobs(tmp_path)
    assert cold["kernels"] >= 3 and cold["compile_jobs"] == 2
    assert cold["compiled"] == cold["kernels"] and cold["cache_hits"] == 0
    check_outputs(cold)
    warm = run_jobs(tmp_path)  # a new process: everything from numba's cache
    assert warm["compiled"] == 0 and warm["cache_hits"] == warm["kernels"] and warm["compile_jobs"] is None
    assert warm["out"] == cold["out"]


def test_one_job_compiles_in_process(tmp_path):
    report = run_jobs(tmp_path, jobs="1")
    assert report["compile_jobs"] is None and report["compiled"] == report["kernels"]
    check_outputs(report)


def test_children_that_die_leave_the_work_to_the_parent(tmp_path):
    report = run_jobs(tmp_path, mode="child_dies")
    assert report["compile_jobs"] == 2 and report["compiled_in_children"] == 0
    assert report["compiled"] == report["kernels"]
    check_outputs(report)


def test_no_fork_in_a_process_with_threads(tmp_path):
    report = run_jobs(tmp_path, mode="threads")
    assert report["compile_jobs"] is None and report["compiled"] == report["kernels"]
    check_outputs(report)


# -- the collector's thresholds while tracing and compiling ----------------------------------------------
import gc  # noqa: E402
import threading  # noqa: E402

from kernelflow.frontend.staging import GC_THRESHOLDS, fewer_gc_passes  # noqa: E402


def test_gc_thresholds_are_raised_inside_and_restored_after():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_gc_passes():
            assert gc.get_threshold() == GC_THRESHOLDS
            with fewer_gc_passes():  # nested: the outer block restores
                assert gc.get_threshold() == GC_THRESHOLDS
            assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(10 ** 6, 5, 500)  # a caller's higher thresholds stay
        with fewer_gc_passes():
            assert gc.get_threshold() == (10 ** 6, 20, 500)
        assert gc.get_threshold() == (10 ** 6, 5, 500)
    finally:
        gc.set_threshold(*saved)


def test_gc_thresholds_with_overlapping_threads_end_restored():
    saved = gc.get_threshold()
    inside, leave = threading.Barrier(2), threading.Event()

    def compile_like():
        with fewer_gc_passes():
            inside.wait()
            leave.wait()

    t = threading.Thread(target=compile_like)
    t.start()
    with fewer_gc_passes():
        inside.wait()
    assert gc.get_threshold() == tuple(max(a, b) for a, b in zip(saved, GC_THRESHOLDS))  # the thread is inside
    leave.set()
    t.join()
    assert gc.get_threshold() == saved


# -- copying nodes without their shape rules -------------------------------------------------------------
def test_copy_node_copies_like_emit_node():
    """Inlining and autodiff copy whole graphs with ``copy_node``: the copy prints exactly as a copy made
    through ``emit_node`` (which reruns every shape rule), source locations included."""
    from kernelflow.ir import SourceLoc
    from kernelflow.ir.printer import print_graph

    def fn(b, x, w):
        with b.at(SourceLoc("model.py", 3)):
            h = b.tanh(dot(b, x, w))
        m = b.reduce_max(h, axes=(1,))  # no location
        return [b.sub(h, b.broadcast_in_dim(m, shape=(4, 5), dims=(0,))), b.constant(np.arange(3.0))]
    g = build([((4, 6), "f32"), ((6, 5), "f32")], fn)

    def copy(use_copy_node):
        b = GraphBuilder(g.name)
        env = {v: b.add_input(v.type) for v in g.inputs}
        with b.at(SourceLoc("outer.py", 9)):  # a location in effect: nodes without one take it
            for n in g.nodes:
                ins = [env[v] for v in n.inputs]
                if use_copy_node:
                    new = b.copy_node(n, ins)
                else:
                    with b.at(n.loc):
                        new = b.emit_node(n.op, *ins, **n.attrs)
                env.update(zip(n.outputs, new.outputs))
        return print_graph(b.finish([env[v] for v in g.outputs]))
    assert copy(True) == copy(False)
    assert 'loc("outer.py":9)' in copy(True) and 'loc("model.py":3)' in copy(True)


# -- fusion rule 7: kernels read at most MAX_KERNEL_INPUTS buffers --------------------------------------
def test_a_sum_over_many_buffers_is_cut_into_kernels_that_share_their_code():
    """sum_t colsum(x_t) over 64 inputs (a bias gradient of an unrolled RNN): no kernel reads more than
    MAX_KERNEL_INPUTS buffers, the pieces in the middle are one compiled function, and the result is
    numpy's."""
    from kernelflow.passes.fusion import MAX_KERNEL_INPUTS, fuse
    n = 64

    def buffers(step):  # a one-element constant is a literal in the kernel, not a buffer it reads
        return [v for v in step.analysis.inputs
                if not (v.producer is not None and v.producer.op == "constant" and v.type.size == 1)]

    def fn(b, *xs):
        total = b.reduce_sum(xs[0], axes=(0,))
        for x in xs[1:]:
            total = b.add(total, b.reduce_sum(x, axes=(0,)))
        return [b.sub(b.full((5,), 1.0, total.dtype), total)]
    g = build([((8, 5), "f32")] * n, fn, "fan_in")
    plan = fuse(g)
    kernels = [s for s in plan.steps if s.kind == "kernel"]
    assert len(kernels) > 1 and all(len(buffers(s)) <= MAX_KERNEL_INPUTS for s in kernels)
    assert any("read more than" in d for d in plan.decisions)
    exe = compile_graph(g)
    assert "the same loop nest" in exe.source
    xs = [rand(8, 5, seed=s) for s in range(n)]
    want = 1.0 - sum(x.astype(np.float64).sum(axis=0) for x in xs)
    np.testing.assert_allclose(exe(*xs)[0], want, rtol=1e-5, atol=1e-5)


# -- the compiled code of generated modules (runtime/cache.py: __pycache__/<module>.kfc) -----------------
def test_module_code_is_cached_and_a_damaged_code_file_is_ignored(tmp_path):
    cold = run_jobs(tmp_path, jobs="1")
    (code_file,) = (tmp_path / "numba" / "__pycache__").glob("kf_*.kfc")
    good = code_file.read_bytes()
    warm = run_jobs(tmp_path, jobs="1")
    assert warm["compiled"] == 0 and warm["out"] == cold["out"]
    assert code_file.read_bytes() == good  # read, not rewritten
    from kernelflow.runtime.cache import _CODE_MAGIC
    header = len(_CODE_MAGIC) + 32  # then the source's sha256
    for damaged in (good[:len(good) // 2], good[:40] + bytes(64), b"garbage"):
        code_file.write_bytes(damaged)
        again = run_jobs(tmp_path, jobs="1")
        assert again["compiled"] == 0 and again["out"] == cold["out"]
        repaired = code_file.read_bytes()
        assert repaired != damaged and repaired[:header] == good[:header]  # replaced


# -- a kernel run by another with the same loop nest and more outputs ------------------------------------
def test_the_last_step_of_a_recurrence_runs_the_kernel_of_the_others():
    """Steps 2..3 of c_t = c_{t-1} + y_t + h_{t-1} w, h_t = tanh(c_t): step 2 writes c_t and h_t, the
    last one only h (nothing reads its c): it runs step 2's kernel, its c going to scratch."""
    def fn(b, x, wx, wh):
        y = dot(b, x, wx)
        c = cols(b, y, 0, 16)
        h = b.tanh(c)
        for t in range(1, 4):
            c = b.add(b.add(c, cols(b, y, 16 * t, 16 * t + 16)), dot(b, h, wh))
            h = b.tanh(c)
        return [h]
    g = build([((8, 16), "f32"), ((16, 64), "f32"), ((16, 16), "f32")], fn, "cells")
    exe = compile_graph(g)
    names = [k.name for k in exe.kernels]
    assert f"{names[3]} = {names[2]}  # the same loop nest with 1 more output(s), unused here" in exe.source
    x, wx, wh = rand(8, 16), rand(16, 64, seed=1) * 0.3, rand(16, 16, seed=2) * 0.3
    y = x.astype(np.float64) @ wx
    c = y[:, :16]
    h = np.tanh(c)
    for t in range(1, 4):
        c = c + y[:, 16 * t:16 * t + 16] + h @ wh
        h = np.tanh(c)
    for _ in range(3):  # the scratch output is recycled between calls
        np.testing.assert_allclose(exe(x, wx, wh)[0], h, rtol=2e-5, atol=1e-6)


def test_compile_cost_counts_each_expensive_helper_call_like_the_disassembly():
    """module._compile_cost (which balances kernels across compile processes) scans raw bytecode for the
    helpers' LOAD_GLOBALs; an independent count with ``dis`` must agree on generated kernels."""
    import dis

    from kernelflow.codegen.numba import module

    def fn(b, x, y):
        t = b.tanh(b.add(x, y))
        return [b.mul(b.logistic(x), t), b.exp(b.sub(t, b.logistic(y))), b.tanh(b.mul(t, t))]
    exe = compile_graph(build([((32, 64), "f32"), ((32, 64), "f32")], fn, "cost"))
    namespace = {}
    source = exe.source.replace("from kernelflow.codegen.numba.module import kernel_njit as njit",
                                "njit = lambda *a, **k: (lambda f: f)")
    exec(compile(source, "generated", "exec"), namespace)
    kernels = [v for k, v in namespace.items() if k.startswith("k") and hasattr(v, "__code__")]
    assert kernels
    for fn_ in kernels:
        want = len(fn_.__code__.co_code) + sum(module._EXPENSIVE_CALLS.get(i.argval, 0)
                                               for i in dis.get_instructions(fn_)
                                               if i.opname == "LOAD_GLOBAL")
        assert module._compile_cost(fn_) == want

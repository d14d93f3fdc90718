"""The persistent cache, tested in fresh processes (numba's compilations are counted per process).

Each subprocess compiles the same graph (a softmax and a sibling pointwise op) with
``KERNELFLOW_CACHE_DIR`` pointing at a temporary directory and prints, as JSON, how many kernels numba
compiled and loaded from its cache, how many times it ran the pass pipeline, the warnings, a checksum
of the results and a digest of everything the executable shows when inspected.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import json, warnings
    import numpy as np
    warnings.simplefilter("always")
    from kernelflow.ir import GraphBuilder, TensorType, float32
    from kernelflow.runtime import compile_graph
    b = GraphBuilder("cached")
    x = b.add_input(TensorType(float32, (4, 7)))
    m = b.reduce_max(x, axes=(1,))
    e = b.exp(b.sub(x, b.broadcast_in_dim(m, shape=(4, 7), dims=(0,))))
    s = b.broadcast_in_dim(b.reduce_sum(e, axes=(1,)), shape=(4, 7), dims=(0,))
    w = b.add_input(TensorType(float32, (7, 3)))
    g = b.finish([b.div(e, s), b.tanh(b.dot_general(x, w, contract=((1,), (0,)), batch=((), ())))])
    import hashlib
    from kernelflow.runtime import executable
    with warnings.catch_warnings(record=True) as caught:
        exe = compile_graph(g)
        xs = np.arange(28, dtype=np.float32).reshape(4, 7) / 10
        out = exe(xs, np.ones((7, 3), np.float32) / 7)
    info = {k: exe.compile_info[k] for k in ("compiled", "cache_hits", "on_disk", "passes")}
    info["pipeline_runs"] = executable.PIPELINE_RUNS  # before anything is inspected
    info["warnings"] = [str(w.message) for w in caught if "kernelflow" in str(w.message)]
    info["checksum"] = [float(o.sum()) for o in out]
    info["kernels"] = len(exe.kernels)
    shown = [exe.ir(s) for s in ("input", "optimized", "fused", "plan", "kernels", "module")]
    shown += [exe.explain(), repr(exe)] + [k.name + k.source + ",".join(map(str, k.nodes)) for k in exe.kernels]
    info["inspected"] = hashlib.sha256("|".join(shown).encode()).hexdigest()
    print(json.dumps(info))
''')


def run(cache_dir: Path, extra_env=None, background=False):
    env = dict(os.environ, KERNELFLOW_CACHE_DIR=str(cache_dir), KERNELFLOW_CACHE="1")
    env.update(extra_env or {})
    args = [sys.executable, "-c", SCRIPT]
    if background:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache directory filled by one cold process; the cold process's report."""
    d = tmp_path_factory.mktemp("kfcache")
    cold = run(d)
    return d, cold


def test_cold_process_compiles_and_warm_process_compiles_nothing(warm):
    d, cold = warm
    assert cold["compiled"] == cold["kernels"] >= 2 and not cold["on_disk"]
    assert cold["pipeline_runs"] == 1 and cold["passes"]
    hot = run(d)
    assert hot["compiled"] == 0 and hot["cache_hits"] == hot["kernels"] and hot["on_disk"]
    assert hot["checksum"] == cold["checksum"] and not hot["warnings"]


def test_warm_process_runs_no_pass_and_inspects_the_same(warm):
    """The graph-keyed entry supplies the module: no optimize/fuse/plan/codegen in a warm process, and
    ir()/explain()/kernels (rebuilt lazily) show exactly what the cold process showed."""
    d, cold = warm
    hot = run(d)
    assert hot["pipeline_runs"] == 0 and not hot["passes"] and hot["compiled"] == 0
    assert hot["checksum"] == cold["checksum"] and hot["inspected"] == cold["inspected"]


def _graph_entry(d: Path) -> Path:
    (entry,) = (d / "graphs" / "numba").glob("g_*.kfg")
    return entry


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "old_format", "garbage"])
def test_corrupt_graph_entry_is_reported_once_and_rebuilt(tmp_path, warm, damage):
    d, cold = warm
    import shutil
    shutil.copytree(d, tmp_path / "c")
    d = tmp_path / "c"
    entry = _graph_entry(d)
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[:len(data) // 2])
    elif damage == "flip_byte":
        i = len(data) - 10
        entry.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif damage == "old_format":
        entry.write_bytes(data.replace(b" 1 ", b" 0 ", 1))
    else:
        entry.write_bytes(b"\x00" * 100)
    report = run(d)
    assert len(report["warnings"]) == 1 and "rebuilding" in report["warnings"][0]
    assert report["pipeline_runs"] == 1 and report["compiled"] == 0  # the module itself was fine
    assert report["checksum"] == cold["checksum"] and report["inspected"] == cold["inspected"]
    again = run(d)
    assert again["pipeline_runs"] == 0 and not again["warnings"] and again["checksum"] == cold["checksum"]


def test_a_graph_entry_without_its_module_recreates_the_module(tmp_path, warm):
    d, cold = warm
    import shutil
    shutil.copytree(d, tmp_path / "c")
    d = tmp_path / "c"
    shutil.rmtree(d / "numba")
    report = run(d)
    assert report["pipeline_runs"] == 0 and report["compiled"] == report["kernels"] and not report["warnings"]
    assert report["checksum"] == cold["checksum"]


def _entry(d: Path) -> Path:
    (module,) = (d / "numba").glob("kf_*.py")
    return module


@pytest.mark.parametrize("damage", ["truncate_module", "garble_module", "truncate_numba_data"])
def test_corrupt_entry_is_reported_once_and_rebuilt(tmp_path, warm, damage):
    d, cold = warm
    import shutil
    shutil.copytree(d, tmp_path / "c")
    d = tmp_path / "c"
    module = _entry(d)
    if damage == "truncate_module":
        module.write_text(module.read_text()[:200])
    elif damage == "garble_module":
        module.write_text(module.read_text().replace("def ", "dfe ", 1))
    else:
        for f in (d / "numba" / "__pycache__").glob("*.nbc"):
            f.write_bytes(f.read_bytes()[:64])
    report = run(d)
    assert len(report["warnings"]) == 1 and "rebuilding" in report["warnings"][0]
    assert report["checksum"] == cold["checksum"]
    again = run(d)
    assert again["compiled"] == 0 and not again["warnings"] and again["checksum"] == cold["checksum"]


def test_two_processes_compiling_at_once_both_succeed(tmp_path):
    procs = [run(tmp_path, background=True) for _ in range(2)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert reports[0]["checksum"] == reports[1]["checksum"]
    assert len(list((tmp_path / "numba").glob("kf_*.py"))) == 1
    assert len(list((tmp_path / "graphs" / "numba").glob("g_*.kfg"))) == 1
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary files left behind
    after = run(tmp_path)
    assert after["compiled"] == 0 and after["pipeline_runs"] == 0 and not after["warnings"]
    assert after["checksum"] == reports[0]["checksum"]


def test_cache_can_be_turned_off(tmp_path):
    report = run(tmp_path, {"KERNELFLOW_CACHE": "0"})
    assert report["compiled"] == report["kernels"] and report["pipeline_runs"] == 1
    assert not (tmp_path / "numba").exists() and not (tmp_path / "graphs").exists()

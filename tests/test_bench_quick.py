"""Smoke test of the benchmark suite: `python -m bench --quick` on tiny sizes.

It checks what a CI run can check without timing anything: every implementation that ran agrees with the
numpy reference (the suite's own cross-check), nothing crashed, and the markdown and JSON reports are written.
No timing is asserted, ever. torch.compile is left out here only because its start-up (~15 s) and per-workload
compiles would dominate the test suite's time; the full `python -m bench` runs it.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--impls", "numpy,torch,jax.jit,kernelflow", "--out", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done, out


def test_quick_run_exits_cleanly(quick_run):
    done, _ = quick_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_reports_are_written(quick_run):
    _, out = quick_run
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert [w["key"] for w in results["workloads"]] == ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]
    for w in results["workloads"]:
        assert f"{w['key']} {w['title']}" in markdown
    assert results["copy_bandwidth"] and all(r["gbps"] > 0 for r in results["copy_bandwidth"])
    # The chart is optional (matplotlib is the `bench` extra); when skipped, the report says why.
    assert (out / "results.png").exists() or "No chart" in markdown


def test_cross_check_passes(quick_run):
    _, out = quick_run
    results = json.loads((out / "results.json").read_text())
    for w in results["workloads"]:
        rows = w["rows"]
        assert rows["numpy"]["status"] == "ok", (w["key"], rows["numpy"])
        for impl, row in rows.items():
            # A peer that is not installed, or a kernelflow piece not written yet, is "unavailable: <reason>";
            # anything that ran must agree with numpy.
            assert row["status"] == "ok" or row["status"].startswith("unavailable: "), (w["key"], impl, row)
            if row["status"] == "ok":
                assert row["times_s"] and all(t > 0 for t in row["times_s"])
                assert row["median_s"] is not None


def test_cross_check_detects_a_wrong_result():
    """The check the suite relies on: a result off by more than the tolerance is FAILED, one within it is not."""
    import numpy as np

    sys.path.insert(0, str(REPO_ROOT))
    from bench.harness import Tolerance, compare

    ref = [("out0", np.linspace(-3, 3, 101, dtype=np.float32))]
    tol = Tolerance(rtol=1e-5, atol_rel=1e-6)
    close = [("out0", ref[0][1] * np.float32(1 + 2e-6))]
    wrong = [("out0", ref[0][1] + np.float32(1e-3))]
    assert compare(close, ref, tol)[0]
    assert not compare(wrong, ref, tol)[0]
    assert not compare([("out0", ref[0][1][:-1])], ref, tol)[0]            # shape mismatch
    assert not compare([("out0", np.full(101, np.nan, np.float32))], ref, tol)[0]


def test_machine_names_the_blas_kernels_openblas_was_told_to_use_without_importing_kernelflow():
    # OpenBLAS takes OPENBLAS_CORETYPE when it loads; the report must name the kernels it really runs,
    # because they decide the GEMM figures (AVX2 against AVX-512: 1.6x on our Zen 5 machines). The suite
    # describes the machine before the peers load, so kernelflow (which sets OMP_WAIT_POLICY) must not be
    # imported by it.
    coretype = "Sandybridge"
    code = ("import json, os, sys; from bench import machine; d = machine.describe(); "
            "print(json.dumps([d['blas_kernels'], d['blas_environment'], 'kernelflow' in sys.modules, "
            "os.environ.get('OMP_WAIT_POLICY')]))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=str(REPO_ROOT), OPENBLAS_CORETYPE=coretype)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    kernels, settings, kernelflow_imported, wait_policy = json.loads(done.stdout)
    assert kernels.lower() == coretype.lower()
    assert settings["OPENBLAS_CORETYPE"] == coretype
    assert not kernelflow_imported and wait_policy is None

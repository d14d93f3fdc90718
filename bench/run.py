"""Running the suite: machine description, copy bandwidth, start-up costs, the workloads, the warm-cache
compile measurement in a new process, and the reports."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .harness import Config, Unavailable, _reason, measure_copy_bandwidth, run_workload
from .machine import describe
from .peers import configure as configure_peers, import_jax, import_kernelflow, import_torch
from .workloads import BY_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent


def _trivial(x):
    return x * 2 + 1


def measure_startup(cfg: Config, log=print) -> dict:
    """The one-time cost of each jit in this process (first call of a trivial function), so that it is not
    charged to whichever workload happens to run first."""
    import numpy as np
    x = np.arange(4, dtype=np.float32)
    startup = {}
    attempts = {
        "torch.compile": lambda: _first_call(lambda: import_torch().compile(_trivial)(import_torch().from_numpy(x))),
        "jax.jit": lambda: _first_call(lambda: import_jax().jit(_trivial)(x).block_until_ready()),
        "kernelflow": lambda: _first_call(
            lambda: import_kernelflow().jit(_trivial, backend=cfg.backend)(x)),
    }
    for impl, attempt in attempts.items():
        if impl not in cfg.impls:
            continue
        try:
            startup[impl] = attempt()
        except Unavailable as exc:
            startup[impl] = f"unavailable: {exc}"
        except Exception as exc:  # noqa: BLE001
            startup[impl] = f"unavailable: {_reason(exc)}"
        log(f"  start-up {impl}: {startup[impl]}")
    return startup


def _first_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compile_in_new_process(cfg: Config, keys: list[str], cache_dir: str, what: str, log=print) -> dict:
    """kernelflow's first-call times in a NEW process (kernelflow and numpy only: no peer loaded) with
    ``KERNELFLOW_CACHE_DIR=cache_dir``: ``what`` is "cold" for an empty directory, "warm" for a full one."""
    if not keys:
        return {"note": "skipped: no workload ran on kernelflow", "workloads": {}}
    command = [sys.executable, "-m", "bench.warm_compile", "--only", ",".join(keys),
               "--threads", str(cfg.threads), "--backend", cfg.backend] + (["--quick"] if cfg.quick else [])
    log(f"  {what}-cache compile in a new process: " + " ".join(command[1:]))
    env = dict(os.environ, KERNELFLOW_CACHE_DIR=cache_dir)
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"note": f"the {what}-cache process ran over 600 s", "workloads": {}}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"note": f"the {what}-cache process failed (exit {done.returncode}): {tail[0]}", "workloads": {}}
    result = json.loads(lines[-1])
    result["note"] = (f"{what} KERNELFLOW_CACHE_DIR; `import kernelflow` took "
                      f"{result['import_s']:.2f} s and the trivial start-up call {result['startup']}")
    return result


def run_suite(cfg: Config, out_dir: Path, log=print) -> tuple[dict, dict[str, Path]]:
    started = datetime.datetime.now().isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    configure_peers(cfg.threads, cfg.backend)
    machine = describe()
    load_start = os.getloadavg()[0]
    copy_threads = (1, cfg.threads) if cfg.threads > 1 else (1,)
    sizes = (16,) if cfg.quick else (16, 64, 1024)
    log(f"copy bandwidth: buffers {sizes} MiB, threads {copy_threads}")
    copy = measure_copy_bandwidth(sizes, copy_threads, runs=3 if cfg.quick else 7)
    for entry in copy:
        log(f"  {entry['size_mib']:5d} MiB, {entry['threads']} thread(s): {entry['gbps']:.1f} GB/s")
    log("start-up:")
    startup = measure_startup(cfg, log)
    keys = list(cfg.only) or list(BY_KEY)
    workloads = []
    for key in keys:
        log(f"{key} {BY_KEY[key].title}:")
        workloads.append(run_workload(BY_KEY[key], cfg, log))
    cold = warm = {}
    if cfg.warm_compile and "kernelflow" in cfg.impls:
        # Compile time does not depend on the result being right: FAILED rows are measured too.
        kf_keys = [w["key"] for w in workloads
                   if w["rows"].get("kernelflow", {}).get("status", "").startswith(("ok", "FAILED"))]
        with tempfile.TemporaryDirectory(prefix="kf-bench-compile-") as cache_dir:
            cold = compile_in_new_process(cfg, kf_keys, cache_dir, "cold", log)
            warm = compile_in_new_process(cfg, kf_keys, cache_dir, "warm", log)
    results = {
        "started": started,
        "config": {"quick": cfg.quick, "only": keys, "impls": list(cfg.impls), "threads": cfg.threads,
                   "runs": cfg.runs, "warmup": cfg.warmup, "backend": cfg.backend},
        "machine": machine,
        "copy_threads": list(copy_threads),
        "copy_bandwidth": copy,
        "startup": startup,
        "workloads": workloads,
        "cold_compile": cold,
        "warm_compile": warm,
        "wall_s": 0.0,
        # 1-minute load average before and after: other processes on the machine make every figure noisier.
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
    }
    results["wall_s"] = time.perf_counter() - wall_start
    paths = report.write(results, out_dir)
    return results, paths

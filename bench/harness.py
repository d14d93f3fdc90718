"""The shared harness: run every implementation of a workload on the same data, check, time, compare.

A workload (see `Workload`) makes its data once and has one *builder* per implementation. A builder turns the
data into a `Prepared`: a no-argument `call` that does one complete, synchronous run (it blocks until the result
is ready, so asynchronous peers such as JAX are timed honestly) and a `to_numpy` that turns that run's result
into a flat list of numpy arrays. Builders raise `Unavailable` when their framework is not installed or a
kernelflow piece is missing; such a row is reported, never fatal.

Per implementation the harness times the first call (for the jitted ones this is trace + compile + run) and runs
`warmup` untimed calls; then it takes `runs` timed samples of every implementation, interleaved round by round,
and keeps every sample; the figure reported is the median. The numpy eager result is the reference: every other
result must agree with it within the workload's stated tolerance, or the row is marked FAILED and no ratio is
computed from it.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# The implementations in the order they are run and reported. numpy eager runs first: it is the reference.
IMPLEMENTATIONS = ("numpy", "torch", "torch.compile", "jax.jit", "kernelflow")
PEERS = IMPLEMENTATIONS[:-1]
JITTED = ("torch.compile", "jax.jit", "kernelflow")


class Unavailable(Exception):
    """This implementation cannot run here: a peer is not installed, or a kernelflow piece is missing."""


@dataclass(frozen=True)
class Tolerance:
    """`|result - reference| <= rtol * |reference| + atol_rel * max|reference|`, element by element."""
    rtol: float
    atol_rel: float

    def describe(self) -> str:
        return f"|x - ref| <= {self.rtol:g}*|ref| + {self.atol_rel:g}*max|ref|"


@dataclass
class Prepared:
    call: Callable[[], Any]
    to_numpy: Callable[[Any], list[np.ndarray]]


@dataclass
class Workload:
    key: str                                     # "W1"
    title: str                                   # short name for tables
    description: str                             # what is computed, with the sizes of the full run
    make_data: Callable[[bool], dict]            # quick -> data shared by all implementations
    builders: dict[str, Callable[[dict], Prepared]]
    tolerance: Tolerance
    # Names and arrays that are compared (see `compare`); by default the outputs themselves (out0, out1, ...).
    check_view: Callable[[list[np.ndarray], dict], list[tuple]] | None = None
    # Minimum bytes a run must move (inputs read once, outputs written once) for memory-bound workloads.
    bytes_moved: Callable[[dict], int] | None = None
    calls_per_run: Callable[[bool], int] = lambda quick: 1   # W8 times many tiny calls per sample
    unit: str = "ms"                             # how times are shown: "ms" or "us"
    # Issue 5's goal: kernelflow / <peer> <= ratio, where peer is an implementation or "best peer".
    goal: tuple[str, float] | None = None


@dataclass
class Config:
    quick: bool = False
    only: tuple[str, ...] = ()
    impls: tuple[str, ...] = IMPLEMENTATIONS
    threads: int = 2
    runs: int = 9
    warmup: int = 2
    backend: str = "numba"
    warm_compile: bool = True


@dataclass
class Row:
    """One implementation of one workload: what happened and what was measured."""
    impl: str
    status: str = "not run"              # "ok", "FAILED: ...", "unavailable: ...", "error: ..."
    first_call_s: float | None = None
    times_s: list[float] = field(default_factory=list)   # seconds per call, one per timed sample
    check: str = ""                      # how it compared with the numpy reference
    gbps: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    def as_dict(self) -> dict:
        return {
            "impl": self.impl, "status": self.status, "first_call_s": self.first_call_s,
            "median_s": self.median_s, "min_s": min(self.times_s) if self.times_s else None,
            "max_s": max(self.times_s) if self.times_s else None, "times_s": self.times_s,
            "check": self.check, "gbps": self.gbps,
        }


# ---------------------------------------------------------------------------------------------------------
# Checking


def default_view(arrays: list[np.ndarray], data: dict) -> list[tuple[str, np.ndarray]]:
    return [(f"out{i}", a) for i, a in enumerate(arrays)]


def compare(got: list[tuple], ref: list[tuple], tol: Tolerance) -> tuple[bool, str]:
    """Whether `got` agrees with `ref` within `tol`, and a one-line account (worst error as a fraction of the
    allowed error: 0.01 means a hundred times inside the tolerance). Entries are `(name, array)`, or
    `(name, array, slack)` where the reference's `slack` is an absolute error allowed on top, per element."""
    if len(got) != len(ref):
        return False, f"{len(got)} outputs, reference has {len(ref)}"
    worst, worst_name = 0.0, ""
    for got_entry, ref_entry in zip(got, ref):
        name, a, r = got_entry[0], np.asarray(got_entry[1]), np.asarray(ref_entry[1])
        slack = np.asarray(ref_entry[2], np.float64) if len(ref_entry) > 2 else np.zeros(r.shape)
        if a.shape != r.shape:
            return False, f"{name}: shape {a.shape}, reference {r.shape}"
        if not np.all(np.isfinite(a) == np.isfinite(r)):
            return False, f"{name}: non-finite values where the reference has none (or the reverse)"
        a64 = a.astype(np.float64)
        r64 = r.astype(np.float64)
        finite = np.isfinite(r64)
        scale = float(np.max(np.abs(r64[finite]))) if finite.any() else 0.0
        allowed = tol.rtol * np.abs(r64[finite]) + tol.atol_rel * scale + slack[finite] + 1e-30
        err = float(np.max(np.abs(a64[finite] - r64[finite]) / allowed)) if finite.any() else 0.0
        if err > worst:
            worst, worst_name = err, name
    account = f"max err {worst:.2g}x tol" + (f" ({worst_name})" if worst_name else "")
    return worst <= 1.0, account


# ---------------------------------------------------------------------------------------------------------
# Timing


def time_calls(call: Callable[[], Any], runs: int, calls_per_run: int) -> list[float]:
    """Seconds per call, one sample per run; a run of `calls_per_run` calls is timed as a whole."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls_per_run):
            call()
        samples.append((time.perf_counter() - start) / calls_per_run)
    return samples


def _reason(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    if len(first_line) > 160:
        first_line = first_line[:157] + "..."
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def run_workload(workload: Workload, cfg: Config, log: Callable[[str], None] = print) -> dict:
    """Run every selected implementation of `workload`; returns a JSON-ready dict.

    First each implementation is built, called once (timed: the first call), warmed up, and checked against
    the numpy result. Then the timed runs are interleaved, one sample of every implementation per round, so
    that load from other processes on a shared machine falls on all of them alike rather than on whichever
    happened to run at that moment; each sample follows one untimed call of the same implementation."""
    data = workload.make_data(cfg.quick)
    view = workload.check_view or default_view
    calls_per_run = workload.calls_per_run(cfg.quick)
    rows: dict[str, Row] = {}
    ready: dict[str, Prepared] = {}
    reference = None
    for impl in cfg.impls:
        row = rows[impl] = Row(impl)
        builder = workload.builders.get(impl)
        if builder is None:
            row.status = "unavailable: no implementation of this workload"
            continue
        if impl != "numpy" and reference is None:
            row.status = "unavailable: no numpy reference to check against"
            continue
        try:
            prepared = builder(data)
            start = time.perf_counter()
            result = prepared.call()
            row.first_call_s = time.perf_counter() - start
            for _ in range(cfg.warmup):
                prepared.call()
            arrays = view(prepared.to_numpy(result), data)
            del result
        except Unavailable as exc:
            row.status = f"unavailable: {exc}"
            log(f"  {workload.key} {impl:14s} {row.status}")
            continue
        except Exception as exc:  # noqa: BLE001 - a crash of one implementation must not end the suite
            _record_crash(row, exc, workload.key, log)
            continue
        if impl == "numpy":
            reference = arrays
            row.status, row.check = "ok", "reference"
        else:
            agrees, row.check = compare(arrays, reference, workload.tolerance)
            row.status = "ok" if agrees else f"FAILED: {row.check}"
        ready[impl] = prepared

    for _ in range(cfg.runs):
        for impl, prepared in list(ready.items()):
            try:
                # One untimed call first: the previous implementation's thread pool may still be spinning
                # and its data fills the caches; a training loop calls one step after another, so the
                # sample is taken in that steady state, for every implementation alike.
                prepared.call()
                rows[impl].times_s += time_calls(prepared.call, 1, calls_per_run)
            except Exception as exc:  # noqa: BLE001
                _record_crash(rows[impl], exc, workload.key, log)
                del ready[impl]

    # Check again after the timed runs: a result that changes between calls (state kept across calls, buffers
    # reused while still in use) is as wrong as a wrong formula.
    for impl, prepared in ready.items():
        row = rows[impl]
        if impl == "numpy" or not row.ok:
            continue
        try:
            agrees, account = compare(view(prepared.to_numpy(prepared.call()), data), reference, workload.tolerance)
        except Exception as exc:  # noqa: BLE001
            _record_crash(row, exc, workload.key, log)
            continue
        if not agrees:
            row.status = f"FAILED: after the timed runs: {account}"

    for impl, row in rows.items():
        if impl in ready:
            if workload.bytes_moved is not None and row.median_s:
                row.gbps = workload.bytes_moved(data) / row.median_s / 1e9
            log(f"  {workload.key} {impl:14s} {row.status:10s} median {_fmt_time(row.median_s, workload.unit)}"
                f"  first call {_fmt_time(row.first_call_s, 'ms')}  {row.check}")
    ready.clear()
    return {
        "key": workload.key, "title": workload.title, "description": workload.description,
        "unit": workload.unit, "tolerance": workload.tolerance.describe(),
        "bytes_moved": workload.bytes_moved(data) if workload.bytes_moved else None,
        "calls_per_run": calls_per_run,
        "rows": {impl: row.as_dict() for impl, row in rows.items()},
        "ratios": kernelflow_ratios(rows),
        "goal": goal_status(workload.goal, rows),
    }


def _record_crash(row: Row, exc: Exception, key: str, log: Callable[[str], None]) -> None:
    # A kernelflow piece that is missing or broken is reported as unavailable (the suite is useful at every
    # stage of the project); a peer that crashes is a bug in this suite: "error".
    kind = "unavailable" if row.impl == "kernelflow" else "error"
    row.status = f"{kind}: {_reason(exc)}"
    row.times_s = []
    log(f"  {key} {row.impl:14s} {row.status}")
    if kind == "error":
        log(traceback.format_exc())


def kernelflow_ratios(rows: dict[str, Row]) -> dict[str, float]:
    """kernelflow median / peer median, for every peer whose row (and kernelflow's) passed the check."""
    kf = rows.get("kernelflow")
    if kf is None or not kf.ok or not kf.median_s:
        return {}
    return {impl: kf.median_s / row.median_s for impl, row in rows.items()
            if impl != "kernelflow" and row.ok and row.median_s}


def goal_status(goal: tuple[str, float] | None, rows: dict[str, Row]) -> dict | None:
    """The issue's goal for this workload and whether this run meets it (None where it cannot be judged)."""
    if goal is None:
        return None
    target, limit = goal
    peers = {impl: row for impl, row in rows.items() if impl != "kernelflow" and row.ok and row.median_s}
    if target == "best peer":
        target = min(peers, key=lambda impl: peers[impl].median_s) if peers else target
    ratio = kernelflow_ratios(rows).get(target)
    return {"peer": target, "limit": limit, "ratio": ratio, "met": None if ratio is None else ratio <= limit}


def _fmt_time(seconds: float | None, unit: str) -> str:
    if seconds is None:
        return "-"
    if unit == "us":
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.3g} ms" if seconds < 10 else f"{seconds:.1f} s"


# ---------------------------------------------------------------------------------------------------------
# Copy bandwidth, the yardstick for memory-bound workloads


def _copy(dst: np.ndarray, src: np.ndarray, threads: int) -> None:
    """Copy src into dst with `threads` Python threads on equal slices (numpy releases the GIL while copying)."""
    if threads == 1:
        np.copyto(dst, src)
        return
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    workers = [threading.Thread(target=np.copyto, args=(dst[lo:hi], src[lo:hi]))
               for lo, hi in zip(bounds[1:-1], bounds[2:])]
    for w in workers:
        w.start()
    np.copyto(dst[bounds[0]:bounds[1]], src[bounds[0]:bounds[1]])
    for w in workers:
        w.join()


def measure_copy_bandwidth(sizes_mib: tuple[int, ...], threads: tuple[int, ...], runs: int) -> list[dict]:
    """GB/s of a numpy copy into a preallocated buffer (bytes read + bytes written per second, the same
    accounting as the workloads' GB/s), the median of `runs` copies after one warm-up copy."""
    results = []
    for mib in sizes_mib:
        src = np.ones(mib * 2**20 // 4, dtype=np.float32)
        dst = np.empty_like(src)
        for n in threads:
            _copy(dst, src, n)
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                _copy(dst, src, n)
                samples.append(time.perf_counter() - start)
            seconds = statistics.median(samples)
            results.append({"size_mib": mib, "threads": n, "gbps": 2 * src.nbytes / seconds / 1e9})
        del src, dst
    return results


def matching_copy_bandwidth(copy_results: list[dict], nbytes: int, threads: int) -> dict | None:
    """The copy measurement whose bytes moved (read + written) are closest, on a log scale, to the `nbytes` a
    workload moves, at `threads` threads."""
    candidates = [r for r in copy_results if r["threads"] == threads] or copy_results
    if not candidates or not nbytes:
        return None
    return min(candidates, key=lambda r: abs(math.log(2 * r["size_mib"] * 2**20 / nbytes)))

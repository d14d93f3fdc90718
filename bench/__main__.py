"""`python -m bench`: run the benchmark suite. See `python -m bench --help`."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import environment

IMPLEMENTATIONS = ("numpy", "torch", "torch.compile", "jax.jit", "kernelflow")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="kernelflow vs numpy eager, PyTorch eager, torch.compile and jax.jit on workloads W1-W8: "
                    "results checked against numpy, medians, ratios, compile times, GB/s vs copy bandwidth.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, 2 timed runs: a smoke test of the suite, not figures")
    parser.add_argument("--only", type=lambda t: _names(t, WORKLOADS, "workload"), default=(),
                        help="comma-separated workloads, e.g. W3,W4 (default: all)")
    parser.add_argument("--impls", type=lambda t: _names(t, IMPLEMENTATIONS, "implementation"),
                        default=IMPLEMENTATIONS,
                        help="comma-separated implementations (default: all; numpy always runs, it is the "
                             "reference)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for every library (default: all cores)")
    parser.add_argument("--runs", type=int, help="timed runs per implementation (default 9; quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed calls after the first (default 2; quick 1)")
    parser.add_argument("--backend", default="numba", help="kernelflow backend (default numba)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="output directory (default bench/results)")
    parser.add_argument("--cache-dir",
                        help="KERNELFLOW_CACHE_DIR to use and keep (default: a new empty directory, removed "
                             "afterwards, so that first calls are cold)")
    parser.add_argument("--no-warm-compile", action="store_true",
                        help="skip the warm-cache compile measurement in a new process")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="kernelflow-bench-cache-")
    environment.configure(args.threads, cache_dir)

    from .harness import Config
    from .run import run_suite

    impls = ("numpy",) + tuple(i for i in args.impls if i != "numpy")
    cfg = Config(
        quick=args.quick, only=args.only, impls=impls, threads=args.threads,
        runs=args.runs if args.runs is not None else (2 if args.quick else 9),
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        backend=args.backend, warm_compile=not args.no_warm_compile,
    )
    if not cfg.quick and cfg.runs < 7:
        print(f"note: {cfg.runs} timed runs; figures for the docs need at least 7", file=sys.stderr)
    try:
        results, paths = run_suite(cfg, args.out)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    print()
    print(Path(paths["md"]).read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    failed = [f"{w['key']} {impl}" for w in results["workloads"] for impl, row in w["rows"].items()
              if row["status"].startswith(("FAILED", "error"))]
    if failed:
        print("FAILED or crashed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: re-run an IR dump.

    python -m kernelflow run dump/predict.0.kf --inputs inputs.npz [--backend interpret] [--out out.npz]

The npz holds one array per graph input, named arr_0, arr_1, ... (what ``np.savez(path, *arrays)``
writes) or by input index ("0", "1", ...). The outputs are printed, and saved with ``--out``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def _inputs_from_npz(path: str, n: int) -> list[np.ndarray]:
    with np.load(path) as data:
        arrays = []
        for i in range(n):
            for name in (f"arr_{i}", str(i), f"input_{i}"):
                if name in data.files:
                    arrays.append(data[name])
                    break
            else:
                raise SystemExit(f"error: {path} has no array for input {i} (looked for arr_{i}, {i}); it holds "
                                 f"{', '.join(data.files) or 'nothing'}")
    return arrays


def run(args) -> int:
    from .ir.parser import parse
    from .frontend.staging import compile_executable

    with open(args.file) as f:
        graph = parse(f.read())
    n = len(graph.inputs)
    if n and not args.inputs:
        raise SystemExit(f"error: {args.file} takes {n} inputs ({', '.join(str(v.type) for v in graph.inputs)}); "
                         "pass them with --inputs file.npz")
    arrays = _inputs_from_npz(args.inputs, n) if n else []
    executable = compile_executable(graph, args.backend, check_nan=args.check_nan)
    outputs = executable(*arrays)
    np.set_printoptions(threshold=args.threshold)
    for i, out in enumerate(outputs):
        out = np.asarray(out)
        print(f"output {i}: {out.dtype}{list(out.shape)}")
        print(out)
    if args.out:
        np.savez(args.out, *outputs)
        print(f"saved {len(outputs)} outputs to {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernelflow", description="kernelflow command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run an IR dump (.kf) on inputs from an .npz file")
    p.add_argument("file", help="the .kf text of a graph (KERNELFLOW_DUMP writes them)")
    p.add_argument("--inputs", help=".npz with arr_0, arr_1, ... (one per graph input)")
    p.add_argument("--backend", default="interpret", choices=("interpret", "numba", "triton"))
    p.add_argument("--out", help="save the outputs to this .npz (arr_0, arr_1, ...)")
    p.add_argument("--check-nan", action="store_true", help="raise at the first node producing NaN")
    p.add_argument("--threshold", type=int, default=1000, help="numpy print threshold")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.accuracy`: the model library's accuracy targets on real data, with wall times.

Issue 7's targets, run here and not in CI (they take minutes): LeNet-5 on Fashion-MNIST >= 0.89 test accuracy
after 3 epochs, the MLP >= 0.87 after 3 epochs, and char-rnn (LSTM and GRU, 1000 steps on pydoc_data's
topics text) with a smoothed loss below 2.0 nats per character (uniform over the 4.5-nat alphabet would stay
there). Each runs the example's own main() (examples/), so the figures are what a user of the examples gets.
Needs Fashion-MNIST (`apt-get install dataset-fashion-mnist`, or KERNELFLOW_DATA).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
TARGETS = {"lenet5_fashion_mnist": ("accuracy", 0.89), "mlp_fashion_mnist": ("accuracy", 0.87),
           "char_rnn --cell lstm": ("smoothed_loss", 2.0), "char_rnn --cell gru": ("smoothed_loss", 2.0)}


def run(name: str) -> dict:
    module_name, *argv = name.split()
    sys.path.insert(0, EXAMPLES)
    module = __import__(module_name)
    argv += ["--verbose", "0", "--save", ""] if module_name == "lenet5_fashion_mnist" else []
    argv += ["--verbose", "0"] if module_name == "mlp_fashion_mnist" else []
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = module.main(argv + ["--dataset", "fashion-mnist"] if "fashion" in module_name else argv)
    return {"seconds": time.perf_counter() - start, **{k: result[k] for k in ("accuracy", "smoothed_loss")
                                                      if k in result}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    args = parser.parse_args()
    print("| run | metric | value | target | met | wall time |")
    print("|---|---|---|---|---|---|")
    for name in args.only.split(","):
        metric, target = TARGETS[name]
        result = run(name)
        value = result[metric]
        met = value >= target if metric == "accuracy" else value <= target
        print(f"| {name} | {metric} | {value:.4f} | {'>=' if metric == 'accuracy' else '<='} {target} | "
              f"{'yes' if met else 'NO'} | {result['seconds']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()

"""The kernelflow demo (`make demo`): trace a model into the IR, then train LeNet-5 with compiled kernels.

1. A two-layer network written with plain numpy calls is traced by ``kf.jit``; its SSA graph is printed.
2. LeNet-5 is trained on the 8x8 UCI digits shipped with kernelflow (on Fashion-MNIST when it is
   installed: ``apt-get install dataset-fashion-mnist``) — forward, backward and Adam update as ONE
   compiled graph of numba kernels — and its test accuracy is printed.
3. The compiled training step is summarised: kernel count, and where the IR dumps of every stage are.

    python examples/demo.py [--epochs N] [--dump-dir DIR]
"""
import argparse
import os
import sys
import time

import numpy as np

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=None, help="default: 30 on the digits, 1 on Fashion-MNIST")
parser.add_argument("--dump-dir", default="kernelflow_dumps", help="where KERNELFLOW_DUMP writes the IR")
parser.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto",
                    help="auto: Fashion-MNIST when installed, else the shipped digits")
args = parser.parse_args()
# The dump dial must be set before kernelflow traces anything.
os.environ.setdefault("KERNELFLOW_DUMP", os.path.abspath(args.dump_dir))

import kernelflow as kf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lenet5_fashion_mnist import lenet5  # noqa: E402
from mlp_fashion_mnist import load_images  # noqa: E402


def section(title):
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


# -- 1. tracing ---------------------------------------------------------------------------------------
section("1. a numpy-style model, traced into the kernelflow IR")


@kf.jit
def predict(params, x):
    h = np.maximum(x @ params["w1"] + params["b1"], 0.0)  # plain numpy calls trace
    return kf.softmax(h @ params["w2"] + params["b2"], axis=-1)


rng = np.random.default_rng(0)
params = {"w1": rng.standard_normal((64, 32)).astype(np.float32) * 0.1, "b1": np.zeros(32, np.float32),
          "w2": rng.standard_normal((32, 10)).astype(np.float32) * 0.1, "b2": np.zeros(10, np.float32)}
x = rng.standard_normal((4, 64)).astype(np.float32)
print(predict.lower(params, x).ir())
probs = predict(params, x)
print("row sums of the compiled softmax:", np.round(probs.sum(axis=1), 6))

# -- 2. training --------------------------------------------------------------------------------------
section("2. LeNet-5, trained with one compiled graph per step")
name, (x_train, y_train), (x_test, y_test) = load_images(args.dataset)
epochs = args.epochs or (30 if name == "8x8 digits" else 1)
print(f"{name}: {len(x_train)} training / {len(x_test)} test images of shape {list(x_train.shape[1:])}, "
      f"{epochs} epochs")
model = lenet5(x_train.shape[-1])
model.compile(loss="cross_entropy", optimizer=kf.optim.Adam(2e-3), metrics=["accuracy"])
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=1)
train_seconds = time.perf_counter() - start
result = model.evaluate(x_test, y_test, batch_size=500)
print(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) after {train_seconds:.1f} s of training")

# -- 3. what was compiled -----------------------------------------------------------------------------
section("3. the compiled training step")
train_step = model._step("train")
xb, yb = x_train[:64], y_train[:64]
weights = np.full(64, 1 / 64, np.float32)
compiled = train_step.lower(model.params, model.opt_state, xb, yb, weights, None).compile()
kinds = {}
for k in compiled.kernels:
    kinds[k.kind] = kinds.get(k.kind, 0) + 1
print(f"forward + backward + Adam update: {len(compiled.optimized.nodes)} IR nodes after simplification, "
      f"{len(compiled.kernels)} generated kernels ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
print("first kernel, as generated:\n")
print(compiled.kernels[0].source)
dump_dir = os.environ["KERNELFLOW_DUMP"]
files = sorted(os.listdir(dump_dir)) if os.path.isdir(dump_dir) else []
traced = [f for f in files if f.startswith("train_step.") and f.count(".") == 2]  # <name>.<n>.kf
print(f"IR dumps ({len(files)} files: each traced graph and every compiler stage) are in {dump_dir}")
if traced:
    print(f"  the training step as traced: {traced[0]}; re-run any .kf dump with\n"
          f"  python -m kernelflow run {os.path.join(dump_dir, traced[0])} --inputs <arrays.npz>")

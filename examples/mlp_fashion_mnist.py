"""A multi-layer perceptron on Fashion-MNIST (falls back to the shipped 8x8 digits when Fashion-MNIST is
not installed: `apt-get install dataset-fashion-mnist`, or set KERNELFLOW_DATA).

    Flatten -> Dense(256) -> ReLU -> Dropout(0.2) -> Dense(128) -> ReLU -> Dense(10)

kf.nn.Sequential.fit compiles forward, backward and the Adam update into one kf.jit step.

    python examples/mlp_fashion_mnist.py               # 3 epochs
    python examples/mlp_fashion_mnist.py --steps 20    # 20 training steps, then a quick test
"""
import argparse

import numpy as np

import kernelflow as kf
from kernelflow import nn


def load_images(dataset="auto"):
    """(name, (x_train, y_train), (x_test, y_test)) with standardised float32 images [N, 1, H, W]."""
    if dataset != "digits" and kf.data.fashion_mnist_available():
        (x_train, y_train), (x_test, y_test) = kf.data.load_fashion_mnist()
        name, scale = "Fashion-MNIST", 255.0
    elif dataset == "fashion-mnist":
        raise SystemExit("Fashion-MNIST not found: `apt-get install dataset-fashion-mnist`, or set KERNELFLOW_DATA")
    else:
        if dataset == "auto":
            print("Fashion-MNIST not found (apt-get install dataset-fashion-mnist, or set KERNELFLOW_DATA): "
                  "using the 8x8 digits shipped with kernelflow instead")
        (x_train, y_train), (x_test, y_test) = kf.data.load_digits()
        name, scale = "8x8 digits", 16.0
    # standardise with the training set's mean and deviation (as torchvision's Normalize): faster training
    mean, std = x_train.mean() / scale, x_train.std() / scale
    prepare = lambda images: ((images[:, None] / scale - mean) / std).astype(np.float32)  # noqa: E731 (NCHW)
    return name, (prepare(x_train), y_train.astype(np.int32)), (prepare(x_test), y_test.astype(np.int32))


def train_and_report(model, args, name, train, test):
    """Adam, cross-entropy and accuracy; --steps N trains N steps and tests on 1000 images. Prints the test
    loss and accuracy and returns them with the dataset name and the history."""
    (x_train, y_train), (x_test, y_test) = train, test
    model.compile(loss="cross_entropy", optimizer=kf.optim.Adam(args.lr), metrics=["accuracy"])
    epochs = 1 if args.steps else args.epochs
    if args.steps:
        x_test, y_test = x_test[:1000], y_test[:1000]
    print(f"{name}: {len(x_train)} training and {len(x_test)} test images of shape {list(x_train.shape[1:])}")
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, steps_per_epoch=args.steps,
                        validation_data=(x_test, y_test), verbose=args.verbose)
    result = model.evaluate(x_test, y_test, batch_size=500)
    print(f"test loss {result['loss']:.4f}  test accuracy {result['accuracy']:.4f}")
    return {"dataset": name, "history": history, **result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="train this many steps only (a quick run)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto")
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)

    load_images_result = load_images(args.dataset)
    model = nn.Sequential([nn.Flatten(), nn.Dense(256, kernel_initializer="he_uniform"), nn.ReLU(), nn.Dropout(0.2),
                           nn.Dense(128, kernel_initializer="he_uniform"), nn.ReLU(), nn.Dense(10)],
                          backend=args.backend)
    return train_and_report(model, args, *load_images_result)


if __name__ == "__main__":
    main()

"""LeNet-5 (LeCun et al. 1998, with ReLU and max-pooling) on Fashion-MNIST; on the shipped 8x8 digits when
Fashion-MNIST is not installed (`apt-get install dataset-fashion-mnist`, or set KERNELFLOW_DATA).

    28x28: Conv(6, 5x5, pad 2) ReLU MaxPool(2) Conv(16, 5x5) ReLU MaxPool(2) Dense(120) ReLU Dense(84) ReLU Dense(10)
    8x8:   the same stack with 3x3 convolutions, both padded by 1 (a 5x5 window does not fit the second stage)

    python examples/lenet5_fashion_mnist.py                  # 3 epochs, then saves lenet5.npz
    python examples/lenet5_fashion_mnist.py --steps 20
"""
import argparse
import os
import sys

from kernelflow import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mlp_fashion_mnist import load_images, train_and_report  # noqa: E402


def lenet5(image_size: int, backend: str = "numba") -> nn.Sequential:
    if image_size >= 28:
        first, second = nn.Conv2D(6, 5, padding=2), nn.Conv2D(16, 5)
    else:
        first, second = nn.Conv2D(6, 3, padding=1), nn.Conv2D(16, 3, padding=1)
    return nn.Sequential([first, nn.ReLU(), nn.MaxPool2D(2), second, nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(),
                          nn.Dense(120), nn.ReLU(), nn.Dense(84), nn.ReLU(), nn.Dense(10)], backend=backend)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="train this many steps only (a quick run)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dataset", choices=["auto", "fashion-mnist", "digits"], default="auto")
    parser.add_argument("--save", default="lenet5.npz", help="where to save the parameters ('' to skip)")
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)

    name, train, test = load_images(args.dataset)
    model = lenet5(train[0].shape[-1], args.backend)
    result = train_and_report(model, args, name, train, test)
    if args.save:
        model.save(args.save)
        print(f"parameters saved to {args.save}")
    return {**result, "model": model}


if __name__ == "__main__":
    main()

"""Logistic (softmax) regression on the 8x8 digits shipped with kernelflow.

    logits = x @ W + b,   loss = cross_entropy(logits, labels) + l2 * |W|^2

One kf.jit function does the forward pass, the gradient and the Adam update, batch after batch.

    python examples/logistic_regression.py             # 600 steps, about 27 epochs
    python examples/logistic_regression.py --steps 20
"""
import argparse

import numpy as np

import kernelflow as kf


def load():
    (x_train, y_train), (x_test, y_test) = kf.data.load_digits()
    scale = lambda images: (images.reshape(len(images), -1) / 16.0).astype(np.float32)  # noqa: E731
    return (scale(x_train), y_train.astype(np.int32)), (scale(x_test), y_test.astype(np.int32))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load()
    params = {"W": np.zeros((64, 10), np.float32), "b": np.zeros(10, np.float32)}
    optimizer = kf.optim.Adam(args.lr)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        logits = x @ params["W"] + params["b"]
        return kf.cross_entropy(logits, y) + args.l2 * np.sum(params["W"] ** 2)

    @kf.jit(backend=args.backend)
    def train_step(params, opt_state, x, y):
        loss, grads = kf.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    @kf.jit(backend=args.backend)
    def predict(params, x):
        return np.argmax(x @ params["W"] + params["b"], axis=-1)

    step, epoch = 0, 0
    while step < args.steps:
        for xb, yb in kf.data.batches(x_train, y_train, args.batch_size, seed=epoch, drop_remainder=True):
            params, opt_state, loss = train_step(params, opt_state, xb, yb)
            step += 1
            if step >= args.steps:
                break
        epoch += 1
        print(f"epoch {epoch:3d}  step {step:4d}  loss {float(loss):.4f}")
    accuracy = float(np.mean(predict(params, x_test) == y_test))
    print(f"test accuracy {accuracy:.4f} on {len(x_test)} digits")
    return {"accuracy": accuracy, "loss": float(loss)}


if __name__ == "__main__":
    main()

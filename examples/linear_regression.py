"""Linear regression, as in the first lesson of the course: fit y = a * x + b by gradient descent.

The whole training step (prediction, loss, gradient, SGD update) is one kf.jit-compiled function.

    python examples/linear_regression.py            # 200 steps
    python examples/linear_regression.py --steps 20
"""
import argparse

import numpy as np

import kernelflow as kf

TRUE_A, TRUE_B = 3.0, 2.0


def make_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=n).astype(np.float32)
    y = (TRUE_A * x + TRUE_B + rng.normal(0.0, 0.1, size=n)).astype(np.float32)
    return x, y


def loss_fn(params, x, y):
    prediction = params["a"] * x + params["b"]
    return np.mean((prediction - y) ** 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="gradient steps (default 200)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    x, y = make_data()
    params = {"a": np.zeros((), np.float32), "b": np.zeros((), np.float32)}
    optimizer = kf.optim.SGD(args.lr, momentum=0.9)
    opt_state = optimizer.init(params)

    @kf.jit(backend=args.backend)
    def train_step(params, opt_state, x, y):
        loss, grads = kf.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    for step in range(1, args.steps + 1):
        params, opt_state, loss = train_step(params, opt_state, x, y)
        if step % max(1, args.steps // 10) == 0 or step == 1:
            print(f"step {step:4d}  loss {float(loss):.5f}  a {float(params['a']):.4f}  b {float(params['b']):.4f}")
    a, b = float(params["a"]), float(params["b"])
    # the closed-form least-squares fit is what gradient descent converges to
    a_ls, b_ls = np.polyfit(x.astype(np.float64), y.astype(np.float64), 1)
    print(f"fitted   a = {a:.4f}, b = {b:.4f}")
    print(f"lstsq    a = {a_ls:.4f}, b = {b_ls:.4f}   (data made with a = {TRUE_A}, b = {TRUE_B})")
    return {"a": a, "b": b, "a_lstsq": a_ls, "b_lstsq": b_ls, "loss": float(loss)}


if __name__ == "__main__":
    main()

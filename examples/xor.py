"""XOR with one hidden layer: the problem a single perceptron cannot solve, solved to 100%.

    h = tanh(x @ W1 + b1),   p = sigmoid(h @ W2 + b2),   loss = binary cross-entropy

    python examples/xor.py              # 300 steps
    python examples/xor.py --steps 20
"""
import argparse

import numpy as np

import kernelflow as kf

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0], np.float32)


def init(hidden, seed):
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(0, 1, (2, hidden)).astype(np.float32), "b1": np.zeros(hidden, np.float32),
            "W2": rng.normal(0, 1, (hidden, 1)).astype(np.float32), "b2": np.zeros(1, np.float32)}


def forward(params, x):
    h = np.tanh(x @ params["W1"] + params["b1"])
    return kf.sigmoid(h @ params["W2"] + params["b2"])[:, 0]


def loss_fn(params, x, y):
    p = np.clip(forward(params, x), 1e-7, 1 - 1e-7)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    params = init(args.hidden, args.seed)
    optimizer = kf.optim.Adam(0.05)
    opt_state = optimizer.init(params)

    @kf.jit(backend=args.backend)
    def train_step(params, opt_state, x, y):
        loss, grads = kf.value_and_grad(loss_fn)(params, x, y)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    for step in range(1, args.steps + 1):
        params, opt_state, loss = train_step(params, opt_state, X, Y)
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  loss {float(loss):.4f}")
    probabilities = kf.jit(forward, backend=args.backend)(params, X)
    for x, p in zip(X, probabilities):
        print(f"xor({int(x[0])}, {int(x[1])}) = {float(p):.3f}")
    accuracy = float(np.mean((probabilities > 0.5) == (Y > 0.5)))
    print(f"accuracy {accuracy:.0%}")
    return {"accuracy": accuracy, "loss": float(loss)}


if __name__ == "__main__":
    main()

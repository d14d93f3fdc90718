"""A character-level language model (Karpathy's char-rnn) with an LSTM or a GRU, trained on the text of
Python's own documentation topics (pydoc_data/topics.py ships with every Python), then sampling text.

    Embedding(vocab, 32) -> LSTM or GRU(128, all steps) -> Dense(vocab)

Written with kf.nn's functional core: plain parameter dicts, layer.apply, and one kf.jit training step
(forward over the unrolled sequence, backward, gradient clipping, Adam). Sampling runs a second compiled
function, one character at a time, carrying the recurrent state between calls.

    python examples/char_rnn.py --cell lstm            # 1000 steps
    python examples/char_rnn.py --cell gru --steps 20
"""
import argparse

import numpy as np

import kernelflow as kf
from kernelflow import nn


def load_text() -> str:
    import pydoc_data.topics  # noqa: PLC0415
    text = "\n".join(pydoc_data.topics.topics.values())
    return "".join(c if ord(c) < 128 else "?" for c in text)  # keep the vocabulary ASCII and small


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by min(1, max_norm / |grads|) (traced: no Python branch on values)."""
    leaves, treedef = kf.tree_flatten(grads)
    norm = np.sqrt(sum(np.sum(g * g) for g in leaves))
    scale = np.minimum(1.0, max_norm / (norm + 1e-6))
    return kf.tree_unflatten(treedef, [g * scale for g in leaves]), norm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample", type=int, default=300, help="characters to sample after training")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    text = load_text()
    vocab = sorted(set(text))
    char_to_id = {c: i for i, c in enumerate(vocab)}
    data = np.array([char_to_id[c] for c in text], dtype=np.int32)
    print(f"{len(text)} characters of Python documentation, vocabulary of {len(vocab)}")

    embed = nn.Embedding(len(vocab), 32)
    rnn = (nn.LSTM if args.cell == "lstm" else nn.GRU)(args.hidden, return_sequences=True)
    head = nn.Dense(len(vocab))
    keys = nn.initializers.split_key(args.seed, 3)
    params = {}
    params["embed"], shape = embed.init(keys[0], (args.seq_len,))
    params["rnn"], shape = rnn.init(keys[1], shape)
    params["head"], _ = head.init(keys[2], shape)

    def loss_fn(params, x, y):
        hidden = rnn.apply(params["rnn"], embed.apply(params["embed"], x))
        logits = head.apply(params["head"], hidden)                           # [batch, time, vocab]
        return kf.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))

    optimizer = kf.optim.Adam(args.lr)
    opt_state = optimizer.init(params)

    @kf.jit(backend=args.backend)
    def train_step(params, opt_state, x, y):
        loss, grads = kf.value_and_grad(loss_fn)(params, x, y)
        grads, grad_norm = clip_by_global_norm(grads, 5.0)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    @kf.jit(backend=args.backend)
    def sample_step(params, char_ids, state):
        """One character in, the next character's logits and the new state out."""
        h, state = rnn.step(params["rnn"], embed.apply(params["embed"], char_ids), state)
        return head.apply(params["head"], h), state

    rng = np.random.default_rng(args.seed)
    window = np.arange(args.seq_len + 1)
    smooth = None
    for step in range(1, args.steps + 1):
        starts = rng.integers(0, len(data) - args.seq_len - 1, size=args.batch_size)
        chunk = data[starts[:, None] + window]
        params, opt_state, loss = train_step(params, opt_state, chunk[:, :-1], chunk[:, 1:])
        smooth = float(loss) if smooth is None else 0.95 * smooth + 0.05 * float(loss)
        if step % max(1, args.steps // 10) == 0 or step == 1:
            print(f"step {step:5d}  loss {float(loss):.3f}  (smoothed {smooth:.3f}, uniform would be "
                  f"{np.log(len(vocab)):.3f})")

    prime = "The "
    state = rnn.initial_state(1)
    out = prime
    for c in prime:
        logits, state = sample_step(params, np.array([char_to_id[c]], np.int32), state)
    for _ in range(args.sample):
        z = logits[0].astype(np.float64) / args.temperature
        p = np.exp(z - z.max())
        next_id = rng.choice(len(vocab), p=p / p.sum())
        out += vocab[next_id]
        logits, state = sample_step(params, np.array([next_id], np.int32), state)
    print(f"--- sample ({args.cell}, temperature {args.temperature}) ---")
    print(out)
    return {"loss": float(loss), "smoothed_loss": smooth, "sample": out}


if __name__ == "__main__":
    main()

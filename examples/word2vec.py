"""word2vec: skip-gram with negative sampling (Mikolov et al. 2013) on Python's documentation topics
(pydoc_data/topics.py), printing the nearest neighbours of a few words.

For a centre word c, a context word o within the window and k words n_i drawn from the unigram
distribution raised to 3/4:   loss = -log sigmoid(u_o . v_c) - sum_i log sigmoid(-u_{n_i} . v_c)
with v the input and u the output embeddings. One kf.jit step gathers the rows, computes the loss, and
applies the gradient (a scatter-add into the two tables) with Adam.

    python examples/word2vec.py               # 2000 steps
    python examples/word2vec.py --steps 20
"""
import argparse
import collections
import re

import numpy as np

import kernelflow as kf

QUERIES = ("function", "class", "list", "string", "exception", "loop", "integer", "module")


def load_words() -> list[str]:
    import pydoc_data.topics  # noqa: PLC0415
    text = "\n".join(pydoc_data.topics.topics.values()).lower()
    return re.findall(r"[a-z]+", text)


def build_vocabulary(words, size):
    counts = collections.Counter(words).most_common(size)
    vocab = [w for w, _ in counts]
    frequencies = np.array([c for _, c in counts], dtype=np.float64)
    return vocab, {w: i for i, w in enumerate(vocab)}, frequencies


def skipgram_pairs(ids: np.ndarray, window: int) -> np.ndarray:
    """All (centre, context) pairs with the context at most ``window`` positions away: [P, 2]."""
    pairs = []
    for offset in range(1, window + 1):
        pairs.append(np.stack([ids[:-offset], ids[offset:]], axis=1))
        pairs.append(np.stack([ids[offset:], ids[:-offset]], axis=1))
    return np.concatenate(pairs)


def log_sigmoid(x):
    # log(sigmoid(x)) = -log(1 + exp(-x)), written so it neither overflows nor loses the small values
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def loss_fn(params, centre, context, negatives):
    v = np.take(params["in"], centre, axis=0)                 # [B, D]
    u_pos = np.take(params["out"], context, axis=0)           # [B, D]
    u_neg = np.take(params["out"], negatives, axis=0)         # [B, K, D]
    positive = log_sigmoid(np.sum(v * u_pos, axis=-1))
    negative = np.sum(log_sigmoid(-np.sum(u_neg * v[:, None, :], axis=-1)), axis=-1)
    return -np.mean(positive + negative)


def nearest(embeddings, vocab, word_to_id, word, k=5):
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-8)
    similarity = unit @ unit[word_to_id[word]]
    best = [i for i in np.argsort(-similarity) if vocab[i] != word][:k]
    return [(vocab[i], float(similarity[i])) for i in best]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", help="numba (default) or interpret")
    args = parser.parse_args(argv)

    words = load_words()
    vocab, word_to_id, frequencies = build_vocabulary(words, args.vocab)
    ids = np.array([word_to_id[w] for w in words if w in word_to_id], dtype=np.int32)
    pairs = skipgram_pairs(ids, args.window)
    noise = frequencies ** 0.75
    noise /= noise.sum()
    print(f"{len(words)} words, vocabulary of {len(vocab)}, {len(pairs)} skip-gram pairs")

    rng = np.random.default_rng(args.seed)
    params = {"in": ((rng.random((len(vocab), args.dim)) - 0.5) / args.dim).astype(np.float32),
              "out": np.zeros((len(vocab), args.dim), np.float32)}
    optimizer = kf.optim.Adam(args.lr)
    opt_state = optimizer.init(params)

    @kf.jit(backend=args.backend)
    def train_step(params, opt_state, centre, context, negatives):
        loss, grads = kf.value_and_grad(loss_fn)(params, centre, context, negatives)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    for step in range(1, args.steps + 1):
        batch = pairs[rng.integers(0, len(pairs), size=args.batch_size)]
        negatives = rng.choice(len(vocab), size=(args.batch_size, args.negatives), p=noise).astype(np.int32)
        params, opt_state, loss = train_step(params, opt_state, batch[:, 0], batch[:, 1], negatives)
        if step % max(1, args.steps // 10) == 0 or step == 1:
            print(f"step {step:5d}  loss {float(loss):.4f}")

    neighbours = {}
    for word in QUERIES:
        if word in word_to_id:
            neighbours[word] = nearest(params["in"], vocab, word_to_id, word)
            print(f"{word:>10}: " + ", ".join(f"{w} ({s:.2f})" for w, s in neighbours[word]))
    return {"loss": float(loss), "neighbours": neighbours}


if __name__ == "__main__":
    main()

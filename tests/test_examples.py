"""Every example runs in its short mode (--steps 20) as a user would run it, and the examples' pieces are
checked against independent oracles (least squares, a plain complex-number Mandelbrot loop, a PNG decoder)."""
import importlib.util
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def load_example(name: str):
    module_name = f"kernelflow_example_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(EXAMPLES, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


# (script, extra arguments, text the output must contain). char_rnn's unrolled graph grows with --seq-len,
# and so does its compile time: the short runs use short sequences.
RUNS = [
    ("linear_regression", [], "fitted   a = "),
    ("logistic_regression", [], "test accuracy"),
    ("xor", [], "xor(1, 1) = "),
    ("mlp_fashion_mnist", [], "test accuracy"),
    ("lenet5_fashion_mnist", [], "parameters saved to lenet5.npz"),
    ("char_rnn", ["--cell", "lstm", "--seq-len", "8", "--sample", "40"], "--- sample (lstm"),
    ("char_rnn", ["--cell", "gru", "--seq-len", "8", "--sample", "40"], "--- sample (gru"),
    ("word2vec", [], "function: "),
    ("mandelbrot", [], "image saved to mandelbrot.png"),
]


@pytest.mark.parametrize("script, extra, expected", RUNS, ids=[f"{r[0]}-{' '.join(r[1][:2])}" for r in RUNS])
def test_example_runs_in_short_mode(script, extra, expected, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, f"{script}.py"), "--steps", "20", *extra],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert expected in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stderr
    if script == "lenet5_fashion_mnist":
        with np.load(tmp_path / "lenet5.npz") as saved:
            assert "dense_11/kernel" in saved.files
    if script == "mandelbrot":
        assert (tmp_path / "mandelbrot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_linear_regression_reaches_least_squares():
    result = load_example("linear_regression").main(["--steps", "200"])
    assert result["a"] == pytest.approx(result["a_lstsq"], abs=1e-3)
    assert result["b"] == pytest.approx(result["b_lstsq"], abs=1e-3)


def test_xor_is_solved():
    assert load_example("xor").main([])["accuracy"] == 1.0


def _mandelbrot_counts_by_hand(width, height, iterations):
    """Escape counts with Python complex numbers: the number of iterations each point stayed bounded."""
    xs = np.linspace(-2.2, 0.8, width, dtype=np.float32)
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    counts = np.zeros((height, width))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            c, z = complex(x, y), 0j
            for _ in range(iterations):
                if abs(z) > 2.0:
                    break
                z = z * z + c
                counts[i, j] += 1
    return counts


def test_mandelbrot_counts_and_png(tmp_path):
    mandelbrot = load_example("mandelbrot")
    path = str(tmp_path / "m.png")
    result = mandelbrot.main(["--steps", "6", "--iterations", "5", "--width", "60", "--height", "40", "--output",
                              path])
    want = _mandelbrot_counts_by_hand(60, 40, 30)
    # float32 against float64 arithmetic may move a point on the boundary by an iteration or so
    assert np.mean(result["counts"] != want) < 0.01
    assert np.max(np.abs(result["counts"] - want)) <= 3

    image = _decode_png(path)
    np.testing.assert_array_equal(image, mandelbrot.colorize(result["counts"], 30))


def _decode_png(path):
    """Read an 8-bit RGB PNG with filter type 0 (what write_png writes), checking every chunk's CRC; use
    Pillow as a second opinion when it is installed."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    image = rows[:, 1:].reshape(height, width, 3)
    try:
        from PIL import Image
    except ImportError:
        return image
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), image)
    return image


def test_word2vec_pieces():
    word2vec = load_example("word2vec")
    x = np.linspace(-30, 30, 101)
    np.testing.assert_allclose(word2vec.log_sigmoid(x), -np.logaddexp(0.0, -x), rtol=1e-12)
    ids = np.array([5, 6, 7, 8])
    pairs = {tuple(p) for p in word2vec.skipgram_pairs(ids, 2).tolist()}
    by_hand = {(int(ids[i]), int(ids[j])) for i in range(4) for j in range(4) if i != j and abs(i - j) <= 2}
    assert pairs == by_hand and len(word2vec.skipgram_pairs(ids, 2)) == len(by_hand)


def test_demo_trains_and_leaves_reloadable_dumps(tmp_path):
    """`make demo`'s script on the shipped digits, few epochs: it prints the IR, learns (well above the 10%
    of chance), and the training step it dumped re-parses and verifies."""
    env = dict(os.environ, KERNELFLOW_DUMP=str(tmp_path / "dumps"))
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "demo.py"), "--dataset", "digits",
                             "--epochs", "6"], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "graph predict(" in out and "dot_general" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.6
    import kernelflow as kf
    graph = kf.ir.verify(kf.ir.parse((tmp_path / "dumps" / "train_step.0.kf").read_text()))
    assert graph.op_counts()["conv2d"] == 2

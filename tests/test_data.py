"""kf.data: the IDX reader on files the test writes (also truncated and corrupt ones), the data set locator,
the shipped digits, and batching."""
import gzip
import os

import numpy as np
import pytest

from kernelflow import data
from kernelflow.data import DataFileError


def _idx_bytes_by_hand(array: np.ndarray, type_code: int, big_endian_dtype: str) -> bytes:
    """The IDX layout written out field by field (independent of kf.data.write_idx)."""
    header = b"\x00\x00" + bytes([type_code, array.ndim])
    for d in array.shape:
        header += int(d).to_bytes(4, "big")
    return header + array.astype(big_endian_dtype).tobytes()


@pytest.mark.parametrize("dtype, code, be", [(np.uint8, 0x08, "u1"), (np.int8, 0x09, "i1"), (np.int16, 0x0B, ">i2"),
                                             (np.int32, 0x0C, ">i4"), (np.float32, 0x0D, ">f4"),
                                             (np.float64, 0x0E, ">f8")])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_matches_hand_written_file(tmp_path, dtype, code, be, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    raw = _idx_bytes_by_hand(array, code, be)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, array)


def test_write_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data.write_idx(tmp_path / "x.gz", array)
    assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), array)
    assert (tmp_path / "x.gz").read_bytes() != _idx_bytes_by_hand(array, 0x08, "u1")
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == _idx_bytes_by_hand(array, 0x08, "u1")


def _check_error(path, *fragments):
    with pytest.raises(DataFileError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for f in fragments:
        assert f in message, message


def test_truncated_and_corrupt_files(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    good = _idx_bytes_by_hand(array, 0x08, "u1")
    cases = {
        "empty": (b"", ["too short"]),
        "short_header": (good[:10], ["truncated header"]),
        "short_data": (good[:-7], ["truncated", "needs 60 data bytes", "has 53"]),
        "extra_data": (good + b"\x00\x01", ["2 unexpected bytes"]),
        "bad_magic": (b"\x01\x02" + good[2:], ["not an IDX file"]),
        "bad_type": (b"\x00\x00\x07" + good[3:], ["unknown IDX element type 0x07"]),
    }
    for name, (raw, fragments) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        _check_error(path, *fragments)

    compressed = gzip.compress(good)
    truncated_gz = tmp_path / "truncated.gz"
    truncated_gz.write_bytes(compressed[: len(compressed) // 2])
    _check_error(truncated_gz, "gzip", "truncated")

    corrupt_gz = tmp_path / "corrupt.gz"
    corrupt_gz.write_bytes(compressed[:12] + bytes(b ^ 0xFF for b in compressed[12:30]) + compressed[30:])
    with pytest.raises(DataFileError) as info:
        data.read_idx(corrupt_gz)
    assert str(corrupt_gz) in str(info.value) and "gzip" in str(info.value)


def _write_fake_mnist(directory, n_train=7, n_test=3, compress=True):
    rng = np.random.default_rng(1)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        for stem, arr, code in ((f"{split}-images-idx3-ubyte", images, 0x08), (f"{split}-labels-idx1-ubyte", labels, 0x08)):
            raw = _idx_bytes_by_hand(arr, code, "u1")
            (directory / (stem + suffix)).write_bytes(gzip.compress(raw) if compress else raw)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_load_fashion_mnist_from_directory(tmp_path, compress):
    arrays = _write_fake_mnist(tmp_path / "fm", compress=compress)
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist(tmp_path / "fm")
    np.testing.assert_array_equal(x_train, arrays["train"][0])
    np.testing.assert_array_equal(y_train, arrays["train"][1])
    np.testing.assert_array_equal(x_test, arrays["t10k"][0])
    np.testing.assert_array_equal(y_test, arrays["t10k"][1])


def test_load_fashion_mnist_from_environment(tmp_path, monkeypatch):
    arrays = _write_fake_mnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("KERNELFLOW_DATA", str(tmp_path))
    (x_train, _), _ = data.load_fashion_mnist()
    np.testing.assert_array_equal(x_train, arrays["train"][0])


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist(tmp_path / "nothing-here")
    assert "nothing-here" in str(info.value) and "download=True" in str(info.value)


def test_corrupt_dataset_file_names_the_file(tmp_path):
    _write_fake_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFileError) as info:
        data.load_fashion_mnist(tmp_path)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_mismatched_images_and_labels(tmp_path):
    _write_fake_mnist(tmp_path)
    labels = np.zeros(5, dtype=np.uint8)  # 7 training images
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes_by_hand(labels, 0x08, "u1")))
    with pytest.raises(DataFileError, match="do not pair"):
        data.load_fashion_mnist(tmp_path)


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(ConnectionError, match="could not download"):
        data.load_fashion_mnist(tmp_path / "dl", download=True)
    assert not [p for p in (tmp_path / "dl").iterdir() if p.name.endswith(".part")]


def test_download_checks_the_checksum(tmp_path, monkeypatch):
    import io
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"not the real file"))
    with pytest.raises(DataFileError, match="checksum mismatch"):
        data.load_fashion_mnist(tmp_path / "dl", download=True)
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.skipif(not data.fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist_if_present():
    (x_train, y_train), (x_test, y_test) = data.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10


def test_shipped_digits():
    (x_train, y_train), (x_test, y_test) = data.load_digits()
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (8, 8)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 359
    assert x_train.max() == 16 and set(np.unique(y_train)) == set(range(10))
    # the train and test parts are disjoint and together hold every image once
    everything = np.concatenate([x_train, x_test]).reshape(1797, -1)
    assert len(np.unique(everything, axis=0)) == len(np.unique(np.load(data.digits.DIGITS_PATH)["images"].reshape(1797, -1), axis=0))
    (x_train2, _), _ = data.load_digits()
    np.testing.assert_array_equal(x_train, x_train2)
    licence = os.path.join(os.path.dirname(data.digits.DIGITS_PATH), "DIGITS_LICENSE.txt")
    text = open(licence).read()
    assert "Alpaydin" in text and "BSD" in text and "UCI" in text


def test_batches_cover_every_row_once():
    x = np.arange(23)[:, None] * np.ones((1, 3))
    y = np.arange(23)
    seen = []
    sizes = []
    for xb, yb in data.batches(x, y, batch_size=5, shuffle=True, seed=3):
        np.testing.assert_array_equal(xb[:, 0], yb)
        seen += yb.tolist()
        sizes.append(len(yb))
    assert sorted(seen) == list(range(23)) and sizes == [5, 5, 5, 5, 3]
    assert seen != list(range(23))
    again = [yb.tolist() for _, yb in data.batches(x, y, batch_size=5, seed=3)]
    assert sum(again, []) == seen
    ordered = [yb for _, yb in data.batches(x, y, batch_size=5, shuffle=False, drop_remainder=True)]
    assert np.concatenate(ordered).tolist() == list(range(20))
    assert data.num_batches(23, 5) == 5 and data.num_batches(23, 5, drop_remainder=True) == 4
    with pytest.raises(ValueError, match="different lengths"):
        next(data.batches(x, y[:3]))

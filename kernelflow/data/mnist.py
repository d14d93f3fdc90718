"""MNIST and Fashion-MNIST from IDX files on disk, downloaded only when asked.

Where the files are looked for, in order (the first directory holding all four files wins):
  1. the ``directory`` argument, when given (and only there);
  2. ``$KERNELFLOW_DATA/<name>`` and ``$KERNELFLOW_DATA``;
  3. Debian's packages: ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
  4. the download cache ``~/.cache/kernelflow/datasets/<name>``.
Each file may be gzip'd (``train-images-idx3-ubyte.gz``) or plain (``train-images-idx3-ubyte``).
With ``download=True`` missing files are fetched from the data set's canonical address into the given
directory (or ``$KERNELFLOW_DATA/<name>``, or the cache) and checked against the published MD5 sums.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request

from .idx import DataFileError, read_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS = {
    "fashion-mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "debian": "/usr/share/datasets/fashion-mnist",
        "md5": {  # of the .gz files, from the Fashion-MNIST README
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
    "mnist": {
        # yann.lecun.com no longer serves the files reliably; this is the mirror torchvision uses.
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "debian": None,
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
}


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _find_file(directory: str, stem: str) -> str | None:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def candidate_directories(name: str, directory=None) -> list[str]:
    """The directories searched for data set ``name``, in order."""
    if directory is not None:
        return [os.fspath(directory)]
    dirs = []
    env = os.environ.get("KERNELFLOW_DATA")
    if env:
        dirs += [os.path.join(env, name), env]
    if DATASETS[name]["debian"]:
        dirs.append(DATASETS[name]["debian"])
    dirs.append(os.path.join(os.path.expanduser("~"), ".cache", "kernelflow", "datasets", name))
    return dirs


def find_dataset(name: str, directory=None) -> dict[str, str] | None:
    """{file stem: path} from the first candidate directory that holds all four files, else None."""
    for d in candidate_directories(name, directory):
        paths = {stem: _find_file(d, stem) for stem in FILES}
        if all(paths.values()):
            return paths
    return None


def _md5(path: str) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_dataset(name: str, directory=None) -> str:
    """Fetch the four .gz files of ``name`` into a directory and verify their MD5 sums; return the directory."""
    spec = DATASETS[name]
    if directory is None:
        env = os.environ.get("KERNELFLOW_DATA")
        directory = os.path.join(env, name) if env else candidate_directories(name)[-1]
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    for filename, md5 in spec["md5"].items():
        target = os.path.join(directory, filename)
        if os.path.isfile(target) and _md5(target) == md5:
            continue
        url = spec["url"] + filename
        partial = target + ".part"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as e:
            if os.path.exists(partial):
                os.remove(partial)
            raise ConnectionError(f"could not download {url} ({e}); are you offline? Put the files in "
                                  f"{directory} yourself, or set KERNELFLOW_DATA") from None
        got = _md5(partial)
        if got != md5:
            os.remove(partial)
            raise DataFileError(f"{url}: checksum mismatch (md5 {got}, expected {md5}); the download is "
                                f"corrupt or the file changed upstream")
        os.replace(partial, target)  # atomic: a reader never sees half a file under the final name
    return directory


def _load(name: str, directory, download: bool):
    paths = find_dataset(name, directory)
    if paths is None and download:
        paths = find_dataset(name, download_dataset(name, directory))
    if paths is None:
        searched = "\n  ".join(candidate_directories(name, directory))
        hint = " or `apt-get install dataset-fashion-mnist`" if DATASETS[name]["debian"] else ""
        raise FileNotFoundError(
            f"{name}: the files {', '.join(FILES)} (optionally .gz) were not found in any of:\n  {searched}\n"
            f"Pass download=True to fetch them{hint}, or set KERNELFLOW_DATA to their directory.")
    arrays = {stem: read_idx(path) for stem, path in paths.items()}
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(f"{paths[f'{split}-images-idx3-ubyte']}: images of shape {list(images.shape)} do "
                                f"not pair with labels of shape {list(labels.shape)}")
    return ((arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]),
            (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]))


def load_fashion_mnist(directory=None, download: bool = False):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images [N, 28, 28] and uint8 labels [N] (as Keras)."""
    return _load("fashion-mnist", directory, download)


def load_mnist(directory=None, download: bool = False):
    """Like ``load_fashion_mnist``, for the original MNIST digits."""
    return _load("mnist", directory, download)


def fashion_mnist_available(directory=None) -> bool:
    return find_dataset("fashion-mnist", directory) is not None


__all__ = ["load_fashion_mnist", "load_mnist", "fashion_mnist_available", "FASHION_MNIST_CLASSES",
           "download_dataset", "find_dataset"]

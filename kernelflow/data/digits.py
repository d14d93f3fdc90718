"""The UCI ML hand-written digits (8x8), shipped with kernelflow so that examples and tests need no download.

1797 images of 8x8 pixel counts (0..16) with their digit labels, as distributed by scikit-learn
(BSD-3-Clause) from the UCI Machine Learning Repository's "Optical Recognition of Handwritten Digits"
data set by E. Alpaydin and C. Kaynak (Bogazici University, 1998). See DIGITS_LICENSE.txt beside this file
for the full attribution and licences.
"""
from __future__ import annotations

import os

import numpy as np

DIGITS_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images [N, 8, 8] (values 0..16) and uint8 labels.

    The split is a seeded random permutation (stratification is unnecessary: the classes are balanced),
    so it is the same on every machine. ``test_fraction=0`` puts everything in the training part.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    with np.load(DIGITS_PATH) as f:
        images, labels = f["images"], f["labels"]
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])

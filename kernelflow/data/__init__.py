"""Data sets and batching: IDX files (MNIST, Fashion-MNIST), the shipped 8x8 digits, shuffled mini-batches.

The 8x8 digits (``load_digits``) are the UCI ML hand-written digits data set by E. Alpaydin and C. Kaynak
(UCI Machine Learning Repository), in the copy distributed by scikit-learn under the BSD-3-Clause licence;
see ``DIGITS_LICENSE.txt`` in this directory.
"""
from .batching import batches, num_batches
from .digits import load_digits
from .idx import DataFileError, parse_idx, read_idx, write_idx
from .mnist import (FASHION_MNIST_CLASSES, download_dataset, fashion_mnist_available, find_dataset,
                    load_fashion_mnist, load_mnist)

__all__ = ["batches", "num_batches", "load_digits", "DataFileError", "parse_idx", "read_idx", "write_idx",
           "FASHION_MNIST_CLASSES", "download_dataset", "fashion_mnist_available", "find_dataset",
           "load_fashion_mnist", "load_mnist"]

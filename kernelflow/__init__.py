"""kernelflow: a deep-learning compiler for numpy-style Python."""
from .ir import DTypeError, ShapeError
from . import ir

__version__ = "0.1.0"

"""kernelflow: a deep-learning compiler for numpy-style Python.

    import kernelflow as kf

    @kf.jit
    def predict(params, x):
        h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
        return kf.softmax(h @ params["w2"] + params["b2"], axis=-1)

``kf.jit`` traces, ``kf.grad`` / ``kf.value_and_grad`` / ``kf.vjp`` differentiate, ``kf.*`` holds the
primitives and composite ops (softmax, layer_norm, conv2d, ...), ``kf.random`` stateless random numbers,
``kf.ir`` the graph IR. ``kf.nn``, ``kf.optim`` and ``kf.data`` are imported on first use.
"""
import importlib as _importlib

from .ir import DTypeError, ShapeError
from . import ir
from .frontend import random
from .frontend.api import Lowered, jit
from .frontend.errors import TracerArrayConversionError, TracerBoolError, UnexpectedTracerError
from .frontend.transforms import check_grads, grad, value_and_grad, vjp
from .frontend.ops import *  # noqa: F401,F403  (kf.exp, kf.where, kf.dot, kf.erf, kf.sigmoid, ...)
from .frontend.ops import primitive_call
from .frontend.composites import (avg_pool2d, conv2d, cross_entropy, dropout, gelu, layer_norm, log_softmax,
                                  logsumexp, max_pool2d, mean, one_hot, relu, softmax, var)
from .runtime.cuda import device_get, device_put  # imports no triton; a GPU is needed only to call them
from .frontend.pytree import flatten as tree_flatten, tree_map, unflatten as tree_unflatten

__version__ = "0.1.0"

_LAZY_SUBPACKAGES = ("nn", "optim", "data", "passes", "runtime", "codegen")


def __getattr__(name):
    # subpackages that import the frontend themselves are loaded on first use (no import cycle)
    if name in _LAZY_SUBPACKAGES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kernelflow' has no attribute {name!r}")

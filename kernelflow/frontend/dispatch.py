"""numpy's dispatch protocols for traced arrays: ``__array_ufunc__`` and ``__array_function__``.

``np.exp(x)``, ``np.sum(x, axis=1)``, ``x_numpy @ tracer`` ... reach these tables when any argument is a
Tracer; the implementations live in ``traced.py``. A numpy function that is not listed raises a
NotImplementedError naming it and the supported alternatives, never a silently wrong result.
"""
from __future__ import annotations

import numpy as np

from . import traced as T
from .tracer import where_str


def _reduce_method(uf, x, axis=0, dtype=None, out=None, keepdims=False, **kw):
    """``np.add.reduce`` and friends (note their default axis is 0, not None)."""
    if uf is np.add:
        return T.reduce_sum(x, axis, dtype=dtype, out=out, keepdims=keepdims, **kw)
    if uf is np.maximum:
        return T.reduce_max(x, axis, out=out, keepdims=keepdims, **kw)
    if uf is np.minimum:
        return T.reduce_min(x, axis, out=out, keepdims=keepdims, **kw)
    raise NotImplementedError(f"np.{uf.__name__}.reduce is not supported on traced arrays; supported: "
                              f"np.add.reduce, np.maximum.reduce, np.minimum.reduce{where_str()}")


def unsupported_ufunc(uf) -> NotImplementedError:
    names = sorted({f"np.{u.__name__}" for u in T.UFUNCS})
    return NotImplementedError(
        f"the numpy ufunc np.{uf.__name__} is not supported on traced arrays{where_str()}. Supported ufuncs: "
        f"{', '.join(names)}. kernelflow's own functions (kf.exp, kf.where, kf.sigmoid, kf.erf, ...) "
        "cover the primitives of the IR.")


def array_ufunc(uf, method, *inputs, **kwargs):
    out = kwargs.pop("out", None)
    if out is not None:
        raise NotImplementedError(f"np.{uf.__name__}(..., out=...) cannot be traced: traced arrays are "
                                  f"immutable; use the returned value{where_str()}")
    if method == "reduce":
        return _reduce_method(uf, *inputs, **kwargs)
    if method == "outer" and uf in (np.add, np.subtract, np.multiply, np.true_divide, np.maximum, np.minimum,
                                    np.equal, np.less, np.greater):
        a, b = inputs
        a_shape = T.shape_of(a)
        a = T.reshape(a, tuple(a_shape) + (1,) * T.ndim_of(b)) if isinstance(a, T.Tracer) else np.reshape(
            a, tuple(a_shape) + (1,) * T.ndim_of(b))
        return T.ufunc(uf, a, b)
    if method != "__call__":
        raise NotImplementedError(f"np.{uf.__name__}.{method} is not supported on traced arrays{where_str()}")
    dtype = kwargs.pop("dtype", None)
    for name, value in kwargs.items():
        if name == "where" and value is True:
            continue
        if name == "casting" and value == "same_kind":
            continue
        raise NotImplementedError(f"np.{uf.__name__}: the argument {name}= is not supported on traced arrays"
                                  f"{where_str()}")
    result = T.ufunc(uf, *inputs)
    return T.astype(result, dtype) if dtype is not None else result


def _shape(x):
    return T.shape_of(x)


def _result_type(*xs):
    return np.result_type(*[x.dtype if isinstance(x, T.Tracer) else x for x in xs])


FUNCTIONS = {
    np.sum: T.reduce_sum, np.mean: T.mean, np.max: T.reduce_max, np.amax: T.reduce_max,
    np.min: T.reduce_min, np.amin: T.reduce_min, np.argmax: T.argmax, np.argmin: T.argmin,
    np.var: T.var, np.std: T.std, np.any: T.any_, np.all: T.all_,
    np.dot: T.dot, np.matmul: T.matmul, np.tensordot: T.tensordot, np.einsum: T.einsum,
    np.outer: T.outer, np.inner: T.vdot_inner,
    np.reshape: lambda a, shape=None, order="C", **kw: T.reshape(a, kw.pop("newshape", shape), order=order),
    np.transpose: T.transpose, np.swapaxes: T.swapaxes, np.moveaxis: T.moveaxis,
    np.expand_dims: T.expand_dims, np.squeeze: T.squeeze, np.ravel: T.ravel,
    np.broadcast_to: T.broadcast_to, np.broadcast_arrays: T.broadcast_arrays,
    np.concatenate: T.concatenate, np.stack: T.stack, np.flip: T.flip,
    np.split: T.split, np.array_split: T.array_split, np.linalg.norm: T.norm,
    np.where: T.where, np.clip: T.clip,
    np.zeros_like: T.zeros_like, np.ones_like: T.ones_like, np.full_like: T.full_like,
    np.pad: T.pad, np.take: T.take, np.take_along_axis: T.take_along_axis,
    np.shape: _shape, np.ndim: T.ndim_of, np.size: lambda a, axis=None: (
        int(np.prod(T.shape_of(a))) if axis is None else T.shape_of(a)[axis]),
    np.result_type: _result_type,
    np.copy: lambda a, order="K", subok=False: a,
    np.astype: lambda x, dtype, copy=True, device=None: T.astype(x, dtype),
}


def array_function(func, types, args, kwargs):
    impl = FUNCTIONS.get(func)
    if impl is None:
        names = ", ".join(sorted({f"np.{f.__name__}" for f in FUNCTIONS}))
        raise NotImplementedError(
            f"np.{func.__name__} is not supported on traced arrays{where_str()}. Supported numpy functions: "
            f"{names}; plus the ufuncs (np.exp, np.maximum, ...) and kernelflow's own kf.* functions. "
            "Rewrite the expression with those (for example np.prod -> np.exp(np.sum(np.log(x))) for "
            "positive x), or compute it outside the traced function.")
    return impl(*args, **kwargs)

"""Function transformations built on the autodiff pass: grad, value_and_grad, vjp, check_grads.

Each traces the function to a graph whose inputs are the leaves of its array arguments, asks
``passes.autodiff.vjp_graph`` for the backward graph, and applies that graph: eagerly on numpy arrays
(the reference interpreter runs it once), or, when an argument or a captured value is traced (inside
``kf.jit`` or another transform), by inlining it into that trace. That is what makes ``jit(grad(f))`` and
``grad(grad(f))`` compose.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from ..ir import Graph
from .pytree import flatten, leaf_paths, unflatten
from .staging import call_graph, graph_name, interpret_runner, is_array_leaf, leaf_type, trace_graph
from .tracer import Tracer


def _vjp_graph(graph: Graph, wrt, seeds=None, consume: bool = False) -> Graph:
    from ..passes.autodiff import vjp_graph  # noqa: PLC0415 - passes are optional until autodiff exists
    return vjp_graph(graph, wrt, seeds, consume)


def _run(graph: Graph, inputs: Sequence, consume: bool = False) -> list:
    return call_graph(graph, inputs, interpret_runner(graph), consume)


def _param_names(f) -> list[str]:
    import inspect  # noqa: PLC0415
    try:
        return [p.name for p in inspect.signature(f).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


class _Flat:
    """The array leaves of a call's arguments, and how to put tracers back in their places.

    Every array leaf becomes a graph input. Non-array leaves of arguments that are not differentiated (a
    string, a config object) stay as they are, baked into the trace.
    """

    def __init__(self, f, args, kwargs, diff_argnums: Sequence[int], what: str):
        self.args, self.kwargs = args, kwargs
        names = _param_names(f)
        self.fname = graph_name(f)
        self.inputs: list = []       # the leaf values that become graph inputs
        self.types: list = []
        self.slots: list = []        # per argument: (treedef, [input index or ('static', value)])
        self.diff_inputs: dict[int, list[int]] = {}  # argnum -> its input indices
        for i, a in enumerate(list(args) + [kwargs]):
            leaves, tree = flatten(a)
            paths = None
            slot = []
            is_diff = i in diff_argnums
            for j, leaf in enumerate(leaves):
                if not is_array_leaf(leaf):
                    if is_diff:
                        paths = paths or leaf_paths(a, names[i] if i < len(names) else f"args[{i}]")
                        raise TypeError(f"{what}: argument {paths[j]} is a {type(leaf).__name__}; a "
                                        "differentiated argument holds float arrays only")
                    slot.append(("static", leaf))
                    continue
                k = len(self.inputs)
                self.inputs.append(leaf)
                path = (leaf_paths(a, names[i] if i < len(names) else f"args[{i}]")[j]
                        if i < len(args) else leaf_paths(a, "kwargs")[j])
                t = leaf_type(leaf, path, what)
                if is_diff and not t.dtype.is_float:
                    raise TypeError(f"{what}: argument {path} has dtype {t.dtype.numpy_name}; gradients are "
                                    "defined only for float inputs. Pass integer and boolean arrays as "
                                    "arguments that are not differentiated (argnums=...).")
                self.types.append(t)
                slot.append(k)
                if is_diff:
                    self.diff_inputs.setdefault(i, []).append(k)
            self.slots.append((tree, slot))

    def rebuild(self, tracers):
        """The call's (args, kwargs) with tracers in place of the array leaves."""
        trees = [unflatten(tree, [tracers[s] if isinstance(s, int) else s[1] for s in slot])
                 for tree, slot in self.slots]
        return trees[:-1], trees[-1]


def _argnums_tuple(argnums, nargs: int, what: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    out = []
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(f"{what}: argnums {argnums} out of range for {nargs} positional arguments")
        out.append(a % nargs)
    return tuple(out)


def _check_scalar_loss(out, has_aux: bool, what: str):
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{what} with has_aux=True: the function must return a pair (loss, aux), got "
                            f"{type(out).__name__}")
        out = out[0]
    shape = out.shape if isinstance(out, (Tracer, np.ndarray, np.generic)) else np.shape(out)
    dtype = out.dtype if isinstance(out, (Tracer, np.ndarray, np.generic)) else np.asarray(out).dtype
    if not isinstance(out, (Tracer, np.ndarray, np.generic, float, int)) or tuple(shape) != ():
        desc = f"an array of shape {list(shape)}" if isinstance(out, (Tracer, np.ndarray)) else type(out).__name__
        raise TypeError(f"{what}: the function must return a scalar (shape ()) float loss, got {desc}; reduce "
                        f"it (e.g. .sum() or .mean()), or use kf.vjp for non-scalar outputs")
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{what}: the function must return a float loss, got dtype {dtype}")


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """``f``'s value and its gradient w.r.t. the arguments ``argnums`` (same pytree structure as them).

    ``f`` returns a scalar float (or ``(loss, aux)`` with ``has_aux``). Works eagerly on numpy arrays and
    inside ``kf.jit`` and other transforms.
    """
    what = f"kf.grad({graph_name(f)})"

    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args), what)
        flat = _Flat(f, args, kwargs, nums, what)

        def fn_of_leaves(tracers):
            a, kw = flat.rebuild(tracers)
            out = f(*a, **kw)
            _check_scalar_loss(out, has_aux, what)
            return out

        traced = trace_graph(fn_of_leaves, flat.types, flat.fname)
        g = traced.graph
        wrt = [k for i in nums for k in flat.diff_inputs.get(i, [])]
        n_out = len(g.outputs)
        backward = _vjp_graph(g, wrt, [1.0] + [None] * (n_out - 1), consume=True)  # g: traced for this
        outs = _run(backward, list(flat.inputs) + list(traced.captured), consume=True)  # used once
        value_leaves, grad_leaves = outs[:n_out], outs[n_out:]
        value = unflatten(traced.out_tree, value_leaves)
        it = iter(grad_leaves)
        grads = []
        for i in nums:
            tree, slot = flat.slots[i]
            grads.append(unflatten(tree, [next(it) for _ in slot]))
        return value, (grads[0] if isinstance(argnums, int) else tuple(grads))

    return value_and_grad_f


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable:
    """The gradient of scalar-valued ``f`` w.r.t. argument(s) ``argnums``; with ``has_aux`` returns
    ``(grads, aux)``."""
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads

    return grad_f


def vjp(f: Callable, *primals, has_aux: bool = False):
    """``(out, vjp_fn)``: ``vjp_fn(cotangent)`` returns one gradient per primal, as a tuple.

    With ``has_aux``, ``f`` returns ``(out, aux)`` and the result is ``(out, vjp_fn, aux)``.
    """
    what = f"kf.vjp({graph_name(f)})"
    flat = _Flat(f, primals, {}, range(len(primals)), what)

    def fn_of_leaves(tracers):
        a, _ = flat.rebuild(tracers)
        out = f(*a)
        if has_aux and not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{what} with has_aux=True: the function must return a pair (out, aux)")
        return out

    traced = trace_graph(fn_of_leaves, flat.types, flat.fname)
    g = traced.graph
    if has_aux:
        out_tree, aux_tree = traced.out_tree.children
    else:
        out_tree, aux_tree = traced.out_tree, None
    n_out = out_tree.num_leaves
    inputs = list(flat.inputs) + list(traced.captured)
    results = _run(g, inputs)
    out = unflatten(out_tree, results[:n_out])
    aux = unflatten(aux_tree, results[n_out:]) if has_aux else None
    out_types = [v.type for v in g.outputs[:n_out]]
    seeds = ["input"] * n_out + [None] * (len(g.outputs) - n_out)
    backward_graph = None

    def vjp_fn(cotangent):
        nonlocal backward_graph
        ct_leaves, ct_tree = flatten(cotangent)
        if ct_tree != out_tree:
            raise TypeError(f"{what}: the cotangent's structure {ct_tree} differs from the output's {out_tree}")
        cts = []
        for i, (c, t) in enumerate(zip(ct_leaves, out_types)):
            shape = c.shape if isinstance(c, Tracer) else np.shape(c)
            if tuple(shape) != t.shape:
                raise ValueError(f"{what}: cotangent leaf {i} has shape {list(shape)}, the output has {t}")
            cts.append(c if isinstance(c, Tracer) else np.asarray(c, t.dtype.np_dtype))
        if backward_graph is None:
            backward_graph = _vjp_graph(g, list(range(len(flat.inputs))), seeds)
        outs = _run(backward_graph, inputs + cts)
        grads = iter(outs[len(g.outputs):])
        result = []
        for tree, slot in flat.slots[:-1]:
            result.append(unflatten(tree, [next(grads) for _ in slot]))
        return tuple(result)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# -- numerical gradient checking --------------------------------------------------------------------------
def _as_float64(tree):
    leaves, td = flatten(tree)
    out = []
    for x in leaves:
        a = np.asarray(x)
        out.append(a.astype(np.float64) if a.dtype.kind == "f" else x)
    return unflatten(td, out)


def check_grads(f: Callable, args: Sequence, order: int = 1, eps: float = 1e-6, rtol: float = 1e-5,
                argnums: Sequence[int] | None = None, seed: int = 0) -> float:
    """Compare ``kf.grad(f)`` with central differences in float64; returns the largest error.

    ``argnums`` defaults to every argument whose leaves are all float arrays.
    The error of an element is ``|analytic - numeric| / max(1, |numeric|)``. If it exceeds ``rtol`` an
    AssertionError reports the worst element: which argument, its index, both values. ``order=2`` checks
    second derivatives: the gradient of ``x -> <grad f(x), v>`` for a fixed random direction ``v``.
    """
    args = tuple(_as_float64(a) for a in args)
    if argnums is None:  # every argument made only of float arrays (labels and flags are left alone)
        nums = tuple(i for i, a in enumerate(args) if flatten(a)[0] and all(
            np.asarray(x).dtype.kind == "f" for x in flatten(a)[0]))
    else:
        nums = tuple(argnums)
    if order == 2:
        rng = np.random.default_rng(seed)
        directions = [_as_float64(unflatten(flatten(args[i])[1],
                                            [rng.standard_normal(np.shape(x)) for x in flatten(args[i])[0]]))
                      for i in nums]
        first = grad(f, argnums=nums)

        def directional(*a):
            gs = first(*a)
            total = 0.0
            for gtree, vtree in zip(gs, directions):
                for gl, vl in zip(flatten(gtree)[0], flatten(vtree)[0]):
                    total = total + (gl * vl).sum()
            return total

        return check_grads(directional, args, order=1, eps=eps, rtol=rtol, argnums=nums)
    if order != 1:
        raise ValueError(f"check_grads: order must be 1 or 2, got {order}")

    def scalar(*a) -> float:
        return float(np.asarray(f(*a)))

    analytic = grad(f, argnums=nums)(*args)
    names = _param_names(f)
    worst = (0.0, "", 0.0, 0.0)
    for gtree, i in zip(analytic, nums):
        leaves, td = flatten(args[i])
        paths = leaf_paths(args[i], names[i] if i < len(names) else f"args[{i}]")
        gleaves = flatten(gtree)[0]
        for j, (x, gl) in enumerate(zip(leaves, gleaves)):
            x = np.asarray(x, np.float64)
            gl = np.asarray(gl, np.float64)
            for idx in np.ndindex(*x.shape):
                def at(delta, idx=idx, j=j, x=x):
                    xp = x.copy()
                    xp[idx] += delta
                    new_leaves = list(leaves)
                    new_leaves[j] = xp
                    new_args = list(args)
                    new_args[i] = unflatten(td, new_leaves)
                    return scalar(*new_args)
                numeric = (at(eps) - at(-eps)) / (2 * eps)
                err = abs(gl[idx] - numeric) / max(1.0, abs(numeric))
                if not err <= worst[0] and not (np.isnan(err) and np.isnan(worst[0])):
                    where = paths[j] + (str(list(idx)) if idx else "")
                    worst = (err, where, float(gl[idx]), numeric)
    err, where, a, n = worst
    if not err <= rtol:
        raise AssertionError(f"check_grads(order={order}): gradient of {graph_name(f)} w.r.t. {where}: "
                             f"analytic {a!r}, numeric {n!r} (central differences, eps={eps}); error {err:.3g} "
                             f"> rtol {rtol}")
    return float(err)

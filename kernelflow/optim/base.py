"""The optimizer protocol: pure functions over pytrees, written with numpy-style ops so they trace.

    opt = kf.optim.Adam(1e-3)
    state = opt.init(params)                          # a pytree of numpy arrays (step count included)
    params, state = opt.update(grads, state, params)  # new params and state; nothing is mutated

Because ``update`` uses only arithmetic, ``np.sqrt`` and ``np.maximum`` on its arguments, it runs eagerly
on numpy arrays and also traces inside ``kf.jit``, so forward, backward and update compile to one graph.
Hyper-parameters are Python floats: they become constants of the compiled graph.

A subclass names its per-parameter slots (``SLOTS``), how each starts (``init_slot``), and the update of
one parameter (``update_leaf``); this base class maps that over the pytree.
"""
from __future__ import annotations

import numpy as np

from ..frontend.pytree import flatten, unflatten


def scalar_dtype(params) -> np.dtype:
    """The dtype of the optimizer's scalar state: the widest float dtype among the parameters."""
    leaves, _ = flatten(params)
    float_dtypes = [np.asarray(x).dtype for x in leaves if np.issubdtype(np.asarray(x).dtype, np.floating)]
    return np.result_type(*float_dtypes) if float_dtypes else np.dtype(np.float32)


class Optimizer:
    SLOTS: tuple[str, ...] = ()

    def init_slot(self, name: str, param: np.ndarray) -> np.ndarray:
        return np.zeros_like(param)

    def update_leaf(self, grad, param, slots: dict, step):
        """One parameter's update at ``step`` (1 on the first call): returns ``(new_param, new_slots)``."""
        raise NotImplementedError

    def init(self, params) -> dict:
        leaves, treedef = flatten(params)
        leaves = [np.asarray(p) for p in leaves]
        state = {"step": np.zeros((), dtype=scalar_dtype(params))}
        for name in self.SLOTS:
            state[name] = unflatten(treedef, [self.init_slot(name, p) for p in leaves])
        return state

    def update(self, grads, state: dict, params):
        param_leaves, treedef = flatten(params)
        grad_leaves, grad_treedef = flatten(grads)
        if grad_treedef != treedef:
            raise ValueError(f"{type(self).__name__}.update: the gradients' structure {grad_treedef} differs "
                             f"from the parameters' {treedef}")
        slot_leaves = {}
        for name in self.SLOTS:
            slot_leaves[name], slot_treedef = flatten(state[name])
            if slot_treedef != treedef:
                raise ValueError(f"{type(self).__name__}.update: state[{name!r}] has structure {slot_treedef}, "
                                 f"the parameters {treedef}; was the state made by init() for these parameters?")
        step = state["step"] + 1
        new_params, new_slots = [], {name: [] for name in self.SLOTS}
        for i, (g, p) in enumerate(zip(grad_leaves, param_leaves)):
            p, slots = self.update_leaf(g, p, {name: slot_leaves[name][i] for name in self.SLOTS}, step)
            new_params.append(p)
            for name in self.SLOTS:
                new_slots[name].append(slots[name])
        new_state = {"step": step}
        for name in self.SLOTS:
            new_state[name] = unflatten(treedef, new_slots[name])
        return unflatten(treedef, new_params), new_state

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "SLOTS")
        return f"{type(self).__name__}({fields})"


def check_hyper(name: str, value: float, low: float = 0.0, high: float | None = None, low_open=False):
    """Reject hyper-parameters outside their range, as torch.optim does."""
    bad = value < low or (low_open and value == low) or (high is not None and value >= high)
    if bad:
        bound = f"({low}, " if low_open else f"[{low}, "
        bound += f"{high})" if high is not None else "inf)"
        raise ValueError(f"invalid {name}: {value} (must be in {bound})")

"""How each framework receives the data, runs once, and hands its result back as numpy arrays.

Two shapes of workload share these builders:
- a *function* `fn(*arrays) -> arrays` (W1-W4, W8), written once per framework;
- a *training step*: a loss function `loss(params, *args)` per framework (numpy eager instead has a
  hand-written step with its own backward pass); the step is loss + gradient + SGD update
  `p - lr * grad`, and returns `(loss, new_params)`. It is pure: every timed call starts from the same
  parameters, so every call does the same work.

Every result is flattened in one canonical order (dict keys sorted, as JAX does), so the outputs of all
frameworks line up with the numpy reference.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .harness import Prepared, Unavailable, _reason

SETTINGS = {"threads": 2, "backend": "numba"}


def configure(threads: int, backend: str) -> None:
    SETTINGS["threads"] = threads
    SETTINGS["backend"] = backend


def flatten(tree: Any) -> list[np.ndarray]:
    """Leaves of a dict/list/tuple tree as numpy arrays, dict keys in sorted order."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in flatten(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in flatten(item)]
    if hasattr(tree, "detach"):            # a torch tensor
        return [tree.detach().cpu().numpy()]
    return [np.asarray(tree)]              # numpy, jax and kernelflow arrays, scalars


def train_view(arrays: list[np.ndarray], data: dict) -> list[tuple[str, np.ndarray]]:
    """What a training step is checked on: the loss, and each parameter's update `new - old` (float64), so
    that the gradients themselves are compared rather than parameters that barely moved. The third element of
    an entry is an extra absolute slack per element (see `bench.harness.compare`)."""
    names = sorted(data["params"])
    old = [data["params"][name] for name in names]
    if len(arrays) != 1 + len(names):
        return [("loss", arrays[0])] + [(f"out{i}", a) for i, a in enumerate(arrays[1:], 1)]
    view = [("loss", arrays[0])]
    for name, new, before in zip(names, arrays[1:], old):
        delta = np.asarray(new, np.float64) - before.astype(np.float64)
        # Each framework rounds `p - lr*grad` to float32 on its own: two correct updates may differ by one
        # float32 ulp of the parameter, whatever the gradient; that much is allowed on top of the tolerance.
        rounding = np.spacing(np.abs(before)).astype(np.float64)
        view.append((f"d_{name}", delta, rounding))
    return view


# ---------------------------------------------------------------------------------------------------------
# Imports that say why they failed


def import_torch():
    try:
        import torch
    except ImportError as exc:
        raise Unavailable(f"torch is not installed ({_reason(exc)})") from None
    torch.set_num_threads(SETTINGS["threads"])
    return torch


def import_jax():
    try:
        import jax
    except ImportError as exc:
        raise Unavailable(f"jax is not installed: pip install jax jaxlib ({_reason(exc)})") from None
    return jax


def import_kernelflow(*names: str):
    """kernelflow, checked to have `kf.<name>` for every name the workload uses."""
    try:
        import kernelflow as kf
    except Exception as exc:  # noqa: BLE001 - any import failure makes the row unavailable, with its reason
        raise Unavailable(f"import kernelflow failed: {_reason(exc)}") from None
    missing = [name for name in ("jit",) + names if not hasattr(kf, name)]
    if missing:
        raise Unavailable("kernelflow has no " + ", ".join(f"kf.{name}" for name in missing) + " yet")
    if SETTINGS["backend"] != "interpret":
        # kf.jit(backend="numba") quietly falls back to the reference interpreter while the compiler is missing;
        # timing that as "kernelflow" would be a wrong benchmark.
        try:
            from kernelflow.runtime import compile_graph  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"backend {SETTINGS['backend']!r} is not there yet ({_reason(exc)}); kf.jit would "
                              "fall back to the interpreter (time that with --backend interpret)") from None
    return kf


def _torch_array(torch, a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a))


def _jax_array(jax, a: np.ndarray):
    # JAX runs with 32-bit integers unless x64 is enabled; labels are converted explicitly.
    if a.dtype.kind in "iu":
        a = a.astype(np.int32)
    return jax.device_put(a)


# ---------------------------------------------------------------------------------------------------------
# Functions


def numpy_function(fn: Callable, args: list[np.ndarray]) -> Prepared:
    return Prepared(lambda: fn(*args), flatten)


def torch_function(fn: Callable, args: list[np.ndarray], compiled: bool = False) -> Prepared:
    torch = import_torch()
    targs = [_torch_array(torch, a) for a in args]
    run = torch.compile(fn, dynamic=False) if compiled else fn

    def call():
        with torch.no_grad():
            return run(*targs)
    return Prepared(call, flatten)


def jax_function(fn: Callable, args: list[np.ndarray]) -> Prepared:
    jax = import_jax()
    jargs = [_jax_array(jax, a) for a in args]
    run = jax.jit(fn)
    return Prepared(lambda: jax.block_until_ready(run(*jargs)), flatten)


def kernelflow_function(fn: Callable, args: list[np.ndarray], uses: tuple[str, ...] = ()) -> Prepared:
    kf = import_kernelflow(*uses)
    run = kf.jit(fn, backend=SETTINGS["backend"])
    return Prepared(lambda: run(*args), flatten)


# ---------------------------------------------------------------------------------------------------------
# Training steps


def numpy_train_step(step: Callable, data: dict) -> Prepared:
    params, args, lr = data["params"], data["args"], data["lr"]
    return Prepared(lambda: step(params, *args, lr=lr), flatten)


def torch_train_step(loss_fn: Callable, data: dict, compiled: bool = False) -> Prepared:
    torch = import_torch()
    names = sorted(data["params"])
    params = {name: _torch_array(torch, data["params"][name]).clone().requires_grad_() for name in names}
    args = [_torch_array(torch, a) for a in data["args"]]
    lr = data["lr"]
    # torch.compile compiles the forward and (through AOTAutograd) the backward; the SGD update is eager.
    run = torch.compile(loss_fn, dynamic=False) if compiled else loss_fn

    def call():
        loss = run(params, *args)
        grads = torch.autograd.grad(loss, [params[name] for name in names])
        with torch.no_grad():
            new = {name: params[name] - lr * grad for name, grad in zip(names, grads)}
        return loss.detach(), new
    return Prepared(call, flatten)


def jax_train_step(loss_fn: Callable, data: dict) -> Prepared:
    jax = import_jax()
    params = {name: _jax_array(jax, p) for name, p in data["params"].items()}
    args = [_jax_array(jax, a) for a in data["args"]]
    lr = data["lr"]

    def step(params, *args):
        loss, grads = jax.value_and_grad(loss_fn)(params, *args)
        return loss, {name: params[name] - lr * grads[name] for name in params}
    run = jax.jit(step)
    return Prepared(lambda: jax.block_until_ready(run(params, *args)), flatten)


def kernelflow_train_step(loss_fn: Callable, data: dict, uses: tuple[str, ...] = ()) -> Prepared:
    kf = import_kernelflow("value_and_grad", *uses)
    params, args, lr = data["params"], data["args"], data["lr"]

    def step(params, *args):
        loss, grads = kf.value_and_grad(loss_fn)(params, *args)
        return loss, {name: params[name] - lr * grads[name] for name in params}
    run = kf.jit(step, backend=SETTINGS["backend"])
    return Prepared(lambda: run(params, *args), flatten)


def train_step_builders(module, uses: tuple[str, ...] = ()) -> dict:
    """The five implementations of a training-step workload from its module's ``step_numpy`` (hand-written
    forward and backward), ``loss_torch``, ``loss_jax`` and ``loss_numpy_style`` (what a kernelflow user
    writes); ``uses`` names the kernelflow functions the model needs (reported when one is missing)."""
    return {
        "numpy": lambda d: numpy_train_step(module.step_numpy, d),
        "torch": lambda d: torch_train_step(module.loss_torch, d),
        "torch.compile": lambda d: torch_train_step(module.loss_torch, d, compiled=True),
        "jax.jit": lambda d: jax_train_step(module.loss_jax, d),
        "kernelflow": lambda d: kernelflow_train_step(module.loss_numpy_style, d, uses=uses),
    }

"""W8: per-call overhead of a cached compiled function on tiny inputs (microseconds per call).

`x * y + 1` on two float32 vectors of 16 elements: the arithmetic is nothing, so what is timed is argument
checking, cache lookup, output allocation and the return. Each framework gets its inputs in its native array
type, converted once beforehand (torch tensors, JAX device arrays, numpy arrays for numpy and kernelflow).
"""
from __future__ import annotations

import numpy as np

from ..harness import Tolerance, Workload
from ..peers import jax_function, kernelflow_function, numpy_function, torch_function


def make_data(quick: bool) -> dict:
    rng = np.random.default_rng(8)
    return {"args": [rng.standard_normal(16, dtype=np.float32), rng.standard_normal(16, dtype=np.float32)]}


def tiny(x, y):
    return x * y + 1


W8 = Workload(
    key="W8", title="call overhead",
    description="x*y + 1 on two float32 vectors of 16 elements, a cached compiled function (time per call)",
    make_data=make_data,
    builders={
        "numpy": lambda d: numpy_function(tiny, d["args"]),
        "torch": lambda d: torch_function(tiny, d["args"]),
        "torch.compile": lambda d: torch_function(tiny, d["args"], compiled=True),
        "jax.jit": lambda d: jax_function(tiny, d["args"]),
        "kernelflow": lambda d: kernelflow_function(tiny, d["args"]),
    },
    tolerance=Tolerance(rtol=1e-6, atol_rel=1e-7),
    calls_per_run=lambda quick: 20 if quick else 2000,
    unit="us",
    goal=("jax.jit", 1.0),
)

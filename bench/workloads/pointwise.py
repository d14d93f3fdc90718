"""W1 and W2: long pointwise chains over 2^24 float32 elements (64 MiB in, 64 MiB out).

W1 `tanh(x*0.5+1)*sigmoid(x) - x*x` is compute-bound (two transcendentals per element); W2
`(x*0.5+1)*x - 3*x*x + 2` is pure arithmetic, so its floor is memory bandwidth. Each framework's version is
written the way a user of that framework writes it; numpy eager allocates a temporary per operation.
"""
from __future__ import annotations

import numpy as np

from ..harness import Tolerance, Workload
from ..peers import jax_function, kernelflow_function, numpy_function, torch_function


def make_data(quick: bool) -> dict:
    n = 2**12 if quick else 2**24
    x = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    return {"args": [x]}


def bytes_moved(data: dict) -> int:
    return 2 * data["args"][0].nbytes


# --- W1 ---------------------------------------------------------------------------------------------------

def w1_numpy(x):
    return np.tanh(x * 0.5 + 1) * (1 / (1 + np.exp(-x))) - x * x


def w1_torch(x):
    import torch
    return torch.tanh(x * 0.5 + 1) * torch.sigmoid(x) - x * x


def w1_jax(x):
    import jax
    import jax.numpy as jnp
    return jnp.tanh(x * 0.5 + 1) * jax.nn.sigmoid(x) - x * x


def w1_kernelflow(x):
    import kernelflow as kf
    return np.tanh(x * 0.5 + 1) * kf.sigmoid(x) - x * x


# --- W2: the same expression works on numpy, torch, jax and kernelflow values ------------------------------

def w2(x):
    return (x * 0.5 + 1) * x - 3 * x * x + 2


# Transcendental implementations differ by a few ulp between libraries (and kernelflow documents its own
# approximations); an error in the formula is off by O(1).
POINTWISE_TOLERANCE = Tolerance(rtol=1e-5, atol_rel=1e-6)

W1 = Workload(
    key="W1", title="transcendental chain",
    description="tanh(x*0.5+1)*sigmoid(x) - x*x, float32, 2^24 elements",
    make_data=make_data,
    builders={
        "numpy": lambda d: numpy_function(w1_numpy, d["args"]),
        "torch": lambda d: torch_function(w1_torch, d["args"]),
        "torch.compile": lambda d: torch_function(w1_torch, d["args"], compiled=True),
        "jax.jit": lambda d: jax_function(w1_jax, d["args"]),
        "kernelflow": lambda d: kernelflow_function(w1_kernelflow, d["args"], uses=("sigmoid",)),
    },
    tolerance=POINTWISE_TOLERANCE,
    bytes_moved=bytes_moved,
    goal=("jax.jit", 0.5),
)

W2 = Workload(
    key="W2", title="arithmetic chain",
    description="(x*0.5+1)*x - 3*x*x + 2, float32, 2^24 elements",
    make_data=make_data,
    builders={
        "numpy": lambda d: numpy_function(w2, d["args"]),
        "torch": lambda d: torch_function(w2, d["args"]),
        "torch.compile": lambda d: torch_function(w2, d["args"], compiled=True),
        "jax.jit": lambda d: jax_function(w2, d["args"]),
        "kernelflow": lambda d: kernelflow_function(w2, d["args"]),
    },
    tolerance=POINTWISE_TOLERANCE,
    bytes_moved=bytes_moved,
    goal=("best peer", 0.5),
)

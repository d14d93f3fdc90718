"""The Triton backend's code generator: fused kernels printed as readable ``@triton.jit`` source.

* ``printer``  pointwise and row kernels from kernel descriptions (kernelflow/codegen/kernel.py)
* ``matmul``   dot_general as a tiled ``tl.dot`` matmul with a fused pointwise epilogue
* ``special``  random_bits (threefry2x32), gather, scatter_add
* ``device``   the ``kf_*`` device helpers the kernels call, and libdevice
* ``program``  a whole graph: ``lower_graph(graph) -> TritonProgram``
* ``aot``      ahead-of-time compilation of a program's kernels for a GPU target (``sm_90``)

Running a program (device buffers, the interpreter on the CPU, autotuning) is kernelflow/runtime/gpu.py.
"""

import os


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` in the environment).

    Defined here, without importing triton, so the runtime can ask cheaply."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() not in ("", "0", "false", "off", "no")

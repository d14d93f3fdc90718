"""The runtime: compile a Graph into an Executable (fused numba kernels + a generated driver), with a
persistent compilation cache. ``compile_graph(graph, backend="numba")`` is the entry point."""
import os

from ..codegen.numba.blas import LIBRARY

# numba's OpenMP threading layer spins its threads between parallel regions by default; on a loaded
# 2-core machine a spinning thread that gets descheduled makes the next barrier wait a full time
# slice (measured: 8 ms instead of 0.3 ms for a 300K-element kernel). Passive waiting unless the user
# chose otherwise; it must be set before the first parallel kernel starts the OpenMP runtime. Not on
# MKL (KERNELFLOW_BLAS=mkl): its GEMMs run on the same libgomp threads, and waking sleeping threads cost
# each GEMM ~100 us (W7 39-42 ms passive, 26-27 spinning). See codegen/numba/mkl.py.
if LIBRARY != "mkl":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .executable import BACKENDS, Executable, InterpretedExecutable, KernelInfo, compile_graph

__all__ = ["BACKENDS", "Executable", "InterpretedExecutable", "KernelInfo", "compile_graph"]

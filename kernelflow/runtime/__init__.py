"""The runtime: compile a Graph into an Executable (fused numba kernels + a generated driver), with a
persistent compilation cache. ``compile_graph(graph, backend="numba")`` is the entry point."""
import os

# numba's OpenMP threading layer spins its threads between parallel regions by default; on a loaded
# 2-core machine a spinning thread that gets descheduled makes the next barrier wait a full time
# slice (measured: 8 ms instead of 0.3 ms for a 300K-element kernel). Passive waiting unless the user
# chose otherwise; it must be set before the first parallel kernel starts the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .executable import BACKENDS, Executable, InterpretedExecutable, KernelInfo, compile_graph

__all__ = ["BACKENDS", "Executable", "InterpretedExecutable", "KernelInfo", "compile_graph"]

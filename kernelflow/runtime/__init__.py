"""The runtime: compile a Graph into an Executable (fused numba kernels + a generated driver), with a
persistent compilation cache. ``compile_graph(graph, backend="numba")`` is the entry point."""
from .executable import BACKENDS, Executable, InterpretedExecutable, KernelInfo, compile_graph

__all__ = ["BACKENDS", "Executable", "InterpretedExecutable", "KernelInfo", "compile_graph"]

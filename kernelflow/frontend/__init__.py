"""The user-facing frontend: tracing numpy-style Python into graphs, jit, transforms and kf's own ops.

Modules: ``tracer`` (Trace, Tracer), ``traced`` (numpy semantics on tracers), ``dispatch`` (numpy's
protocols), ``staging`` (trace a function / apply a graph), ``api`` (kf.jit), ``transforms`` (grad, vjp),
``ops`` and ``composites`` (kf's own functions), ``random``, ``pytree``.
"""
from .errors import TracerArrayConversionError, TracerBoolError, UnexpectedTracerError
from .tracer import Trace, Tracer
from .api import Lowered, jit

"""Errors the frontend raises for things that cannot be traced."""
from __future__ import annotations


class TracerBoolError(TypeError):
    """Python control flow (``if``, ``while``, ``int(x)``, ...) asked for the concrete value of a traced array."""


class TracerArrayConversionError(TypeError):
    """A traced array was converted to a numpy array (``np.asarray``, or a numpy function without kernelflow
    support)."""


class UnexpectedTracerError(RuntimeError):
    """A traced value escaped the function it was traced in (stored in a global or an outer object) and was
    used after that trace finished."""

"""numpy semantics on traced arrays, expressed with IR primitives.

Every function here takes any mix of Tracers, numpy arrays and Python scalars (at least one Tracer) and
returns a Tracer. They follow numpy exactly where the IR can express it: ufunc type resolution (NEP 50:
Python scalars are weak, so ``f32 * 2.0`` stays f32 and ``i32 / i32`` is f64), broadcasting, axis
normalisation with ``keepdims``, basic and integer-array indexing. What cannot be traced raises a clear
error naming the user's line.
"""
from __future__ import annotations

from .operands import (  # noqa: F401
    _as_operand, _is_python_scalar, _loc, _reject, _trace_of, broadcast_shapes, dtype_spec, ndim_of,
    normalize_axes, normalize_axis, prepare, shape_of, to_tracer, value_of,
)
from .elementwise import (  # noqa: F401
    UFUNCS, _BOOL_HELPERS, _SIMPLE_UFUNCS, _bitwise, _const_like, _elementwise, _float_unary, _integer_power,
    _logical_and, _logical_not, _logical_or, _logical_xor, _scipy_ufuncs, _to_bool, floor_divide, isfinite,
    isinf, isnan, logaddexp, logical_and, logical_not, logical_or, logical_xor, power, reciprocal, remainder,
    resolve, square, ufunc,
)
from .shape import (  # noqa: F401
    _common_dtype, _split, array_split, astype, broadcast_arrays, broadcast_to, clip, concatenate,
    expand_dims, flip, full_like, moveaxis, norm, ones_like, pad, ravel, reshape, split, squeeze, stack,
    swapaxes, transpose, where, zeros_like,
)
from .reductions import (  # noqa: F401
    _any_all, _keep, _reduce_extremum, _sum_dtype, all_, any_, argmax, argmin, mean, reduce_max, reduce_min,
    reduce_sum, std, var,
)
from .contractions import (  # noqa: F401
    _contraction_operands, _dot_general, dot, einsum, matmul, outer, tensordot, vdot_inner,
)
from .indexing import (  # noqa: F401
    _arith, _checked_index, _is_array_index, _normalize_index_items, getitem, take, take_along_axis,
)

"""The SSA graph IR: types, graphs, the primitive registry, text form, verifier and reference interpreter."""
from .types import (DType, DTypeError, ShapeError, TensorType, as_dtype, type_of_array,
                    float16, bfloat16, float32, float64, int8, int32, int64, uint8, uint32, bool_)
from .graph import Graph, Node, SourceLoc, Value
from .primitive import NONDIFFERENTIABLE, Primitive, all_primitives, get as get_primitive
from .builder import GraphBuilder
from .printer import print_graph
from .parser import ParseError, parse
from .verify import VerifyError, verify
from .interpret import interpret

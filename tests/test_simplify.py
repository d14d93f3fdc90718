"""Simplify rules on concatenates: each result verified and compared bit for bit with the reference
interpreter's values of the original graph (the other simplify rules are tested in test_passes.py)."""
import numpy as np
import pytest

from kernelflow.ir import GraphBuilder, TensorType, interpret, verify
from kernelflow.ir import types as T
from kernelflow.passes.pipeline import simplify_to_fixed_point
from kernelflow.passes.simplify import would_simplify

F32 = T.float32


def rows(b, x, start, stop):
    """x[start:stop] along the leading axis, as the frontend traces it."""
    return b.slice(x, start=(start,) + (0,) * (x.ndim - 1), limit=(stop,) + x.shape[1:], stride=(1,) * x.ndim)


def simplified_with_same_values(g):
    out = verify(simplify_to_fixed_point(g))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
    for want, got in zip(interpret(g, args), interpret(out, args)):
        assert want.shape == got.shape and want.dtype == got.dtype
        np.testing.assert_array_equal(got, want)
    return out


def test_the_steps_of_a_sequence_concatenated_in_order_are_the_sequence_reshaped():
    """concat(x[0], x[1], ..., x[5]) of x: [6, 4, 3] (the per-step inputs of an RNN, merged) -> reshape."""
    b = GraphBuilder()
    x = b.add_input(TensorType(F32, (6, 4, 3)))
    steps = [b.reshape(rows(b, x, t, t + 1), shape=(4, 3)) for t in range(6)]
    g = b.finish([b.concatenate(*steps, axis=0)])
    assert would_simplify(g)
    out = simplified_with_same_values(g)
    assert out.op_counts() == {"reshape": 1}
    assert out.nodes[0].inputs[0] is out.inputs[0]


def test_slices_of_several_rows_that_tile_the_value_are_the_value():
    """Unequal runs of rows, not reshaped: the concatenate is x itself; with size-1 dims before the axis
    the pieces still follow one another in memory."""
    b = GraphBuilder()
    x = b.add_input(TensorType(F32, (7, 2)))
    g = b.finish([b.concatenate(rows(b, x, 0, 3), rows(b, x, 3, 4), rows(b, x, 4, 7), axis=0)])
    out = simplified_with_same_values(g)
    assert out.nodes == [] and out.outputs[0] is out.inputs[0]

    b = GraphBuilder()
    x = b.add_input(TensorType(F32, (4, 5)))
    pieces = [b.reshape(rows(b, x, t, t + 2), shape=(1, 2, 5)) for t in (0, 2)]
    g = b.finish([b.concatenate(*pieces, axis=1)])
    out = simplified_with_same_values(g)
    assert out.op_counts() == {"reshape": 1}


@pytest.mark.parametrize("case", ["reversed", "gap", "short", "two_sources", "inner_axis_slice",
                                  "stride", "axis_1"])
def test_concatenates_that_are_not_the_rows_of_one_value_in_order_are_kept(case):
    b = GraphBuilder()
    x, y = b.add_input(TensorType(F32, (4, 2, 3))), b.add_input(TensorType(F32, (4, 2, 3)))
    steps = {t: rows(b, x, t, t + 1) for t in range(4)}
    axis = 0
    if case == "reversed":
        pieces = [steps[t] for t in (1, 0, 2, 3)]
    elif case == "gap":
        pieces = [steps[0], steps[2], steps[3]]
    elif case == "short":
        pieces = [steps[0], steps[1], steps[2]]
    elif case == "two_sources":
        pieces = [steps[0], steps[1], rows(b, y, 2, 4)]
    elif case == "inner_axis_slice":
        pieces = [b.slice(x, start=(0, 0, 0), limit=(4, 1, 3), stride=(1, 1, 1)),
                  b.slice(x, start=(0, 1, 0), limit=(4, 2, 3), stride=(1, 1, 1))]
    elif case == "stride":
        pieces = [b.slice(x, start=(0, 0, 0), limit=(4, 2, 3), stride=(2, 1, 1)),
                  b.slice(x, start=(1, 0, 0), limit=(4, 2, 3), stride=(2, 1, 1))]
    else:  # the rows side by side: [2, 4*3] is not x's memory order
        pieces = [b.reshape(steps[t], shape=(2, 3)) for t in range(4)]
        axis = 1
    g = b.finish([b.concatenate(*pieces, axis=axis)])
    out = simplified_with_same_values(g)
    assert out.op_counts().get("concatenate") == 1

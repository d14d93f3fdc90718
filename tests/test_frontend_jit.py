"""kf.jit: per-signature caching, pytrees, static arguments, nesting, inspection, dumps, errors."""
import collections
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import kernelflow as kf

rng = np.random.default_rng(1)
X = rng.standard_normal((4, 3)).astype(np.float32)
W = rng.standard_normal((3, 2)).astype(np.float32)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interp(fn=None, **kw):
    return kf.jit(fn, backend="interpret", **kw) if fn is not None else kf.jit(backend="interpret", **kw)


def line_of(fn, offset):
    """``file:line`` of the line ``offset`` lines below ``def`` of ``fn``."""
    return f"{__file__}:{fn.__code__.co_firstlineno + offset}"


# -- caching -----------------------------------------------------------------------------------------
def test_second_call_with_same_signature_does_not_retrace():
    traces = []

    @interp
    def f(x, w):
        traces.append(1)
        return np.tanh(x @ w)

    f(X, W)
    f(X + 1, W * 2)                     # same shapes and dtypes: cached
    assert len(traces) == 1
    f(X[:2], W)                         # new shape: traced again
    assert len(traces) == 2
    f(X.astype(np.float64), W)          # new dtype
    assert len(traces) == 3
    f(X, W)
    assert len(traces) == 3
    assert f.trace_count == 3


def test_static_arguments_are_part_of_the_key():
    traces = []

    @interp(static_argnums=1, static_argnames="mode")
    def f(x, n, mode="sum"):
        traces.append(1)
        y = x
        for _ in range(n):             # Python control flow on a static value
            y = y * 2
        return y.sum() if mode == "sum" else y.max()

    np.testing.assert_allclose(f(X, 3), (X * 8).sum(), rtol=1e-6)
    np.testing.assert_allclose(f(X, 3), (X * 8).sum(), rtol=1e-6)
    assert len(traces) == 1
    np.testing.assert_allclose(f(X, 2, mode="max"), (X * 4).max())
    np.testing.assert_allclose(f(X, n=1), (X * 2).sum(), rtol=1e-6)   # static by name as well
    assert len(traces) == 3


def test_decorator_without_arguments_compiles_with_numba_by_default():
    @kf.jit
    def f(x):
        return x * 2

    np.testing.assert_allclose(f(X), X * 2)
    exe = f.lower(X).compile()
    assert exe.backend == "numba" and len(exe.kernels) == 1


# -- pytrees ---------------------------------------------------------------------------------------------
Batch = collections.namedtuple("Batch", ["x", "y"])


def test_pytrees_in_and_out():
    @interp
    def f(params, batch, extra):
        h = batch.x @ params["w"] + params["b"]
        return {"out": h, "pair": (h.sum(), [batch.y * 2, None])}, extra[0]

    params = {"w": W, "b": np.ones(2, np.float32)}
    batch = Batch(X, np.arange(4))
    got = f(params, batch, [np.float32(3.0)])
    h = X @ W + 1
    assert isinstance(got, tuple) and isinstance(got[0], dict) and isinstance(got[0]["pair"][1], list)
    np.testing.assert_allclose(got[0]["out"], h, rtol=1e-6)
    np.testing.assert_allclose(got[0]["pair"][0], h.sum(), rtol=1e-5)
    np.testing.assert_array_equal(got[0]["pair"][1][0], np.arange(4) * 2)
    assert got[0]["pair"][1][1] is None
    assert got[1] == np.float32(3.0) and got[1].dtype == np.float32


def test_returning_constants_and_inputs():
    @interp
    def f(x):
        return x, np.arange(3), 2.5

    a, b, c = f(X)
    np.testing.assert_array_equal(a, X)
    np.testing.assert_array_equal(b, np.arange(3))
    assert c == 2.5


def test_bad_argument_names_its_path():
    @interp
    def f(params, x):
        return x @ params["w1"]

    with pytest.raises(TypeError, match=r"params\['w1'\]") as e:
        f({"w1": "not an array"}, X)
    assert "static_argnums" in str(e.value)


def test_unsupported_dtype_argument_names_its_path():
    @interp
    def f(params):
        return params["z"][0]

    with pytest.raises(kf.DTypeError, match=r"params\['z'\]\[0\]"):
        f({"z": [np.zeros(2, np.complex64)]})


def test_unhashable_static_argument():
    f = interp(lambda x, shape: x.reshape(shape), static_argnums=1)
    with pytest.raises(TypeError, match="hashable"):
        f(X, [3, 4])
    np.testing.assert_array_equal(f(X, (3, 4)), X.reshape(3, 4))


# -- nesting and closures ----------------------------------------------------------------------------------
def test_jit_inside_jit_inlines():
    inner = interp(lambda x: np.exp(x) + 1)

    @interp
    def outer(x):
        return inner(x) * inner(x * 2)

    np.testing.assert_allclose(outer(X), (np.exp(X) + 1) * (np.exp(X * 2) + 1), rtol=1e-6)
    graph = outer.lower(X).graph
    assert graph.op_counts()["exp"] == 2 and len(graph.inputs) == 1


def test_closure_over_an_outer_tracer_is_lifted():
    @interp
    def outer(x, w):
        scale = x.sum()

        @interp
        def inner(y):
            return y @ w * scale          # w and scale are tracers of the outer trace

        return inner(x) + inner(2 * x)

    s = X.sum()
    np.testing.assert_allclose(outer(X, W), X @ W * s + (2 * X) @ W * s, rtol=1e-5)


def test_leaked_tracer_is_reported():
    leaked = []

    @interp
    def f(x):
        leaked.append(x)
        return x

    f(X)

    @interp
    def g(y):
        return y + leaked[0]

    with pytest.raises(kf.UnexpectedTracerError, match="after that function finished"):
        g(X)
    with pytest.raises(kf.UnexpectedTracerError, match="after that function finished"):
        interp(lambda y: leaked[0] * y)(X)


# -- inspection and dumps --------------------------------------------------------------------------------
def model(x, w):
    h = x @ w
    return np.maximum(h, 0.0).sum(axis=1)


def test_lower_ir_graph_and_dot():
    lowered = interp(model).lower(X, W)
    text = lowered.ir()
    assert "dot_general" in text and "reduce_sum" in text
    assert f"{os.path.basename(__file__)}" in text
    graph = kf.ir.parse(text)
    np.testing.assert_allclose(kf.ir.interpret(graph, [X, W])[0], model(X, W), rtol=1e-6)
    dot = lowered.as_dot()
    assert dot.startswith('digraph "model"')
    nodes = [line for line in dot.splitlines() if re.match(r"\s*n\d+ \[label=", line)]
    assert len(nodes) == len(lowered.graph.nodes)
    assert f"test_frontend_jit.py:{model.__code__.co_firstlineno + 1}" in dot   # the source line of x @ w
    assert dot.count("->") == sum(len(n.inputs) for n in lowered.graph.nodes) + len(lowered.graph.outputs)
    out = lowered.compile()(X, W)
    np.testing.assert_allclose(out[0], model(X, W), rtol=1e-6)


def test_render_svg_needs_dot(tmp_path):
    lowered = interp(model).lower(X, W)
    import shutil
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="Graphviz"):
            lowered.render_svg(str(tmp_path / "g.svg"))
    else:
        lowered.render_svg(str(tmp_path / "g.svg"))
        assert (tmp_path / "g.svg").read_text().lstrip().startswith("<")


def test_dump_parse_and_command_line_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELFLOW_DUMP", str(tmp_path))
    f = interp(model)
    expected = f(X, W)
    f(X[:2], W)
    dumps = sorted(p.name for p in tmp_path.iterdir())
    assert dumps == ["model.0.kf", "model.1.kf"]
    graph = kf.ir.parse((tmp_path / "model.0.kf").read_text())
    np.testing.assert_allclose(kf.ir.interpret(graph, [X, W])[0], expected)

    np.savez(tmp_path / "inputs.npz", X, W)
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, "-m", "kernelflow", "run", str(tmp_path / "model.0.kf"), "--inputs",
         str(tmp_path / "inputs.npz"), "--out", str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "output 0: float32[4]" in result.stdout
    with np.load(tmp_path / "out.npz") as saved:
        np.testing.assert_allclose(saved["arr_0"], expected)


def test_dump_writes_every_compiler_stage_and_each_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELFLOW_DUMP", str(tmp_path))
    f = kf.jit(lambda x: kf.softmax(x * 2.0, axis=-1))
    expected = f(X)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["lambda.0.explain.txt", "lambda.0.fused.kf", "lambda.0.kf", "lambda.0.module.py",
                     "lambda.0.optimized.kf", "lambda.0.plan.txt"]
    for stage in ("kf", "optimized.kf", "fused.kf"):  # every graph stage is a reproducer
        graph = kf.ir.verify(kf.ir.parse((tmp_path / f"lambda.0.{stage}").read_text()))
        np.testing.assert_allclose(kf.ir.interpret(graph, [X])[0], expected, rtol=1e-6)
    assert "kernel" in (tmp_path / "lambda.0.fused.kf").read_text()      # nodes tagged with their kernel
    assert "@njit" in (tmp_path / "lambda.0.module.py").read_text()


def test_check_nan_names_the_node():
    @interp(check_nan=True)
    def f(x):
        y = np.log(x - 10.0)            # NaN for every x < 10
        return y * 2

    with pytest.raises(FloatingPointError) as e:
        f(X)
    assert "log" in str(e.value) and line_of(f.fn, 2) in str(e.value)
    np.testing.assert_allclose(interp(f.fn)(X + 20), np.log(X + 10) * 2, rtol=1e-6)  # without check: NaN-free


# -- errors name the op and this file's line ---------------------------------------------------------------------
def test_broadcast_error():
    def f(x, w):
        return x + w                    # (4,3) + (3,2)

    with pytest.raises(kf.ShapeError) as e:
        interp(f)(X, W)
    msg = str(e.value)
    assert "add" in msg and "[4, 3]" in msg and "[3, 2]" in msg and line_of(f, 1) in msg


def test_matmul_shape_error():
    def f(x, w):
        return w @ x

    with pytest.raises(kf.ShapeError) as e:
        interp(f)(X, W)
    msg = str(e.value)
    assert "matmul" in msg and "[3, 2]" in msg and "[4, 3]" in msg and line_of(f, 1) in msg


def test_shape_rule_error_from_the_ir_names_the_line():
    def f(x, w):
        return kf.conv2d(x, w)          # 3 input channels, weight expects 2

    x = np.zeros((1, 3, 5, 5), np.float32)
    w = np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(kf.ShapeError) as e:
        interp(f)(x, w)
    msg = str(e.value)
    assert "conv2d" in msg and line_of(f, 1) in msg


def test_dtype_error():
    def f(x, n):
        return x ** n                   # integer power with a traced exponent

    with pytest.raises(kf.DTypeError) as e:
        interp(f)(np.arange(3), np.arange(3))
    assert "power" in str(e.value) and line_of(f, 1) in str(e.value)

    def g(x):
        return x @ x.T                  # bool matmul has no IR type

    with pytest.raises(kf.DTypeError) as e:
        interp(g)(np.ones((2, 2), bool))
    assert "dot_general" in str(e.value) and line_of(g, 1) in str(e.value)


def test_reshape_error():
    def f(x):
        return x.reshape(5, -1)

    with pytest.raises(kf.ShapeError) as e:
        interp(f)(X)
    assert "reshape" in str(e.value) and line_of(f, 1) in str(e.value)


def test_python_control_flow_on_traced_value():
    def f(x):
        if x.sum() > 0:                 # not traceable
            return x
        return -x

    with pytest.raises(kf.TracerBoolError) as e:
        interp(f)(X)
    assert isinstance(e.value, TypeError)
    msg = str(e.value)
    assert "kf.where" in msg and line_of(f, 1) in msg

    for bad in (lambda x: int(x[0, 0]), lambda x: float(x.sum()), lambda x: range(x.shape[0])[x[0, 0]]):
        with pytest.raises(kf.TracerBoolError):
            interp(bad)(X)


def test_unsupported_numpy_function():
    def f(x):
        return np.sort(x, axis=0)

    with pytest.raises(NotImplementedError) as e:
        interp(f)(X)
    msg = str(e.value)
    assert "np.sort" in msg and line_of(f, 1) in msg and "np.sum" in msg


@pytest.mark.parametrize("backend", ["interpret", "numba"])
def test_traced_index_arrays_follow_numpy_and_never_read_out_of_their_axis(backend):
    """Traced integer-array indices: a negative index wraps once (as numpy), one outside [-n, n) is an
    IndexError at the user's line, also when several index arrays are flattened into one gather (a
    label equal to the class count must not read the next row's class 0)."""
    x = np.arange(20, dtype=np.float32).reshape(4, 5)

    def take(x, i):
        return np.take(x, i, axis=1)

    def pick(x, labels):
        return x[np.arange(4), labels]
    take_c, pick_c = kf.jit(take, backend=backend), kf.jit(pick, backend=backend)
    np.testing.assert_array_equal(take_c(x, np.array([-1, 2, -5])), np.take(x, [-1, 2, -5], axis=1))
    np.testing.assert_array_equal(pick_c(x, np.array([0, 4, -1, -5])), x[np.arange(4), [0, 4, -1, -5]])
    for bad in ([-7], [5], [-6]):
        with pytest.raises(IndexError) as e:
            take_c(x, np.array(bad))
        assert line_of(take, 1) in str(e.value)
        with pytest.raises(IndexError):
            np.take(x, bad, axis=1)  # numpy agrees that it is an error
    for bad in ([0, 5, 1, 0], [0, -6, 1, 0], [0, 1, 1, 5]):
        with pytest.raises(IndexError) as e:
            pick_c(x, np.array(bad))
        assert line_of(pick, 1) in str(e.value)
        with pytest.raises(IndexError):
            x[np.arange(4), bad]


def test_unsupported_ufunc_and_conversion():
    with pytest.raises(NotImplementedError, match="np.arctan2"):
        interp(lambda x: np.arctan2(x, x))(X)
    with pytest.raises(kf.TracerArrayConversionError):
        interp(lambda x: np.asarray(x) + 1)(X)
    with pytest.raises(TypeError, match="immutable"):
        def f(x):
            x[0] = 1.0
            return x
        interp(f)(X)


def test_index_errors():
    with pytest.raises(IndexError, match="out of bounds"):
        interp(lambda x: x[4])(X)
    with pytest.raises(IndexError, match="too many indices"):
        interp(lambda x: x[0, 0, 0])(X)
    with pytest.raises(NotImplementedError, match="kf.where"):
        interp(lambda x: x[x > 0])(X)

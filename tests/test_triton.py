"""The Triton backend without a GPU: every generated kernel of a differential set runs in Triton's CPU
interpreter against the reference interpreter, and is compiled ahead of time for sm_90 (H100).

TRITON_INTERPRET=1 must be in the environment before ``@triton.jit`` runs (kernelflow's device helpers
read it when they are imported), so this module sets it at import; each pytest-xdist worker is its own
process and imports this module before running any of its tests.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from kernelflow.codegen.triton.program import HostStep, lower_graph  # noqa: E402
from kernelflow.frontend import composites as C  # noqa: E402
from kernelflow.frontend import jit  # noqa: E402
from kernelflow.frontend.pytree import flatten  # noqa: E402
from kernelflow.frontend.transforms import grad, value_and_grad  # noqa: E402
from kernelflow.ir import TensorType  # noqa: E402
from kernelflow.ir.builder import GraphBuilder  # noqa: E402
from kernelflow.ir.interpret import interpret  # noqa: E402
from kernelflow.ir.types import as_dtype  # noqa: E402
from kernelflow.runtime import gpu  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory):
    """Generated kernel modules and Triton's cache go to a temporary folder, not ~/.cache."""
    old = os.environ.get("KERNELFLOW_CACHE_DIR")
    os.environ["KERNELFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("kfcache"))
    yield
    if old is None:
        os.environ.pop("KERNELFLOW_CACHE_DIR", None)
    else:
        os.environ["KERNELFLOW_CACHE_DIR"] = old


def check(graph, arrays, rtol=2e-6, atol=1e-6, exact=False):
    """Run ``graph`` on the Triton interpreter and on the reference interpreter; compare every output."""
    exe = gpu.compile_triton(graph, interpret=True)
    got = exe(*arrays)
    want = interpret(graph, arrays)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"output {i}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if exact or w.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
        else:
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"output {i}\n{exe.explain()}")
    return exe


def traced(fn, *args):
    """The graph of ``fn`` and its flat input arrays."""
    graph = jit(fn).lower(*args).graph
    return graph, [np.asarray(a) for a in flatten(args)[0]]


def _graph(op, types, **attrs):
    b = GraphBuilder(op)
    ins = [b.add_input(t) for t in types]
    return b.finish([b.emit(op, *ins, **attrs)])


rng = np.random.default_rng(0)
F32 = as_dtype("f32")
UNARY_DOMAINS = {  # op -> inputs inside its domain
    "neg": (-3, 3), "exp": (-5, 5), "log": (0.01, 5), "log1p": (-0.9, 5), "expm1": (-3, 3), "tanh": (-4, 4),
    "logistic": (-8, 8), "sqrt": (0, 9), "rsqrt": (0.1, 9), "abs": (-3, 3), "sign": (-3, 3), "sin": (-6, 6),
    "cos": (-6, 6), "floor": (-5, 5), "erf": (-3, 3),
}


@pytest.mark.parametrize("op", sorted(UNARY_DOMAINS))
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_unary(op, dtype):
    lo, hi = UNARY_DOMAINS[op]
    x = rng.uniform(lo, hi, (3, 37)).astype(as_dtype(dtype).np_dtype)
    if op in ("sign", "abs", "neg", "floor"):
        x[0, :3] = [0.0, -0.0, np.nan]
    # GPU math may differ from numpy by a few ulp (exp/sin/cos use fast approximations in fp32)
    rtol = 1e-5 if dtype == "f32" else 1e-12
    check(_graph(op, [TensorType(as_dtype(dtype), x.shape)]), [x], rtol=rtol, atol=1e-6 if dtype == "f32" else 1e-13)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_binary_float(op):
    x = rng.uniform(0.1, 3, (4, 33)).astype(np.float32)
    y = rng.uniform(-2, 2, (4, 33)).astype(np.float32)
    if op in ("maximum", "minimum"):
        x[0, 0], y[0, 1] = np.nan, np.nan  # NaN propagates like numpy
    if op == "div":
        y[1, :2] = 0.0  # IEEE x/0
    check(_graph(op, [TensorType(F32, x.shape)] * 2), [x, y], rtol=1e-5)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs", "sign"])
@pytest.mark.parametrize("dtype", ["i32", "i64", "u8"])
def test_integer_ops(op, dtype):
    if op in ("neg",) and dtype == "u8":
        pytest.skip("numpy wraps unsigned negation; not an op the frontend emits")
    info = np.iinfo(as_dtype(dtype).np_dtype)
    lo = max(info.min, -50)
    x = rng.integers(lo, 50, (5, 13)).astype(info.dtype)
    y = rng.integers(lo, 50, (5, 13)).astype(info.dtype)
    y[0, :4] = 0  # numpy: x // 0 == 0
    if op in ("neg", "abs", "sign"):
        check(_graph(op, [TensorType(as_dtype(dtype), x.shape)]), [x], exact=True)
    else:
        check(_graph(op, [TensorType(as_dtype(dtype), x.shape)] * 2), [x, y], exact=True)


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_compare(op):
    x = rng.integers(0, 3, (6, 11)).astype(np.float32)
    y = rng.integers(0, 3, (6, 11)).astype(np.float32)
    check(_graph(op, [TensorType(F32, x.shape)] * 2), [x, y], exact=True)


def test_select_and_bool_buffers():
    p = rng.random((5, 9)) < 0.5
    x = rng.standard_normal((5, 9)).astype(np.float32)
    y = rng.standard_normal((5, 9)).astype(np.float32)
    check(_graph("select", [TensorType(as_dtype("bool"), p.shape), TensorType(F32, x.shape),
                            TensorType(F32, y.shape)]), [p, x, y], exact=True)


@pytest.mark.parametrize("src,dst", [("f32", "i32"), ("f32", "bool"), ("bool", "f32"), ("i32", "f32"),
                                     ("f64", "f32"), ("i64", "i32"), ("u32", "f32"), ("f32", "u8")])
def test_cast(src, dst):
    if src == "bool":
        x = rng.random((4, 10)) < 0.5
    elif as_dtype(src).is_float:
        x = rng.uniform(0 if dst == "u8" else -100, 100, (4, 10)).astype(as_dtype(src).np_dtype)
        x[0, 0] = 0.0
    else:
        x = rng.integers(0, 1000, (4, 10)).astype(as_dtype(src).np_dtype)
    check(_graph("cast", [TensorType(as_dtype(src), x.shape)], dtype=as_dtype(dst)), [x], exact=True)


def test_iota_and_broadcasts_in_one_kernel():
    def f(x, b):
        return x * np.arange(x.shape[1], dtype=np.float32) + b[:, None] - x.T.sum()
    x = rng.standard_normal((6, 7)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    check(*traced(f, x, b), rtol=1e-5)


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "reduce_min"])
@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_reductions_over_axes(op, axes):
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    check(_graph(op, [TensorType(F32, x.shape)], axes=axes), [x], rtol=1e-5)


def test_reduction_propagates_nan_like_numpy():
    x = rng.standard_normal((4, 9)).astype(np.float32)
    x[1, 3] = np.nan
    check(_graph("reduce_max", [TensorType(F32, x.shape)], axes=(1,)), [x])
    check(_graph("reduce_min", [TensorType(F32, x.shape)], axes=(1,)), [x])


def test_long_rows_loop_over_the_row():
    """A row longer than ROW_BLOCK_MAX is processed in a loop of chunks, phase by phase."""
    from kernelflow.codegen.triton.printer import ROW_BLOCK_MAX
    x = rng.standard_normal((2, ROW_BLOCK_MAX + 905)).astype(np.float32)
    exe = check(*traced(lambda x: C.softmax(x, axis=-1), x), rtol=1e-5)
    assert "for start in range(0" in exe.kernels[0].source


def test_softmax_is_one_row_kernel():
    x = rng.standard_normal((9, 50)).astype(np.float32) * 4
    exe = check(*traced(lambda x: C.softmax(x, axis=-1), x), rtol=1e-5)
    assert len(exe.kernels) == 1 and exe.kernels[0].printed.kind == "row"
    src = exe.kernels[0].source
    assert "@triton.jit" in src and "# %" in src and "kf_reduce_max" in src and "kf_reduce_sum" in src


def test_layer_norm_forward_and_backward():
    x = rng.standard_normal((6, 40)).astype(np.float32)
    gamma = rng.standard_normal(40).astype(np.float32)
    beta = rng.standard_normal(40).astype(np.float32)
    check(*traced(lambda x, g, b: C.layer_norm(x, g, b), x, gamma, beta), rtol=1e-4, atol=1e-5)
    loss = lambda x, g, b: np.sum(C.layer_norm(x, g, b) * np.arange(40, dtype=np.float32))  # noqa: E731
    check(*traced(grad(loss, argnums=(0, 1, 2)), x, gamma, beta), rtol=1e-4, atol=1e-4)


def test_cross_entropy_forward_and_backward_run_in_triton():
    logits = rng.standard_normal((7, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 7).astype(np.int64)
    check(*traced(lambda z, y: C.cross_entropy(z, y), logits, labels), rtol=1e-5)
    exe = check(*traced(grad(lambda z, y: C.cross_entropy(z, y)), logits, labels), rtol=1e-5, atol=1e-6)
    assert not [s for s in exe.program.steps if isinstance(s, HostStep)], exe.explain()


def test_matmul_bias_relu_is_one_kernel_with_an_epilogue():
    x = rng.standard_normal((33, 70)).astype(np.float32)
    w = rng.standard_normal((70, 20)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    exe = check(*traced(lambda x, w, b: C.relu(x @ w + b), x, w, b), rtol=1e-5, atol=1e-5)
    assert len(exe.kernels) == 1
    src = exe.kernels[0].source
    assert "tl.dot(" in src and "epilogue" in src and 'input_precision="ieee"' in src


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_matmul_accumulates_in_float32(dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes") if dtype == "bfloat16" else None
    np_dtype = ml_dtypes.bfloat16 if ml_dtypes else np.float16
    x = rng.standard_normal((40, 64)).astype(np_dtype)
    w = rng.standard_normal((64, 24)).astype(np_dtype)
    graph, arrays = traced(lambda x, w: x @ w, x, w)
    exe = gpu.compile_triton(graph, interpret=True)
    (got,) = exe(*arrays)
    assert got.dtype == np_dtype
    exact = x.astype(np.float64) @ w.astype(np.float64)
    # one rounding to the output dtype after an fp32 sum: within an ulp of the output dtype
    ulp = 2.0 ** -7 if dtype == "bfloat16" else 2.0 ** -10
    np.testing.assert_allclose(got.astype(np.float64), exact, rtol=ulp, atol=ulp * np.abs(exact).max() / 8)


def test_transposed_and_batched_operands_use_strides():
    a = rng.standard_normal((3, 16, 5)).astype(np.float32)
    b = rng.standard_normal((3, 7, 16)).astype(np.float32)
    exe = check(*traced(lambda a, b: np.matmul(np.swapaxes(a, 1, 2), np.swapaxes(b, 1, 2)), a, b),
                rtol=1e-5, atol=1e-5)
    assert any(k.printed.kind == "matmul" for k in exe.kernels)


def _mlp_step(params, x, y):
    def loss(params, x, y):
        h = C.relu(x @ params["w1"] + params["b1"])
        return C.cross_entropy(h @ params["w2"] + params["b2"], y)
    value, g = value_and_grad(loss)(params, x, y)
    return value, {k: params[k] - 0.1 * g[k] for k in params}


def test_mlp_training_step_runs_entirely_in_triton():
    params = {"w1": rng.standard_normal((12, 32)).astype(np.float32) * 0.3, "b1": np.zeros(32, np.float32),
              "w2": rng.standard_normal((32, 5)).astype(np.float32) * 0.3, "b2": np.zeros(5, np.float32)}
    x = rng.standard_normal((16, 12)).astype(np.float32)
    y = rng.integers(0, 5, 16).astype(np.int64)
    exe = check(*traced(_mlp_step, params, x, y), rtol=1e-5, atol=1e-6)
    assert not [s for s in exe.program.steps if isinstance(s, HostStep)], exe.explain()
    dots = sum(n.op == "dot_general" for n in exe.program.graph.nodes)
    assert dots >= 4 and sum(k.printed.kind == "matmul" for k in exe.kernels) == dots


def test_random_bits_match_the_reference_bit_for_bit():
    key = np.array([0x12345678, 0x9ABCDEF0], np.uint32)
    check(_graph("random_bits", [TensorType(as_dtype("u32"), (2,))], shape=(37, 29)), [key], exact=True)


def test_dropout_mask_is_identical_across_backends():
    x = rng.standard_normal((8, 64)).astype(np.float32)
    key = np.array([0, 42], np.uint32)
    exe = check(*traced(lambda x, k: C.dropout(x, 0.3, k), x, key), exact=True)
    assert any(k.printed.note == "threefry2x32" for k in exe.kernels)


def test_unlowered_ops_fall_back_to_the_host_with_a_note():
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    exe = check(*traced(lambda x: C.max_pool2d(x, 2) * 2.0, x))
    assert "host step" in exe.explain() and "reduce_window_max" in exe.explain()


def test_without_a_gpu_the_error_says_what_to_do(monkeypatch):
    if gpu.gpu_available():
        pytest.skip("a GPU is present")
    graph, _ = traced(lambda x: x + 1.0, np.ones(3, np.float32))
    with pytest.raises(gpu.GPUUnavailableError, match="TRITON_INTERPRET=1"):
        gpu.compile_triton(graph, interpret=False)
    with pytest.raises(gpu.GPUUnavailableError):
        gpu.device_put(np.ones(3))


def test_host_arrays_are_not_device_arrays():
    assert gpu.as_device_array(np.ones(3)) is None  # numpy's DLPack device is the CPU: copy, not alias


def test_cuda_array_interface_inputs_are_used_in_place():
    class Foreign:  # stands in for a CuPy/numba/PyTorch CUDA array
        __cuda_array_interface__ = {"shape": (4, 5), "typestr": "<f4", "data": (0xDEAD00, False), "version": 3,
                                    "strides": None}
    d = gpu.as_device_array(Foreign())
    assert d.data_ptr() == 0xDEAD00 and d.shape == (4, 5) and d.dtype == np.float32
    assert d.__cuda_array_interface__["data"][0] == 0xDEAD00

    class Strided(Foreign):
        __cuda_array_interface__ = dict(Foreign.__cuda_array_interface__, strides=(4, 16))
    with pytest.raises(ValueError, match="not C-contiguous"):
        gpu.as_device_array(Strided())


def _aot_graphs():
    """The differential set's graphs (types only matter for compilation)."""
    graphs = []
    for dt in ("f32", "f64"):
        for op in sorted(UNARY_DOMAINS):
            graphs.append(_graph(op, [TensorType(as_dtype(dt), (3, 37))]))
    for op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"):
        graphs.append(_graph(op, [TensorType(F32, (4, 33))] * 2))
    for dt in ("i32", "i64", "u8"):
        for op in ("add", "sub", "mul", "div", "maximum", "minimum"):
            graphs.append(_graph(op, [TensorType(as_dtype(dt), (5, 13))] * 2))
        for op in ("abs", "sign"):
            graphs.append(_graph(op, [TensorType(as_dtype(dt), (5, 13))]))
    graphs.append(_graph("select", [TensorType(as_dtype("bool"), (5, 9)), TensorType(F32, (5, 9)),
                                    TensorType(F32, (5, 9))]))
    for src, dst in [("f32", "i32"), ("f32", "bool"), ("bool", "f32"), ("i32", "f32"), ("f64", "f32"),
                     ("i64", "i32"), ("u32", "f32"), ("f32", "u8")]:
        graphs.append(_graph("cast", [TensorType(as_dtype(src), (4, 10))], dtype=as_dtype(dst)))
    for op in ("reduce_sum", "reduce_max", "reduce_min"):
        for axes in [(0,), (1,), (2,), (0, 2), (0, 1, 2)]:
            graphs.append(_graph(op, [TensorType(F32, (3, 5, 6))], axes=axes))
    graphs.append(_graph("random_bits", [TensorType(as_dtype("u32"), (2,))], shape=(37, 29)))
    f32 = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    labels = np.zeros(7, np.int64)
    traced_cases = [
        (lambda x: C.softmax(x, axis=-1), f32(9, 50)),
        (lambda x: C.softmax(x, axis=-1), f32(2, 5001)),
        (lambda x, g, b: C.layer_norm(x, g, b), f32(6, 40), f32(40), f32(40)),
        (grad(lambda x, g, b: np.sum(C.layer_norm(x, g, b) ** 2), argnums=(0, 1, 2)), f32(6, 40), f32(40), f32(40)),
        (lambda z, y: C.cross_entropy(z, y), f32(7, 10), labels),
        (grad(lambda z, y: C.cross_entropy(z, y)), f32(7, 10), labels),
        (lambda x, w, b: C.relu(x @ w + b), f32(33, 70), f32(70, 20), f32(20)),
        (lambda x, w: x @ w, np.zeros((256, 128), np.float16), np.zeros((128, 256), np.float16)),
        (lambda a, b: np.matmul(np.swapaxes(a, 1, 2), np.swapaxes(b, 1, 2)), f32(3, 16, 5), f32(3, 7, 16)),
        (_mlp_step, {"w1": f32(12, 32), "b1": f32(32), "w2": f32(32, 5), "b2": f32(5)}, f32(16, 12),
         np.zeros(16, np.int64)),
        (lambda x, k: C.dropout(x, 0.3, k), f32(8, 64), np.zeros(2, np.uint32)),
        (lambda x, b: x * np.arange(7, dtype=np.float32) + b[:, None] - x.T.sum(), f32(6, 7), f32(6)),
    ]
    try:
        import ml_dtypes
        bf16 = np.zeros((128, 64), ml_dtypes.bfloat16)
        traced_cases.append((lambda x, w: x @ w, bf16, bf16.T.copy()))
    except ImportError:
        pass
    for fn, *args in traced_cases:
        graphs.append(traced(fn, *args)[0])
    return graphs


def _half_graphs(monkeypatch):
    from kernelflow.passes import fusion
    from kernelflow.codegen.triton.program import KERNEL_DTYPES
    monkeypatch.setattr(fusion, "KERNEL_DTYPES", KERNEL_DTYPES)  # as test_half_precision_elementwise...
    graphs = []
    import ml_dtypes
    for dt in (np.float16, ml_dtypes.bfloat16):
        x, w, b = np.zeros((64, 32), dt), np.zeros((32, 64), dt), np.zeros(64, dt)
        graphs.append(traced(lambda x: np.tanh(x) * np.exp(x) + x, x)[0])
        graphs.append(traced(lambda x, w, b: C.relu(x @ w + b), x, w, b)[0])
        graphs.append(traced(lambda x: C.softmax(x.astype(np.float32), axis=-1).astype(x.dtype), x)[0])
    return graphs


def test_every_kernel_compiles_ahead_of_time_for_sm_90(tmp_path, monkeypatch):
    """Every kernel of the differential set through Triton's whole pipeline to PTX and cubin for an H100."""
    jobs, seen = [], set()
    graphs = _aot_graphs()
    if pytest.importorskip("ml_dtypes"):
        graphs += _half_graphs(monkeypatch)
    for graph in graphs:
        program = lower_graph(graph, interpret=False)
        assert not [s for s in program.steps if isinstance(s, HostStep)], program.explain()
        for k in program.kernels:
            if k.key in seen:
                continue
            seen.add(k.key)
            p = k.printed
            constexprs = dict(p.constexprs) if p.kind == "matmul" else {"BLOCK": p.default_block}
            jobs.append({"path": gpu._write_kernel(k), "module": f"kernelflow_triton_{k.key}", "name": k.name,
                         "signature": p.signature, "constexprs": constexprs, "num_warps": p.num_warps,
                         "num_stages": p.num_stages, "source": k.source})
    from kernelflow.codegen.triton.aot import compile_sources
    compiled = compile_sources(jobs, "sm_90", str(tmp_path))
    assert len(compiled) == len(jobs)
    for c in compiled:
        assert ".target sm_90" in c.asm["ptx"], c.name
        assert len(c.asm["cubin"]) > 0, c.name
    half = [c for c, j in zip(compiled, jobs) if "tl.dot(" in j["source"] and "*fp16" in j["signature"].values()]
    assert half and all("wgmma" in c.asm["ptx"] for c in half)  # tensor cores on Hopper


def test_lowered_compile_for_a_target_gives_source_and_ptx(tmp_path):
    graph, _ = traced(lambda x, w, b: C.relu(x @ w + b), np.ones((64, 32), np.float32),
                      np.ones((32, 16), np.float32), np.ones(16, np.float32))
    compiled = gpu.compile_ahead(graph, "sm_90", out_dir=str(tmp_path))
    assert len(compiled.kernels) == 1
    (k,) = compiled.kernels
    assert "@triton.jit" in k.source and ".target sm_90" in k.asm["ptx"] and k.asm["cubin"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_elementwise_and_epilogue(dtype, monkeypatch):
    """float16/bfloat16 pointwise kernels (transcendentals in fp32, rounded once, as numpy) and a half
    matmul's epilogue. Fusion keeps half values out of kernels unless the backend asks for them
    (``fuse(graph, kernel_dtypes=...)``); here the CPU set is widened to emulate that."""
    from kernelflow.passes import fusion
    from kernelflow.codegen.triton.program import KERNEL_DTYPES
    monkeypatch.setattr(fusion, "KERNEL_DTYPES", KERNEL_DTYPES)
    np_dtype = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.float16
    x = rng.uniform(-2, 2, (16, 32)).astype(np_dtype)
    w = rng.uniform(-1, 1, (32, 16)).astype(np_dtype)
    b = rng.uniform(-1, 1, 16).astype(np_dtype)
    tol = 1e-2 if dtype == "bfloat16" else 1e-3
    exe = check(*traced(lambda x: np.tanh(x) * np.exp(x) + x, x), rtol=tol, atol=tol)
    assert len(exe.kernels) == 1 and ".to(tl.float32)" in exe.kernels[0].source
    graph, arrays = traced(lambda x, w, b: C.relu(x @ w + b), x, w, b)
    exe = gpu.compile_triton(graph, interpret=True)
    assert len(exe.kernels) == 1 and "epilogue" in exe.kernels[0].source
    (got,) = exe(*arrays)
    want = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64), 0)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=4 * tol, atol=4 * tol)


def test_jit_backend_triton_end_to_end():
    """kf.jit(f, backend="triton"): compile_graph dispatches to runtime.gpu (the interpreter here)."""
    x = rng.standard_normal((6, 20)).astype(np.float32)
    f = jit(lambda x: C.softmax(x * 2.0, axis=-1), backend="triton")
    got = f(x)
    np.testing.assert_allclose(np.asarray(got), interpret(jit(lambda x: C.softmax(x * 2.0, axis=-1)).lower(x).graph,
                                                          [x])[0], rtol=1e-5)

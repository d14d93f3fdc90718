"""Tracing numpy code: each function runs once directly on numpy arrays (the oracle) and once traced by
kf.jit and run by the reference interpreter; values, dtypes and shapes must agree."""
import numpy as np
import pytest

import kernelflow as kf

rng = np.random.default_rng(0)
A = rng.standard_normal((3, 4)).astype(np.float32)
B = rng.standard_normal((4,)).astype(np.float32)
C = rng.standard_normal((2, 3, 4)).astype(np.float32)
P = (rng.random((3, 4)) + 0.5).astype(np.float32)   # positive
I = rng.integers(-5, 6, size=(3, 4)).astype(np.int32)
J = rng.integers(1, 4, size=(4,)).astype(np.int64)
D = rng.standard_normal((3, 4))                      # float64
M = rng.standard_normal((4, 5)).astype(np.float32)
V = rng.standard_normal((5, 6, 7)).astype(np.float32)


def check(fn, *args, rtol=1e-6, atol=1e-6):
    with np.errstate(all="ignore"):
        expected = fn(*args)
    got = kf.jit(fn, backend="interpret")(*args)
    exp_leaves, exp_tree = kf.tree_flatten(expected)
    got_leaves, got_tree = kf.tree_flatten(got)
    assert exp_tree == got_tree
    for e, g in zip(exp_leaves, got_leaves):
        e = np.asarray(e)
        assert isinstance(g, np.ndarray)
        assert g.shape == e.shape, (g.shape, e.shape)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


BINARY = [
    ("add", lambda x, y: x + y), ("sub", lambda x, y: x - y), ("mul", lambda x, y: x * y),
    ("div", lambda x, y: x / y), ("radd_scalar", lambda x, y: 2 + x), ("rsub_scalar", lambda x, y: 1.5 - x),
    ("rdiv_scalar", lambda x, y: 3.0 / (y + 10)), ("pow2", lambda x, y: x ** 2), ("pow3", lambda x, y: x ** 3),
    ("pow_half", lambda x, y: np.abs(x) ** 0.5), ("pow_neg1", lambda x, y: (x + 10) ** -1),
    ("pow_float", lambda x, y: np.abs(x) ** 1.7), ("pow_tensor", lambda x, y: np.abs(x) ** np.abs(y)),
    ("rpow", lambda x, y: 2.0 ** x), ("neg", lambda x, y: -x), ("abs", lambda x, y: abs(x)),
    ("lt", lambda x, y: x < y), ("le", lambda x, y: x <= 0.5), ("gt", lambda x, y: 0.1 > x),
    ("ge", lambda x, y: x >= y), ("eq", lambda x, y: x == y), ("ne", lambda x, y: x != 0),
    ("floordiv", lambda x, y: x // (np.abs(y) + 1)), ("mod", lambda x, y: x % 0.7),
    ("and_or", lambda x, y: ((x > 0) & (y < 0)) | ~(x > 1)), ("xor", lambda x, y: (x > 0) ^ (y > 0)),
]


@pytest.mark.parametrize("name,fn", BINARY, ids=[b[0] for b in BINARY])
def test_operators_broadcasting(name, fn):
    check(fn, A, B)        # (3,4) with (4,)
    check(fn, C, A[:1])    # (2,3,4) with (1,4)


def test_integer_operators_follow_numpy():
    check(lambda x, y: x + y, I, J)           # i32 + i64 -> i64
    check(lambda x, y: x * 3, I, J)           # weak Python int keeps i32
    check(lambda x, y: x / y, I, J)           # true division of ints -> f64
    check(lambda x, y: x // y, I, J)          # floor division (negative operands)
    check(lambda x, y: x % y, I, J)
    check(lambda x, y: x ** 2 + y ** 3, I, J)
    check(lambda x, y: -x, I, J)


def test_weak_scalars_keep_float32():
    check(lambda x: (x * 2.0 + 1) / 3.0, A)
    check(lambda x: np.maximum(x, 0.0), A)
    check(lambda x: x * np.float64(2.0), A)   # a numpy scalar is strong: promotes to f64
    check(lambda x: x + D, A)                 # f32 + f64 array -> f64
    check(lambda x: np.float32(3.0) * x - np.float16(1.0), A)   # numpy scalars on the left dispatch too


UFUNCS = [np.exp, np.log, np.log1p, np.expm1, np.tanh, np.sqrt, np.abs, np.absolute, np.sign, np.sin, np.cos,
          np.floor, np.negative, np.square, np.reciprocal, np.isnan, np.isfinite, np.isinf, np.logical_not]


@pytest.mark.parametrize("uf", UFUNCS, ids=lambda u: u.__name__)
def test_unary_ufuncs(uf):
    check(uf, P)
    check(uf, D)


@pytest.mark.parametrize("uf", [np.exp, np.tanh, np.sqrt, np.sign, np.abs], ids=lambda u: u.__name__)
def test_unary_ufuncs_on_ints_promote_like_numpy(uf):
    check(uf, np.abs(I))


BINARY_UFUNCS = [np.logaddexp, np.add, np.subtract, np.multiply, np.divide, np.true_divide, np.floor_divide, np.power,
                 np.maximum, np.minimum, np.equal, np.not_equal, np.less, np.less_equal, np.greater,
                 np.greater_equal, np.logical_and, np.logical_or, np.logical_xor]


@pytest.mark.parametrize("uf", BINARY_UFUNCS, ids=lambda u: u.__name__)
def test_binary_ufuncs(uf):
    check(lambda x, y: uf(x, y), P, P[0] + 0.25)
    check(lambda x: uf(x, 2.0), P)             # a Python scalar in the code is weak (NEP 50)
    check(lambda x, y: uf(y, x), P, D[:, :1])


def test_numpy_array_on_the_left_dispatches_to_the_tracer():
    check(lambda x: B + x, A)
    check(lambda x: B * x - A, A)
    check(lambda x: M.T @ x.T, A)


def test_scipy_special_ufuncs():
    scipy_special = pytest.importorskip("scipy.special")
    check(lambda x: scipy_special.erf(x) + scipy_special.expit(x), A)


REDUCTIONS = [
    ("sum_all", lambda x: x.sum()), ("sum_ax", lambda x: x.sum(axis=1)), ("sum_neg", lambda x: np.sum(x, -1)),
    ("sum_keep", lambda x: x.sum(axis=(0, 2), keepdims=True)), ("sum_tuple_neg", lambda x: np.sum(x, axis=(-1, 0))),
    ("mean", lambda x: x.mean()), ("mean_ax", lambda x: np.mean(x, axis=-2, keepdims=True)),
    ("max", lambda x: x.max()), ("max_ax", lambda x: np.max(x, axis=0)), ("amax", lambda x: np.amax(x, 1)),
    ("min_keep", lambda x: x.min(axis=-1, keepdims=True)), ("amin", lambda x: np.amin(x)),
    ("argmax", lambda x: x.argmax()), ("argmax_ax", lambda x: np.argmax(x, axis=-1)),
    ("argmax_keep", lambda x: np.argmax(x, axis=1, keepdims=True)), ("argmin", lambda x: np.argmin(x, axis=0)),
    ("var", lambda x: np.var(x)), ("var_ax", lambda x: x.var(axis=1, ddof=1)),
    ("std", lambda x: np.std(x, axis=(0, 1), keepdims=True)), ("any", lambda x: np.any(x > 1, axis=1)),
    ("all", lambda x: np.all(x > -3)), ("add_reduce", lambda x: np.add.reduce(x)),
    ("sum_dtype", lambda x: x.sum(axis=0, dtype=np.float64)),
]


@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reductions(name, fn):
    check(fn, C, rtol=1e-5)


def test_integer_and_bool_reductions_use_numpy_accumulators():
    check(lambda x: x.sum(), I)                        # i32 sums in i64
    check(lambda x: np.sum(x > 0, axis=0), I)          # bool counts in i64
    check(lambda x: x.mean(axis=1), I)                 # int mean is f64
    check(lambda x: np.argmin(x, axis=1), I)
    check(lambda x: np.argmin(x > 0, axis=1), I)


def test_argmax_ties_pick_the_first():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], np.float32)
    check(lambda a: (np.argmax(a, axis=1), np.argmin(a, axis=1), np.argmin(a)), x)


SHAPES = [
    ("reshape", lambda x: x.reshape(6, 4)), ("reshape_neg", lambda x: x.reshape((-1, 2))),
    ("reshape_args", lambda x: np.reshape(x, (4, -1))), ("T", lambda x: x.T),
    ("transpose", lambda x: np.transpose(x, (1, 0, 2))), ("transpose_neg", lambda x: x.transpose(-1, 0, 1)),
    ("swapaxes", lambda x: np.swapaxes(x, 0, -1)), ("moveaxis", lambda x: np.moveaxis(x, 0, -1)),
    ("expand_dims", lambda x: np.expand_dims(x, (0, -1))), ("squeeze", lambda x: np.squeeze(x[:1], 0)),
    ("squeeze_all", lambda x: x[:1, :, :1].squeeze()), ("flatten", lambda x: x.flatten()),
    ("ravel", lambda x: np.ravel(x)), ("astype", lambda x: x.astype(np.int32)),
    ("astype64", lambda x: x.astype("float64")),
    ("concat", lambda x: np.concatenate([x, x * 2], axis=1)),
    ("concat_neg_mixed", lambda x: np.concatenate([x, C], axis=-1)),
    ("concat_none", lambda x: np.concatenate([x, x], axis=None)),
    ("stack", lambda x: np.stack([x, -x, x], axis=-1)), ("stack0", lambda x: np.stack([x[0], C[1]])),
    ("where", lambda x: np.where(x > 0, x, 0.0)), ("where_mixed", lambda x: np.where(x > 0, 1, C)),
    ("clip", lambda x: np.clip(x, -0.5, 0.5)), ("clip_method", lambda x: x.clip(min=0)),
    ("zeros_like", lambda x: np.zeros_like(x) + x), ("ones_like", lambda x: np.ones_like(x, dtype=np.int32)),
    ("full_like", lambda x: np.full_like(x, 7.0)), ("pad", lambda x: np.pad(x, 1)),
    ("pad_widths", lambda x: np.pad(x, ((0, 0), (1, 2), (3, 0)), constant_values=-1.0)),
    ("broadcast_to", lambda x: np.broadcast_to(x[:, :, :1], (2, 3, 5))), ("flip", lambda x: np.flip(x, axis=1)),
    ("take", lambda x: np.take(x, [2, 0, -1], axis=-1)), ("take_flat", lambda x: np.take(x, [[1, 5], [7, 0]])),
    ("take_along", lambda x: np.take_along_axis(x, np.argsort(C, axis=1), axis=1)),
    ("len_iter", lambda x: [row.sum() for row in x] + [len(x)]),
    ("split", lambda x: np.split(x, 2, axis=-1)), ("array_split", lambda x: np.array_split(x, [1, -1], axis=1)),
    ("norm", lambda x: (np.linalg.norm(x), np.linalg.norm(x, axis=-1, keepdims=True), np.linalg.norm(x[0, 0], 2))),
    ("shape_attrs", lambda x: x.reshape(x.shape[0] * x.shape[1], x.ndim + 1) * x.size),
]


@pytest.mark.parametrize("name,fn", SHAPES, ids=[s[0] for s in SHAPES])
def test_shape_functions(name, fn):
    check(fn, C)


CONTRACTIONS = [
    ("matmul_2d", lambda a, m: a @ m), ("matmul_np", lambda a, m: np.matmul(a, m)),
    ("matmul_vec_right", lambda a, m: a @ m[:, 0]), ("matmul_vec_left", lambda a, m: m[:, 0] @ m),
    ("matmul_vec_vec", lambda a, m: a[0] @ m[:, 1]), ("matmul_batched", lambda a, m: np.stack([a, a]) @ m),
    ("matmul_batch_broadcast", lambda a, m: a @ np.stack([m, 2 * m, m])),
    ("matmul_rmatmul", lambda a, m: a.T.T @ M),
    ("dot", lambda a, m: np.dot(a, m)), ("dot_method", lambda a, m: a.dot(m)),
    ("dot_nd", lambda a, m: np.dot(np.stack([a, a]), m)), ("dot_scalar", lambda a, m: np.dot(a, 2.0)),
    ("tensordot", lambda a, m: np.tensordot(a, m, axes=1)),
    ("tensordot_pairs", lambda a, m: np.tensordot(np.stack([a, a]), m, axes=([2], [0]))),
    ("outer", lambda a, m: np.outer(a[0], m[0])), ("inner", lambda a, m: np.inner(a, m.T)),
    ("einsum_mm", lambda a, m: np.einsum("ij,jk->ik", a, m)),
    ("einsum_transposed", lambda a, m: np.einsum("ij,jk->ki", a, m)),
    ("einsum_batch", lambda a, m: np.einsum("bij,bjk->bik", np.stack([a, a]), np.stack([m, m]))),
    ("einsum_outer", lambda a, m: np.einsum("i,j->ij", a[0], m[0])),
    ("einsum_implicit", lambda a, m: np.einsum("ij,jk", a, m)),
    ("einsum_rowdot", lambda a, m: np.einsum("ij,ij->i", a, a)),
    ("einsum_sum_one", lambda a, m: np.einsum("ij,kl->ik", a, m)),
    ("einsum_unary", lambda a, m: np.einsum("ij->j", a) + np.einsum("ij->ji", m).sum()),
]


@pytest.mark.parametrize("name,fn", CONTRACTIONS, ids=[c[0] for c in CONTRACTIONS])
def test_contractions(name, fn):
    check(fn, A, M, rtol=1e-5, atol=1e-5)


def test_matmul_of_ints_and_mixed_dtypes():
    check(lambda i, d: i @ d.T, I, D)   # i32 @ f64 -> f64


INDEXING = [
    ("int", lambda x: x[1]), ("neg_int", lambda x: x[-1, -2]), ("slice", lambda x: x[1:, :3]),
    ("step", lambda x: x[:, ::2]), ("neg_step", lambda x: x[::-1]), ("neg_step2", lambda x: x[:, -1:0:-2]),
    ("neg_step_all", lambda x: x[::-1, ::-3, ::-1]), ("empty", lambda x: x[3:1]), ("empty_neg", lambda x: x[0:2:-1]),
    ("clamped", lambda x: x[-100:100, 2:100]), ("none", lambda x: x[:, None, 1]), ("newaxis", lambda x: x[np.newaxis]),
    ("ellipsis", lambda x: x[..., 0]), ("ellipsis_mid", lambda x: x[0, ..., 1:]), ("ellipsis_none", lambda x: x[..., None]),
    ("int_array", lambda x: x[np.array([0, 1, 0])]), ("list", lambda x: x[[1, 0]]), ("neg_array", lambda x: x[:, [-1, 1]]),
    ("two_arrays", lambda x: x[np.arange(2), np.array([2, 0])]),
    ("two_arrays_broadcast", lambda x: x[np.array([[0], [1]]), np.array([0, 2, 1])]),
    ("array_slice_array", lambda x: x[np.array([1, 0]), :, np.array([3, 1])]),  # separated: dims go first
    ("slice_two_arrays", lambda x: x[:, np.array([2, 1]), np.array([0, 3])]),    # adjacent: dims stay in place
    ("int_and_array", lambda x: x[1, np.array([0, 2])]),
    ("bool_mask_const", lambda x: x[:, np.array([True, False, True])]),
    ("nested", lambda x: x[1:][:, ::-1][0]),
]


@pytest.mark.parametrize("name,fn", INDEXING, ids=[i[0] for i in INDEXING])
def test_indexing(name, fn):
    check(fn, C)


def test_traced_integer_indices():
    labels = np.array([3, 0, 1], np.int64)
    check(lambda x, y: x[np.arange(3), y], A, labels)
    check(lambda x, y: x[:, y], A, labels)
    check(lambda x, y: x[y - 3], A, labels % 3)          # negative traced indices wrap
    check(lambda x, y: np.take(x, y, axis=1), A, labels)
    check(lambda x, y: np.take_along_axis(x, y[:, None], axis=1), A, labels)


def test_python_control_flow_unrolls():
    def f(x):
        total = x
        for i in range(3):
            if i % 2 == 0:          # Python values may steer; traced ones may not
                total = total * 2
            else:
                total = total - x
        return total
    check(f, A)


def test_closure_constants_become_constant_nodes():
    w = rng.standard_normal((4, 2)).astype(np.float32)

    def f(x):
        return x @ w + B[:2]
    check(f, A)
    ops = kf.jit(f, backend="interpret").lower(A).graph.op_counts()
    assert ops["constant"] == 2


def test_zero_d_and_python_scalar_arguments():
    check(lambda x, s, t: x * s + t, A, np.float32(2.0), np.array(3.0, np.float32))
    out = kf.jit(lambda x, s: x * s, backend="interpret")(A, 2.0)   # a Python float is a float64 0-d array
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, A * np.float64(2.0))
    out = kf.jit(lambda n: n + 1, backend="interpret")(3)
    assert out.dtype == np.int64 and out.shape == () and out == 4

"""Every primitive is complete (shape rule, reference, gradient rule, codegen per backend, tests), and the
package layers import only downwards."""
import ast
import pathlib

import pytest

from kernelflow.ir import primitive
from kernelflow.ir.primitive import BACKENDS, NONDIFFERENTIABLE

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRIMS = sorted(primitive.all_primitives())
PRIM_TEST_TEXT = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_prim_*.py"))


def test_the_design_primitive_set_is_registered():
    design = {"neg", "exp", "log", "log1p", "expm1", "tanh", "logistic", "sqrt", "rsqrt", "abs", "sign", "sin",
              "cos", "floor", "erf", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt",
              "le", "gt", "ge", "select", "cast", "reduce_sum", "reduce_max", "reduce_min", "argmax",
              "broadcast_in_dim", "reshape", "transpose", "slice", "pad", "concatenate", "rev", "dot_general",
              "conv2d", "reduce_window_max", "reduce_window_sum", "gather", "scatter_add", "constant", "iota",
              "random_bits"}
    assert design <= set(PRIMS)


@pytest.mark.parametrize("name", PRIMS)
def test_primitive_is_complete(name):
    p = primitive.get(name)
    assert p.name == name
    assert callable(p.shape_rule), f"{name} lacks a shape rule"
    assert callable(p.reference), f"{name} lacks a reference implementation"
    assert p.grad is NONDIFFERENTIABLE or callable(p.grad), f"{name} lacks a gradient rule"
    for backend in BACKENDS:
        assert p.codegen.get(backend), f"{name} lacks a {backend} codegen template"


@pytest.mark.parametrize("name", PRIMS)
def test_primitive_has_tests(name):
    assert f'"{name}"' in PRIM_TEST_TEXT, f"no tests/test_prim_*.py file names primitive {name!r}"


# Which kernelflow subpackages each layer may import (data flows frontend -> ir -> passes -> codegen ->
# runtime; the frontend is the user-facing driver on top, and nn/optim/data are the library on top of it).
ALLOWED = {
    "ir": {"ir"},
    "passes": {"ir", "passes"},
    "codegen": {"ir", "passes", "codegen"},
    "runtime": {"ir", "passes", "codegen", "runtime"},
    "frontend": {"ir", "passes", "codegen", "runtime", "frontend"},
}


def _kernelflow_imports(path: pathlib.Path):
    """The kernelflow subpackages (ir, passes, ...) that the module at ``path`` imports."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if len(target) > 1 and target[0] == "kernelflow":
                yield target[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("kernelflow."):
                    yield a.name.split(".")[1]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer):
    bad = []
    for path in (ROOT / "kernelflow" / layer).rglob("*.py"):
        for target in _kernelflow_imports(path):
            if target in ALLOWED and target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(ROOT)} imports kernelflow.{target}")
    assert not bad, "\n".join(bad)

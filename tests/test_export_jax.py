"""Every exported catalog op in JAX: jax.test_util.check_grads, jit, vmap, equal to symdl's NumPy kernels
and to JAX's own autodiff of the textbook definition (jax.nn where it has the op)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
pytestmark = pytest.mark.jax  # run last: see conftest.py

import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import symdl.kernels as kernels  # noqa: E402
from symdl.catalog import ACTIVATIONS_AND_LOSSES  # noqa: E402
from symdl.catalog.spec import Op  # noqa: E402
from symdl.export import export_module  # noqa: E402
from symdl.export.forms import EXPORTED_KINDS, implementation_name  # noqa: E402
from symdl.sampling import draw_inputs, draw_params  # noqa: E402
from symdl.verify.ops import implementation_ulps  # noqa: E402
from tests.conftest import case_settings  # noqa: E402

EXPORTED = [op for op in ACTIVATIONS_AND_LOSSES.values() if op.kind in EXPORTED_KINDS]
CASES = [(op.name, variant) for op in EXPORTED for variant in op.formulas]

#: jax.nn's built-ins with PyTorch's semantics (same name, same default parameters).
JAX_BUILTINS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
                "softplus": jax.nn.softplus, "logsigmoid": jax.nn.log_sigmoid, "elu": jax.nn.elu,
                "selu": jax.nn.selu, "celu": jax.nn.celu, "softsign": jax.nn.soft_sign, "mish": jax.nn.mish,
                "relu6": jax.nn.relu6, "hardswish": jax.nn.hard_swish}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("export") / "ops_jax.py"
    export_module([op.name for op in EXPORTED], "jax", path)
    spec = importlib.util.spec_from_file_location("ops_jax_catalog", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ops_jax_catalog"] = module
    spec.loader.exec_module(module)
    return module


def _params(op: Op, variant: str, seed: int) -> dict[str, object]:
    params = draw_params(op, np.random.default_rng(seed), variant or None)
    if op.kind == "row":
        params["dim"] = 1
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "variant"), CASES)
def test_values_and_gradients_within_the_stated_ulp_bounds_of_mpmath(exported: ModuleType, name: str,
                                                                    variant: str, dtype: type) -> None:
    """The exported forward and VJP keep what ``symdl verify`` promises of the NumPy kernels: within the op's
    ulp bounds of the mpmath reference of the definition, on domain samples and at the extremes, in float32
    and float64 (JAX's functions, e.g. ndtr and log1p, must be as accurate as symdl's runtime). Jitted, as
    users run them: XLA's simplifier rewrites what eager execution computes as written ((1 + u) - 1 is u)."""
    op = ACTIVATIONS_AND_LOSSES[name]
    function = getattr(exported, name)

    def implementation(params: dict[str, object]):
        # one jitted function computes the value and the VJP: one compilation per batch shape, where called
        # eagerly every primitive compiles on its own
        wanted = [k for k, item in enumerate(op.inputs) if item.differentiable]

        def of(*inputs: jax.Array) -> jax.Array:
            return function(*inputs, **params)

        @jax.jit
        def value_and_vjp(grad: jax.Array, *inputs: jax.Array) -> tuple[jax.Array, list[jax.Array | None]]:
            floats = [k for k in wanted if jnp.issubdtype(inputs[k].dtype, jnp.floating)]  # not class indices

            def of_wanted(*values: jax.Array) -> jax.Array:
                full = list(inputs)
                for k, value in zip(floats, values):
                    full[k] = value
                return of(*full)

            out, pullback = jax.vjp(of_wanted, *(inputs[k] for k in floats))
            grads = pullback(grad)
            return out, [grads[floats.index(k)] if k in floats else None for k in range(len(inputs))]

        def forward(*inputs: np.ndarray) -> np.ndarray:
            arrays = [jnp.asarray(a) for a in inputs]
            shape = jax.eval_shape(of, *arrays)  # traced, not compiled
            return np.asarray(value_and_vjp(jnp.zeros(shape.shape, shape.dtype), *arrays)[0])

        def vjp(grad: np.ndarray, *inputs: np.ndarray) -> list[np.ndarray | None]:
            grads = value_and_vjp(jnp.asarray(grad), *(jnp.asarray(a) for a in inputs))[1]
            return [None if g is None else np.asarray(g) for g in grads]
        return forward, vjp

    forward_error, grad_error = implementation_ulps(op, variant, implementation, dtype, seed=3)
    tolerance = op.tolerance_for(variant)
    assert forward_error <= tolerance.forward_ulp, f"{name} {np.dtype(dtype).name}: forward {forward_error} ulp"
    assert grad_error <= tolerance.grad_ulp, f"{name} {np.dtype(dtype).name}: gradient {grad_error} ulp"


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_check_grads_jit_and_equal_numpy_kernels(exported: ModuleType, name: str, variant: str) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    params = _params(op, variant, 1)
    arrays = draw_inputs(op, np.random.default_rng(1), (3, 4))
    # class indices are integers: no gradient
    differentiable = [k for k, item in enumerate(op.inputs) if item.differentiable and arrays[k].dtype.kind == "f"]
    function = getattr(exported, name)

    def of_differentiable(*values: jax.Array) -> jax.Array:
        full = list(arrays)
        for k, value in zip(differentiable, values):
            full[k] = value
        return function(*full, **params)

    primals = tuple(jnp.asarray(arrays[k]) for k in differentiable)
    check_grads(of_differentiable, primals, order=1, modes=["rev"], eps=1e-6)
    out, pullback = jax.vjp(jax.jit(of_differentiable), *primals)
    upstream = np.random.default_rng(2).standard_normal(np.shape(out))
    grads = pullback(jnp.asarray(upstream))
    expected = getattr(kernels, name)(*arrays, **params)
    expected_grads = getattr(kernels, f"{name}_vjp")(upstream if np.ndim(expected) else float(upstream), *arrays,
                                                     **params)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-13, atol=1e-15)
    for got, k in zip(grads, differentiable):
        np.testing.assert_allclose(np.asarray(got), expected_grads[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "index", "params"), case_settings())
def test_parameter_cases_are_taken_and_equal_the_general_forms(exported: ModuleType, name: str, index: int,
                                                               params: dict) -> None:
    """Where a case's condition holds the exported function is the case's custom_vjp function, whose value
    and gradient (jitted) are the general function's, and pass check_grads."""
    op = ACTIVATIONS_AND_LOSSES[name]
    scalars = tuple(params[p.name] for p in op.params)
    case = getattr(exported, "_custom_" + implementation_name(op, "", len(op.fast_paths) + index))
    general = getattr(exported, "_custom_" + implementation_name(op, ""))
    x = jnp.asarray(np.concatenate([np.random.default_rng(index).standard_normal(40) * 3, [0.0, -0.0, 1e300, -1e300]]))

    def value_and_grad(function):  # noqa: ANN001, ANN202
        return jax.jit(jax.value_and_grad(lambda v: jnp.sum(function(v) * jnp.linspace(-2, 2, v.size))))(x)

    called = set(re.findall(r"_custom_\w+", str(jax.make_jaxpr(lambda v: getattr(exported, name)(v, **params))(x))))
    assert case.__name__ in called and all(n == case.__name__ or n.startswith(case.__name__ + "_") for n in called), called
    taken = value_and_grad(lambda v: getattr(exported, name)(v, **params))
    for got, want in zip(taken, value_and_grad(lambda v: general(v, *scalars))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-15, atol=0)
    check_grads(lambda v: getattr(exported, name)(v, **params), (x[:40],), order=1, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize("name", sorted(set(JAX_BUILTINS) & set(ACTIVATIONS_AND_LOSSES)))
def test_equal_to_jax_builtins_and_finite_at_extremes(exported: ModuleType, name: str) -> None:
    builtin = JAX_BUILTINS[name]
    x = jnp.asarray(np.concatenate([np.linspace(-6, 6, 25), [-1e30, -1000.0, -100.0, 100.0, 1000.0, 1e30]]))
    ours, theirs = getattr(exported, name), builtin
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-12, atol=1e-15)
    grad_ours = jax.grad(lambda v: ours(v).sum())(x)
    grad_theirs = jax.grad(lambda v: theirs(v).sum())(x)
    finite = np.isfinite(np.asarray(grad_theirs))
    np.testing.assert_allclose(np.asarray(grad_ours)[finite][:25], np.asarray(grad_theirs)[finite][:25], rtol=1e-11,
                               atol=1e-14)
    assert np.all(np.isfinite(np.asarray(grad_ours)[finite]))
    for dtype in (jnp.float32, jnp.float64):
        values = x.astype(dtype)
        assert ours(values).dtype == dtype and jax.grad(lambda v: ours(v).sum())(values).dtype == dtype


def test_vmap_matches_the_batched_call(exported: ModuleType) -> None:
    rows = jnp.asarray(np.random.default_rng(3).standard_normal((6, 5)))
    batched = jax.vmap(lambda r: exported.log_softmax(r, dim=0))(rows)
    np.testing.assert_allclose(batched, exported.log_softmax(rows, dim=1), rtol=1e-15)
    grads = jax.vmap(jax.grad(lambda r: exported.softplus(r, beta=2.0).sum()))(rows)
    np.testing.assert_allclose(grads, kernels.softplus_vjp(np.ones((6, 5)), np.asarray(rows), beta=2.0)[0],
                               rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_the_sinh_helper_is_within_3_ulp_where_xlas_is_not(exported: ModuleType, dtype: type) -> None:
    """log_cosh's stable form squares a sinh near 0; XLA's sinh is 5 ulp off there in float32 and hundreds
    of ulp beyond 80 in float64. The printed helper: within 3 ulp of mpmath from 0 to the overflow, both signs,
    both sides of its switch at |x| = 1; and it keeps the dtype."""
    import mpmath

    rng = np.random.default_rng(7)
    top = 89.0 if dtype == np.float32 else 709.0
    magnitudes = np.concatenate([10 ** rng.uniform(-30, 0, 500), rng.uniform(0.5, 2, 500), rng.uniform(2, top, 500),
                                 [0.999999, 1.0, 1.000001]])
    x = np.concatenate([magnitudes, -magnitudes]).astype(dtype)
    computed = np.asarray(jax.jit(exported._sinh)(jnp.asarray(x)))
    assert computed.dtype == dtype
    with mpmath.workdps(40):
        true = np.array([float(mpmath.sinh(mpmath.mpf(float(v)))) for v in x])
    assert np.all(np.isfinite(computed))
    errors = np.abs(computed.astype(np.float64) - true) / np.spacing(np.abs(true).astype(dtype)).astype(np.float64)
    assert errors.max() <= 3, (x[errors.argmax()], errors.max())
    xla = np.asarray(jax.jit(jnp.sinh)(jnp.asarray(x))).astype(np.float64)
    assert (np.abs(xla - true) / np.spacing(np.abs(true).astype(dtype))).max() > 4  # the premise


def test_generated_module_imports_jax_only(exported: ModuleType) -> None:
    source = Path(exported.__file__).read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"__future__", "math", "functools", "jax"}
    assert "Generated by" in source and "do not edit by hand" in source


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_with_weights_and_ignored_rows(exported: ModuleType, reduction: str) -> None:
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 4, 3))
    target = rng.integers(0, 4, (6, 3))
    target[0, 0] = target[3, 2] = -100
    weight = rng.uniform(0.5, 2.0, 4)
    params = {"weight": weight, "reduction": reduction, "label_smoothing": 0.2}
    out, pullback = jax.vjp(jax.jit(lambda x: exported.cross_entropy(x, target, **params)), jnp.asarray(logits))
    upstream = rng.standard_normal(np.shape(out))
    (grad,) = pullback(jnp.asarray(upstream))
    np.testing.assert_allclose(np.asarray(out), kernels.cross_entropy(logits, target, **params), rtol=1e-13)
    expected = kernels.cross_entropy_vjp(upstream if reduction == "none" else float(upstream), logits, target,
                                         **params)[0]
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.asarray(grad)[0, :, 0] == 0)


#: Class losses with class-index targets: (op, parameters, shape (N, C, ...)); an ``ignore_index`` that is a
#: class (2) ignores real rows.
GATHER_CASES = [
    ("nll_loss", {}, (7, 5)),
    ("nll_loss", {"weight": True, "ignore_index": 2}, (6, 5, 3)),
    ("cross_entropy", {}, (7, 5)),
    ("cross_entropy", {"label_smoothing": 0.1}, (6, 5, 3)),
    ("cross_entropy", {"weight": True, "label_smoothing": 0.3, "ignore_index": 2}, (6, 5, 3)),
    ("multi_margin_loss", {"p": 2, "margin": 0.7, "weight": True}, (7, 5)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(("name", "params", "shape"), GATHER_CASES)
def test_class_index_targets_gather_and_scatter(exported: ModuleType, name: str, params: dict,
                                                shape: tuple[int, ...], reduction: str, dtype: str) -> None:
    """Class-index targets take the gather form (a gather in the forward, a scatter-add in the backward, no
    one-hot rows), jitted, with PyTorch's built-in's values and gradients in float32 and float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    logits = (rng.standard_normal(shape) * 2).astype(dtype)
    target = rng.integers(0, shape[1], shape[:1] + shape[2:])
    if "ignore_index" in params:
        target.reshape(-1)[:2] = params["ignore_index"]
    params = dict(params, reduction=reduction)
    if params.get("weight"):
        params["weight"] = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    function = jax.jit(lambda x: getattr(exported, name)(x, target, **params))
    out, pullback = jax.vjp(function, jnp.asarray(logits))
    upstream = rng.standard_normal(np.shape(out)).astype(dtype)
    (grad,) = pullback(jnp.asarray(upstream))
    assert out.dtype == grad.dtype == np.dtype(dtype)
    x = torch.tensor(logits, requires_grad=True)
    torch_params = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}
    theirs = getattr(torch.nn.functional, name)(x, torch.tensor(target), **torch_params)
    (expected,) = torch.autograd.grad(theirs, x, torch.tensor(upstream))
    tolerance = {"rtol": 1e-12, "atol": 1e-14} if dtype == "float64" else {"rtol": 2e-5, "atol": 2e-6}
    np.testing.assert_allclose(np.asarray(out), theirs.detach().numpy(), **tolerance)
    np.testing.assert_allclose(np.asarray(grad), expected.numpy(), **tolerance)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda v: getattr(exported, name)(v, target, **params).sum()))(logits))
    assert "scatter-add" in jaxpr and "gather" in jaxpr


def test_gather_form_check_grads_and_vmap(exported: ModuleType) -> None:
    """The gather form's VJP passes check_grads, and vmap over a batch of problems equals each problem's call."""
    rng = np.random.default_rng(22)
    logits = jnp.asarray(rng.standard_normal((4, 6, 5)))
    target = jnp.asarray(rng.integers(0, 5, (4, 6)))
    weight = jnp.asarray(rng.uniform(0.5, 2.0, 5))
    for name in ("nll_loss", "cross_entropy", "multi_margin_loss"):
        function = getattr(exported, name)
        check_grads(lambda v, f=function: f(v, target[0], weight=weight), (logits[0],), order=1, modes=["rev"])
        batched = jax.vmap(jax.value_and_grad(lambda v, k, f=function: f(v, k, weight=weight)))(logits, target)
        for i in range(4):
            value, grad = jax.value_and_grad(lambda v, f=function, k=target[i]: f(v, k, weight=weight))(logits[i])
            np.testing.assert_allclose(batched[0][i], value, rtol=1e-14)
            np.testing.assert_allclose(batched[1][i], grad, rtol=1e-14, atol=1e-16)
    assert "_custom_cross_entropy_gather_fast0" in Path(exported.__file__).read_text()

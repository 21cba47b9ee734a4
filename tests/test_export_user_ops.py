"""User-defined ops exported to PyTorch and JAX, and the ``symdl export`` command.

Each user op is checked in the framework against the framework's own autograd
of the textbook definition (written here in plain torch / jax.numpy), against
finite differences (gradcheck / check_grads), and against the op's NumPy
kernels.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import mpmath
import numpy as np
import pytest

from symdl.cli import main
from symdl.export import UserOp, define_op, export_source


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def user_ops() -> dict[str, UserOp]:
    return {
        "swish_beta": define_op("swish_beta", "x * sigmoid(beta * x)", params={"beta": (1.0, (0.5, 2.0))}),
        "leaky_hinge": define_op("leaky_hinge", "where(x > 0, x, slope * x)", params={"slope": 0.1},
                                 kinks={0: "slope"}),
        "row_softmax": define_op("row_softmax", "exp(x) / rowsum(exp(x))", kind="row",
                                 stable="exp(x - rowmax(x)) / rowsum(exp(x - rowmax(x)))"),
        "pseudo_huber": define_op("pseudo_huber", "delta**2 * (sqrt(1 + ((input - target) / delta)**2) - 1)",
                                  inputs=("input", "target"), params={"delta": 1.0}, kind="loss"),
        "snake": define_op("snake", "x + sin(alpha * x)**2 / alpha", params={"alpha": (1.0, (0.5, 2.0))}),
        "atan_asinh": define_op("atan_asinh", "atan(x) + asinh(x)"),
        # written from the textbook: exported through the stable form define_op chooses, softplus(beta x) / beta
        "text_softplus": define_op("text_softplus", "log(1 + exp(beta * x)) / beta",
                                   params={"beta": (1.0, (0.5, 2.0))}),
        # a Gaussian: exported through exp_of_square, its square kept exact
        "gauss_bump": define_op("gauss_bump", "x * exp(-x**2 / 2)"),
    }


# --------------------------------------------------------------------------- PyTorch
@pytest.fixture(scope="module")
def torch_module(user_ops: dict[str, UserOp], tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("user") / "user_torch.py"
    path.write_text(export_source(list(user_ops.values()), "torch"))
    return _load(path, "user_torch_ops")


def _torch_references():
    import torch

    return {
        "swish_beta": (lambda x, beta=1.0: x * torch.sigmoid(beta * x), {"beta": 1.7}),
        "leaky_hinge": (lambda x, slope=0.1: torch.where(x > 0, x, slope * x), {"slope": 0.3}),
        "row_softmax": (lambda x, dim=None: torch.exp(x) / torch.exp(x).sum(dim, keepdim=True), {"dim": 1}),
        "pseudo_huber": (lambda a, b, delta=1.0, reduction="mean":
                         (delta**2 * (torch.sqrt(1 + ((a - b) / delta) ** 2) - 1)).mean(), {"delta": 0.6}),
        "snake": (lambda x, alpha=1.0: x + torch.sin(alpha * x) ** 2 / alpha, {"alpha": 0.7}),
        "atan_asinh": (lambda x: torch.atan(x) + torch.asinh(x), {}),
        "text_softplus": (lambda x, beta=1.0: torch.log1p(torch.exp(beta * x)) / beta, {"beta": 1.6}),
        "gauss_bump": (lambda x: x * torch.exp(-x**2 / 2), {}),
    }


@pytest.mark.parametrize("name", ["swish_beta", "leaky_hinge", "row_softmax", "pseudo_huber", "snake",
                                  "atan_asinh", "text_softplus", "gauss_bump"])
def test_torch_gradcheck_and_values(torch_module: ModuleType, user_ops: dict[str, UserOp], name: str) -> None:
    import torch

    reference, params = _torch_references()[name]
    user = user_ops[name]
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-3, 3, (4, 5)) for _ in user.op.inputs]
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    function = getattr(torch_module, name)
    assert torch.autograd.gradcheck(lambda *t: function(*t, **params), tuple(tensors))
    out = function(*tensors, **params)
    upstream = torch.tensor(rng.standard_normal(tuple(out.shape)))
    grads = torch.autograd.grad(out, tensors, upstream)
    copies = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = reference(*copies, **params)
    expected_grads = torch.autograd.grad(expected, copies, upstream)
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-15)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.detach().numpy(), user.forward(*arrays, **params), rtol=1e-14, atol=1e-16)
    for got, want in zip(grads, user.vjp(upstream.numpy() if out.dim() else float(upstream), *arrays, **params)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["swish_beta", "leaky_hinge", "row_softmax", "pseudo_huber", "snake",
                                  "atan_asinh", "text_softplus", "gauss_bump"])
def test_every_torch_user_op_compiles_to_one_graph_with_the_eager_values(torch_module: ModuleType,
                                                                        user_ops: dict[str, UserOp], name: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each exported user op traces whole under torch.compile (a graph break or an eager fallback raises), in
    float32 and float64, and its traced plain form gives the eager in-place values and gradients bit for bit
    (the fused C++ loops off: they round otherwise, tests/test_export_fused.py)."""
    import torch

    monkeypatch.setitem(torch_module._FUSED_STATE, "library", None)

    _, params = _torch_references()[name]
    function = getattr(torch_module, name)
    rng = np.random.default_rng(4)
    arrays = [rng.uniform(-3, 3, (4, 5)) for _ in user_ops[name].op.inputs]
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        compiled = torch.compile(lambda *t: function(*t, **params), backend="aot_eager", fullgraph=True)
        for dtype in (torch.float32, torch.float64):
            traced = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
            eager = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
            out, expected = compiled(*traced), function(*eager, **params)
            torch.testing.assert_close(out, expected, rtol=0, atol=0)
            upstream = torch.ones_like(expected)
            for got, want in zip(torch.autograd.grad(out, traced, upstream),
                                 torch.autograd.grad(expected, eager, upstream)):
                torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_torch_user_op_under_compile_and_as_module(torch_module: ModuleType) -> None:
    import torch

    torch._dynamo.reset()
    layer = torch_module.SwishBeta(beta=1.5)
    assert isinstance(layer, torch.nn.Module)
    compiled = torch.compile(lambda x: layer(x).square().sum(), backend="aot_eager", fullgraph=True)
    x = torch.linspace(-4, 4, 12, dtype=torch.float32, requires_grad=True)
    value = compiled(x)
    (grad,) = torch.autograd.grad(value, x)
    y = x.detach().clone().requires_grad_(True)
    plain = (y * torch.sigmoid(1.5 * y)).square().sum()
    (expected,) = torch.autograd.grad(plain, y)
    assert value.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(value, plain)
    torch.testing.assert_close(grad, expected)


def test_torch_extremes_finite_where_the_naive_form_overflows(torch_module: ModuleType) -> None:
    import torch

    x = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float32, requires_grad=True)
    out = torch_module.row_softmax(x, dim=1)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out))
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(grad).all())
    torch.testing.assert_close(out, torch.softmax(x.detach(), dim=1))




@pytest.mark.parametrize("framework", ["torch", pytest.param("jax", marks=pytest.mark.jax)])
def test_primitives_of_parameters_alone_are_python_floats(framework: str, tmp_path: Path) -> None:
    """sigmoid(a) of a parameter a is a Python float: torch.sigmoid refuses one (a TypeError in the exported
    module), so the module computes it with its own stable float helpers, checked here against mpmath, in the
    tails too (each primitive in an op of its own, so that no other term hides its error)."""
    import mpmath
    import sympy as sp

    from symdl.functions import normal_cdf, sigmoid, softplus, xlogy

    module = pytest.importorskip(framework)
    if framework == "jax":
        module.config.update("jax_enable_x64", True)
    x_, a_ = sp.symbols("x a")  # bound to the ops' symbols by name; xlogy only as SymPy (the parser has no xlogy)
    cases = {  # name: (the op's factor of x, the same in mpmath)
        "p_sigmoid": (sigmoid(a_), lambda a: 1 / (1 + mpmath.exp(-a))),
        "p_softplus": (softplus(a_), lambda a: mpmath.log1p(mpmath.exp(a))),
        "p_normal_cdf": (normal_cdf(a_), mpmath.ncdf),
        "p_xlogy": (xlogy(a_**2, a_**2 + 1), lambda a: a**2 * mpmath.log(a**2 + 1)),
    }
    ops = [define_op(name, x_ * factor, params={"a": -1.5}) for name, (factor, _) in cases.items()]
    path = tmp_path / f"of_params_{framework}.py"
    path.write_text(export_source(ops, framework))
    exported = _load(path, f"of_params_{framework}")
    x = np.array([1.0, -2.0])
    tensor = module.tensor(x) if framework == "torch" else module.numpy.asarray(x)
    for name, (_, exact) in cases.items():
        for a in (-30.0, 2.5):
            with mpmath.workdps(50):
                expected = x * float(exact(mpmath.mpf(a)))
            # a's rounding inside (a / sqrt 2 for the normal CDF) is amplified by the condition number, ~a^2
            np.testing.assert_allclose(np.asarray(getattr(exported, name)(tensor, a=a)), expected,
                                       rtol=4e-16 * (1 + a * a), err_msg=f"{name} at a = {a}")

#: Square roots of sums of squares (and a reciprocal of one, in a gradient), with mpmath's value and
#: derivative: printed as hypot, they stay accurate where the squares overflow (|x| > 1.8e19 in float32,
#: 1.3e154 in float64) and the root does not.
_ROOTS = {
    "root_pseudo_huber": ("sqrt(1 + x**2) - 1", lambda v: mpmath.sqrt(1 + v * v) - 1,
                          lambda v: v / mpmath.sqrt(1 + v * v)),
    "root_asinh": ("asinh(x)", mpmath.asinh, lambda v: 1 / mpmath.sqrt(1 + v * v)),
    "root_scaled": ("sqrt((x / 3)**2 + 4)", lambda v: mpmath.sqrt((v / 3) ** 2 + 4),
                    lambda v: v / 9 / mpmath.sqrt((v / 3) ** 2 + 4)),
    "root_arctan": ("atan(x)", mpmath.atan, lambda v: 1 / (1 + v * v)),  # the gradient as hypot(x, 1)^-2
}


@pytest.mark.parametrize("framework", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.jax)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_square_roots_of_sums_of_squares_stay_accurate_where_the_squares_overflow(framework: str, dtype: str,
                                                                                   tmp_path: Path) -> None:
    """Values and gradients within 4 ulp of mpmath from 1 to the largest floats, in the NumPy kernels and in
    both exports, with no overflow warning: written as squares, sqrt(1 + x^2) was inf and its gradient
    x / inf = 0 (the pseudo-Huber gradient is +-1 there)."""
    ops = [define_op(name, text) for name, (text, _, _) in _ROOTS.items()]
    x = np.array([1.0, -3.5, 1e19, -1e20, 1e30, 3e38] + ([1e160, -1e200, 1e307] if dtype == "float64" else []),
                 dtype=dtype)
    run = _value_and_grad_runners(ops, framework, tmp_path / "roots")
    for name, (_, value, derivative) in _ROOTS.items():
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is no error (NumPy's default)
            out, grad = run[name](x)
        assert out.dtype == grad.dtype == x.dtype
        for got, exact in ((out, value), (grad, derivative)):
            with mpmath.workprec(200):
                true = np.array([float(exact(mpmath.mpf(float(v)))) for v in x])
            ulps = np.abs(got - true) / np.spacing(true.astype(dtype)).astype(np.float64)
            # XLA on the CPU flushes subnormal results to 0 (1 / hypot(3e38, 1) in float32): JAX's arithmetic
            flushed = (framework == "jax") & (got == 0) & (np.abs(true) < np.finfo(dtype).smallest_normal)
            assert np.max(np.where(flushed, 0, ulps)) <= 4, f"{name} {dtype}: {got} against {true}"


#: name: (definition, value, gradient, the Gaussian factor, the size of the gradient's terms: its error's scale
#: where they cancel, at the bump's gradient's roots x = +-1)
_GAUSSIANS = {
    "gauss": ("exp(-x**2)", lambda v: mpmath.exp(-v * v), lambda v: -2 * v * mpmath.exp(-v * v),
              lambda v: mpmath.exp(-v * v), lambda v: 0),
    "gauss_bump": ("x * exp(-x**2 / 2)", lambda v: v * mpmath.exp(-v * v / 2),
                   lambda v: (1 - v * v) * mpmath.exp(-v * v / 2), lambda v: mpmath.exp(-v * v / 2),
                   lambda v: (1 + v * v) * mpmath.exp(-v * v / 2)),
    # -1/9 is not a float: the kernels take it as two
    "gauss_scaled": ("exp(-(x / 3)**2)", lambda v: mpmath.exp(-v * v / 9), lambda v: -2 * v / 9 * mpmath.exp(-v * v / 9),
                     lambda v: mpmath.exp(-v * v / 9), lambda v: 0),
}


@pytest.mark.parametrize("framework", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.jax)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gaussians_keep_their_squares_exact(framework: str, dtype: str, tmp_path: Path) -> None:
    """Values and gradients within 4 ulp of mpmath over the Gaussian's whole normal range, in the NumPy kernels
    and in both exports (symdl.functions.exp_of_square), and finite to the largest floats; e^(-x^2) from the
    rounded square is hundreds of ulp off in float64 (checked here: the premise)."""
    ops = [define_op(name, entry[0]) for name, entry in _GAUSSIANS.items()]
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-38, 38, 300), rng.uniform(-84, 84, 100), [0.0, 1e-3, 6.6, -26.5, 1e19, -1e30]]
                       ).astype(dtype)
    run = _value_and_grad_runners(ops, framework, tmp_path / "gaussians")
    normal = np.finfo(dtype).smallest_normal

    def at_x(function: Callable[[mpmath.mpf], mpmath.mpf]) -> np.ndarray:
        with mpmath.workdps(60):
            return np.array([float(function(mpmath.mpf(float(v)))) for v in x])

    for name, (_, value, derivative, gaussian, terms) in _GAUSSIANS.items():
        assert op_stable_form_uses(ops, name, "exp_of_square")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out, grad = run[name](x)
        assert out.dtype == grad.dtype == x.dtype
        # where the Gaussian itself is subnormal it has fewer bits (XLA flushes it to 0): not checked
        normal_gaussian = at_x(gaussian) >= normal
        for got, true, scale in ((out, at_x(value), 0), (grad, at_x(derivative), at_x(terms))):
            assert np.all(np.isfinite(got))
            unit = np.spacing(np.maximum(np.abs(true), scale).astype(dtype)).astype(np.float64)
            ulps = np.where(normal_gaussian & (np.abs(true) >= normal), np.abs(got - true) / unit, 0)
            assert np.max(ulps) <= 4, f"{name} {dtype}: {np.max(ulps)} ulp at x = {x[np.argmax(ulps)]}"
    if dtype == "float64":
        with mpmath.workdps(60):
            true = np.array([float(mpmath.exp(-mpmath.mpf(float(v)) ** 2)) for v in x])
        with np.errstate(all="ignore"):
            naive = np.exp(-x * x)
        keep = true >= normal
        assert np.max(np.abs(naive - true)[keep] / np.spacing(true[keep])) > 100


@pytest.mark.parametrize("framework", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.jax)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gaussian_of_a_difference_adds_it_exactly(framework: str, dtype: str, tmp_path: Path) -> None:
    """exp(-(x - y)^2) as a loss: value and both gradients within 4 ulp of mpmath, in the NumPy kernels and both
    exports, where the rounding of x - y alone puts e^(-(x - y)^2) hundreds of ulp off (checked: the premise)."""
    op = define_op("rbf_pair", "exp(-(x - y)**2)", inputs=("x", "y"), kind="loss")
    assert op_stable_form_uses([op], "rbf_pair", "exp_of_square")
    rng = np.random.default_rng(6)
    # independent normal draws (full mantissas; uniform(-8, 8) draws are multiples of 2^-49, whose differences
    # are exact in float64): x - y rounds where their magnitudes differ (Sterbenz: exact within a factor 2)
    x, y = (3 * rng.standard_normal(600).astype(dtype) for _ in range(2))
    if framework == "numpy":
        out = op.forward(x, y, reduction="none")
        grads = op.vjp(np.ones_like(x), x, y, reduction="none")
    else:
        module = pytest.importorskip(framework)
        path = tmp_path / f"pair_{framework}.py"
        path.write_text(export_source([op], framework))
        function = _load(path, f"pair_{framework}").rbf_pair
        if framework == "torch":
            tensors = [module.tensor(a, requires_grad=True) for a in (x, y)]
            value = function(*tensors, reduction="none")
            grads = [g.numpy() for g in module.autograd.grad(value, tensors, module.ones_like(value))]
            out = value.detach().numpy()
        else:
            module.config.update("jax_enable_x64", True)
            value, pullback = module.vjp(module.jit(lambda a, b: function(a, b, reduction="none")),
                                         module.numpy.asarray(x), module.numpy.asarray(y))
            out, grads = np.asarray(value), [np.asarray(g) for g in pullback(module.numpy.ones_like(value))]
    with mpmath.workdps(60):
        d = [mpmath.mpf(float(a)) - mpmath.mpf(float(b)) for a, b in zip(x, y)]
        true = np.array([float(mpmath.exp(-t * t)) for t in d])
        true_dx = np.array([float(-2 * t * mpmath.exp(-t * t)) for t in d])
    normal = np.abs(true) >= np.finfo(dtype).smallest_normal
    for got, want in ((out, true), (grads[0], true_dx), (grads[1], -true_dx)):
        assert got.dtype == x.dtype
        ulps = np.abs(got - want)[normal] / np.spacing(np.abs(want).astype(dtype))[normal]
        assert np.max(ulps) <= 4, np.max(ulps)
    with np.errstate(all="ignore"):
        naive = np.exp(-np.square(x - y))
    assert np.max(np.abs(naive - true)[normal] / np.spacing(true.astype(dtype))[normal]) > 8


@pytest.mark.parametrize("framework", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.jax)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gaussian_with_a_width_keeps_its_quotient_exact(framework: str, dtype: str, tmp_path: Path) -> None:
    """An RBF with a width parameter, exp(-x^2 / (2 s^2)): value and gradient within 4 ulp of mpmath (s as the
    dtype holds it, as the kernels use it) in the NumPy kernels and both exports, and finite at the extremes;
    e^(-(x/s)^2/2) from the rounded quotient is hundreds of ulp off in float64 (checked: the premise)."""
    op = define_op("rbf_width", "exp(-x**2 / (2 * s**2))", params={"s": 0.3})
    assert op_stable_form_uses([op], "rbf_width", "exp_of_square")
    rng = np.random.default_rng(8)
    x = np.concatenate([0.3 * rng.standard_normal(300), 0.3 * rng.uniform(-37, 37, 300), [0.0, 1e19, -1e30]]
                       ).astype(dtype)
    out, grad = _value_and_grad_runners([op], framework, tmp_path / "width")["rbf_width"](x)
    assert out.dtype == grad.dtype == x.dtype and np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    with mpmath.workdps(60):
        s = mpmath.mpf(float(np.dtype(dtype).type(0.3)))
        true = np.array([float(mpmath.exp(-(mpmath.mpf(float(v)) / s) ** 2 / 2)) for v in x])
        true_grad = np.array([float(-mpmath.mpf(float(v)) / s**2 * mpmath.exp(-(mpmath.mpf(float(v)) / s) ** 2 / 2))
                              for v in x])
    normal = true >= np.finfo(dtype).smallest_normal
    for got, want in ((out, true), (grad, true_grad)):
        ulps = np.abs(got - want)[normal] / np.spacing(np.abs(want).astype(dtype))[normal]
        assert np.max(ulps) <= 4, np.max(ulps)
    if dtype == "float64":
        naive = np.exp(-np.square(x / 0.3) / 2)
        assert np.max(np.abs(naive - true)[normal] / np.spacing(true[normal])) > 50


@pytest.mark.parametrize("framework", ["numpy", "torch", pytest.param("jax", marks=pytest.mark.jax)])
def test_a_float16_gaussian_is_computed_in_float32_and_returned_in_float16(framework: str, tmp_path: Path) -> None:
    """The halves of a float16 square of up to 800 * 36 times 65 overflow float16 (NaN where the value is 0); the
    Gaussian is computed in float32 and rounded once to float16: each value the nearest float16 (or next to it)."""
    op = define_op("gauss_wide", "exp(-x**2 / 36)")
    x = np.array([0.0, 0.5, 1.0, 3.0, -7.5, 12.0, 30.0, 100.0, -1e4, 6e4], dtype=np.float16)
    out, grad = _value_and_grad_runners([op], framework, tmp_path / "half")["gauss_wide"](x)
    assert out.dtype == grad.dtype == np.float16
    with mpmath.workdps(30):
        true = np.array([float(mpmath.exp(-mpmath.mpf(float(v)) ** 2 / 36)) for v in x])
    assert np.all(np.abs(out.astype(np.float64) - true) <= np.spacing(true.astype(np.float16)).astype(np.float64))
    assert np.all(np.isfinite(grad))


def op_stable_form_uses(ops: list[UserOp], name: str, function: str) -> bool:
    """The op ``name`` of ``ops`` computes a stable form that calls ``function``."""
    op = next(o for o in ops if o.name == name)
    return function in str(op.op.formula().stable)


def _value_and_grad_runners(ops: list[UserOp], framework: str, stem: Path) -> dict:
    """For each op, a function of a NumPy array giving its value and gradient (an upstream gradient of ones) as
    NumPy arrays: the NumPy kernels', or through the framework's autograd on the ops exported to it (skipped
    when the framework is not installed)."""
    if framework == "numpy":
        return {op.name: (lambda op: lambda v: (op.forward(v), op.vjp(np.ones_like(v), v)[0]))(op) for op in ops}
    module = pytest.importorskip(framework)
    path = stem.with_name(f"{stem.name}_{framework}.py")
    path.write_text(export_source(ops, framework))
    exported = _load(path, path.stem)
    return {op.name: _framework_value_and_grad(framework, module, getattr(exported, op.name)) for op in ops}


def _framework_value_and_grad(framework: str, module: ModuleType, function):
    """The op's value and gradient on a NumPy array, through the framework's autograd, as NumPy arrays."""
    if framework == "torch":
        def run(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            tensor = module.tensor(v, requires_grad=True)
            out = function(tensor)
            (grad,) = module.autograd.grad(out, tensor, module.ones_like(out))
            return out.detach().numpy(), grad.numpy()
        return run
    module.config.update("jax_enable_x64", True)

    def run_jax(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out, pullback = module.vjp(module.jit(function), module.numpy.asarray(v))
        return np.asarray(out), np.asarray(pullback(module.numpy.ones_like(out))[0])
    return run_jax


#: Ops written with max and min, each with PyTorch's value at its ties: the built-in that has them.
_TIE_OPS = {
    "max_hardtanh": (("min(max(x, -1), 1)", {-1: 0, 1: 0}), "torch.nn.functional.hardtanh"),
    "max_relu6": (("min(max(x, 0), 6)", {0: 0, 6: 0}), "torch.nn.functional.relu6"),
    "max_split": (("max(x, 0)", {0: "1/2"}), "torch.maximum"),  # an even split at the tie
}


@pytest.fixture(scope="module")
def tie_ops() -> dict[str, UserOp]:
    return {name: define_op(name, definition, kinks=kinks) for name, ((definition, kinks), _) in _TIE_OPS.items()}


@pytest.mark.parametrize("name", list(_TIE_OPS))
def test_max_and_min_ops_export_pytorchs_values_at_their_ties(tie_ops: dict[str, UserOp], name: str,
                                                              tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / f"{name}_torch.py"
    path.write_text(export_source([tie_ops[name]], "torch"))
    function = getattr(_load(path, f"{name}_torch"), name)
    builtin = {"torch.nn.functional.hardtanh": torch.nn.functional.hardtanh,
               "torch.nn.functional.relu6": torch.nn.functional.relu6,
               "torch.maximum": lambda x: torch.maximum(x, torch.zeros_like(x))}[_TIE_OPS[name][1]]
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-7.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 8.0], dtype=dtype, requires_grad=True)
        upstream = torch.linspace(0.5, 2.0, x.numel(), dtype=dtype)
        (grad,) = torch.autograd.grad(function(x), x, upstream)
        copy = x.detach().clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(builtin(copy), copy, upstream)
        assert grad.dtype == dtype
        torch.testing.assert_close(grad, expected, rtol=0, atol=0)
        np.testing.assert_array_equal(grad.numpy(), tie_ops[name].vjp(upstream.numpy(), x.detach().numpy())[0])



@pytest.mark.jax
def test_max_and_min_ops_in_jax_take_the_same_values_at_their_ties(tie_ops: dict[str, UserOp], tmp_path: Path) -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    path = tmp_path / "ties_jax.py"
    path.write_text(export_source(list(tie_ops.values()), "jax"))
    module = _load(path, "ties_jax")
    x = np.array([-7.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 8.0])
    upstream = np.linspace(0.5, 2.0, x.size)
    for name, user in tie_ops.items():  # the NumPy kernels' values at the ties are PyTorch's (the test above)
        _, pullback = jax.vjp(jax.jit(getattr(module, name)), jax.numpy.asarray(x))
        (grad,) = pullback(jax.numpy.asarray(upstream))
        np.testing.assert_array_equal(np.asarray(grad), user.vjp(upstream, x)[0], err_msg=name)

# --------------------------------------------------------------------------- JAX
@pytest.fixture(scope="module")
def jax_module(user_ops: dict[str, UserOp], tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    path = tmp_path_factory.mktemp("user") / "user_jax.py"
    path.write_text(export_source(list(user_ops.values()), "jax"))
    return _load(path, "user_jax_ops")


@pytest.mark.jax
@pytest.mark.parametrize("name", ["swish_beta", "leaky_hinge", "row_softmax", "pseudo_huber", "snake",
                                  "atan_asinh", "text_softplus", "gauss_bump"])
def test_jax_check_grads_jit_vmap(jax_module: ModuleType, user_ops: dict[str, UserOp], name: str) -> None:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    user = user_ops[name]
    params = {"row_softmax": {"dim": 1}}.get(name, {})
    rng = np.random.default_rng(1)
    arrays = [rng.uniform(-3, 3, (4, 5)) for _ in user.op.inputs]
    function = getattr(jax_module, name)
    check_grads(lambda *a: function(*a, **params), tuple(jnp.asarray(a) for a in arrays), order=1, modes=["rev"])
    out, pullback = jax.vjp(jax.jit(lambda *a: function(*a, **params)), *(jnp.asarray(a) for a in arrays))
    upstream = rng.standard_normal(np.shape(out))
    grads = pullback(jnp.asarray(upstream))
    np.testing.assert_allclose(np.asarray(out), user.forward(*arrays, **params), rtol=1e-14, atol=1e-16)
    for got, want in zip(grads, user.vjp(upstream if np.ndim(out) else float(upstream), *arrays, **params)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-13, atol=1e-15)
    if user.op.kind == "elementwise":
        batched = jax.vmap(jax.grad(lambda v: function(v, **params)))(jnp.asarray(arrays[0]).ravel())
        np.testing.assert_allclose(np.asarray(batched), user.vjp(np.ones(20), arrays[0].ravel(), **params)[0],
                                   rtol=1e-14)


# --------------------------------------------------------------------------- the command
def test_export_command_from_names_and_from_a_file(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "ops_torch.py"
    assert main(["export", "relu,softmax,mse_loss", "--to", "torch", "-o", str(out)]) == 0
    module = _load(out, "cli_ops_torch")
    assert {"relu", "softmax", "mse_loss", "ReluFunction", "Softmax"} <= set(module.__all__)
    assert "symdl export relu,softmax,mse_loss --to torch -o ops_torch.py" in out.read_text()
    definitions = tmp_path / "my_ops.py"
    definitions.write_text("import symdl\nsquareplus = symdl.define_op('squareplus', '(x + sqrt(x**2 + 4)) / 2')\n")
    out_user = tmp_path / "user_torch.py"
    assert main(["export", str(definitions), "--to", "torch", "-o", str(out_user)]) == 0
    import torch

    squareplus = _load(out_user, "cli_user_torch").squareplus
    x = torch.linspace(-3, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(squareplus, (x,))


@pytest.mark.parametrize(("argv", "message"), [
    (["export", "no_such_op", "--to", "torch", "-o", "x.py"], "no op named 'no_such_op'"),
    (["export", "missing.py", "--to", "torch", "-o", "x.py"], "no definitions file 'missing.py'"),
    (["export", "relu,relu", "--to", "jax", "-o", "x.py"], "an op is exported twice: relu"),
    (["export", "relu", "--to", "torch", "-o", "nodir/x.py"], "no directory 'nodir'"),
    (["export", "raises.py", "--to", "torch", "-o", "x.py"],
     "raises.py: running the definitions failed: ZeroDivisionError: division by zero"),
    (["kernels", "--from", "raises.py", "-o", "x.py"], "running the definitions failed"),
    (["kernels", "--from", "raises.py"], "kernels: --from FILE.py and -o OUT.py go together"),
    (["export", "relu", "--to", "tensorflow", "-o", "x.py"], "invalid choice"),
])
def test_export_command_bad_input(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raises.py").write_text("import symdl\nx = 1 / 0\n")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.py").exists()


def test_export_is_deterministic(user_ops: dict[str, UserOp]) -> None:
    for target in ("torch", "jax"):
        first = export_source([*user_ops.values(), "gelu", "cross_entropy"], target)
        assert first == export_source([*user_ops.values(), "gelu", "cross_entropy"], target)
        compile(first, f"<{target}>", "exec")  # valid Python even where the framework is not installed

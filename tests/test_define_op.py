"""symdl.define_op: a user's definition -> a catalog entry, proofs, NumPy kernels, verify row, LaTeX.

Ground truth from outside the code under test: mpmath evaluations of the
textbook definitions, finite differences (symdl.check.gradcheck), and the
catalog's own hand-checked kernels where the user redefines a catalog op.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

import symdl
import symdl.kernels as kernels
from symdl.catalog.spec import Op
from symdl.cli import main
from symdl.errors import SymdlError
from symdl.export import DefinitionError, UserOp, define_op


@pytest.fixture(scope="module")
def swish() -> UserOp:
    return define_op("swish_beta", "x * sigmoid(beta * x)", params={"beta": (1.0, (0.5, 2.0))})


def test_exported_from_the_package() -> None:
    square = symdl.define_op("half_square", "x**2 / 2")
    assert isinstance(square, UserOp)
    np.testing.assert_array_equal(square.vjp(np.ones(2), np.array([-1.5, 2.0]))[0], [-1.5, 2.0])


def test_elementwise_entry_is_a_catalog_op_with_proofs(swish: UserOp) -> None:
    assert isinstance(swish.op, Op) and swish.op.kind == "elementwise" and swish.op.family == "activation"
    assert [p.name for p in swish.op.params] == ["beta"] and swish.op.params[0].default == 1.0
    x, beta = sp.symbols("x beta", real=True)
    derived = swish.derived["x"]
    expected = sp.diff(x / (1 + sp.exp(-beta * x)), x)
    assert sp.simplify((derived - expected).rewrite(sp.exp)) == 0


def _kernel_values(op: UserOp, x: np.ndarray, **params: float) -> Iterator[tuple[mpmath.mpf, float, float]]:
    """Each point as a 50-digit mpmath number, with the op's forward and gradient there (the reference is
    computed in the loop's body, still at 50 digits)."""
    out = op(x, **params)
    (grad,) = op.vjp(np.ones_like(x), x, **params)
    with mpmath.workdps(50):
        for xi, yi, gi in zip(x, out, grad):
            yield mpmath.mpf(float(xi)), float(yi), float(gi)


def test_forward_and_vjp_match_mpmath(swish: UserOp) -> None:
    beta = 1.3
    for xm, y, grad in _kernel_values(swish, np.array([-30.0, -2.5, -0.1, 0.0, 0.7, 3.0, 40.0]), beta=beta):
        s = 1 / (1 + mpmath.exp(-beta * xm))
        # beta * x is rounded before exp: exp's condition number |beta x| scales that one rounding
        rel = 4 * 2.0**-53 * (1 + abs(beta * float(xm)))
        assert float(xm * s) == pytest.approx(y, rel=rel, abs=1e-300)
        assert float(s + beta * xm * s * (1 - s)) == pytest.approx(grad, rel=4 * rel, abs=1e-300)


def test_stays_finite_and_keeps_float32(swish: UserOp) -> None:
    x = np.array([-1e30, -1000.0, 1000.0, 1e30], dtype=np.float32)
    with np.errstate(all="raise", under="ignore"):
        out = swish(x)
        (grad,) = swish.vjp(np.ones_like(x), x)
    assert out.dtype == np.float32 and grad.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))


def test_verify_row_passes(swish: UserOp) -> None:
    row = swish.verify()
    assert row.op == "swish_beta" and row.passed, row
    assert row.fd_error < 1e-6 and row.forward_ulp <= 4


def test_gradcheck_and_latex(swish: UserOp) -> None:
    report = swish.gradcheck(np.linspace(-3, 3, 7), beta=0.8)
    assert report.passed
    latex = swish.latex()
    assert r"\operatorname{sigmoid}" in latex or r"\sigma" in latex
    assert r"\frac{\partial y}{\partial x}" in latex


def test_same_kernel_as_the_catalog_for_a_catalog_formula() -> None:
    mish = define_op("my_mish", "x * tanh(softplus(x))")
    x = np.linspace(-20, 20, 101)
    np.testing.assert_allclose(mish(x), kernels.mish(x), rtol=4e-16, atol=1e-300)
    np.testing.assert_allclose(mish.vjp(np.ones_like(x), x)[0], kernels.mish_vjp(np.ones_like(x), x)[0],
                               rtol=1e-14, atol=1e-300)


def test_sympy_expression_and_kinks() -> None:
    x = sp.Symbol("x")  # no assumptions: bound to the op's real symbol by name
    op = define_op("my_relu", sp.Piecewise((0, x <= 0), (x, True)), kinks={0: 0})
    (grad,) = op.vjp(np.ones(3), np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0])
    assert any(p.claim.startswith("subgradient at 0") and p.holds for p in op.proofs)



@pytest.mark.parametrize(("definition", "kinks", "catalog"), [
    ("max(x, 0)", {0: 0}, "relu"),
    ("min(max(x, -1), 1)", {-1: 0, 1: 0}, "hardtanh"),
    ("min(max(x, 0), 6)", {0: 0, 6: 0}, "relu6"),
    ("max(x, 0.01 * x)", {0: 0.01}, "leaky_relu"),
], ids=["relu", "hardtanh", "relu6", "leaky_relu"])
def test_max_and_min_take_the_declared_subgradient_at_their_ties(definition: str, kinks: dict, catalog: str) -> None:
    # SymPy differentiates max(x, 0) to Heaviside(x), which is 1/2 at 0 and which no kernel prints; the step's
    # value at the tie is chosen to give the declared subgradient. The catalog's kernels (PyTorch's subgradients,
    # verified against torch.nn.functional) are the reference, at the kinks and away from them.
    op = define_op(f"my_{catalog}", definition, kinks=kinks)
    x = np.array([-7.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 8.0])
    g = np.linspace(0.5, 2.0, x.size)
    np.testing.assert_array_equal(op(x), getattr(kernels, catalog)(x))
    np.testing.assert_allclose(op.vjp(g, x)[0], getattr(kernels, f"{catalog}_vjp")(g, x)[0], rtol=1e-15, atol=0)
    assert all(p.holds for p in op.proofs if p.claim.startswith("subgradient"))



def test_nested_where_matches_the_catalog_softshrink() -> None:
    # a where inside a where's branch (sympy.piecewise_fold refuses the bare pair it was handed: a TypeError)
    op = define_op("my_softshrink", "where(x > 0.5, x - 0.5, where(x < -0.5, x + 0.5, 0))", kinks={0.5: 0, -0.5: 0})
    x = np.array([-4.0, -0.5, -0.2, 0.0, 0.5, 1.0])
    g = np.linspace(0.5, 2.0, x.size)
    np.testing.assert_array_equal(op(x), kernels.softshrink(x))
    np.testing.assert_array_equal(op.vjp(g, x)[0], kernels.softshrink_vjp(g, x)[0])

def test_a_tie_takes_either_side_and_nothing_else() -> None:
    right = define_op("relu_right", "max(x, 0)", kinks={0: 1})
    np.testing.assert_array_equal(right.vjp(np.ones(3), np.array([-1.0, 0.0, 1.0]))[0], [0.0, 1.0, 1.0])
    both = define_op("upper", "max(x, x**2)", kinks={0: 0, 1: 2})  # x**2's side at 0 and at 1
    np.testing.assert_array_equal(both.vjp(np.ones(5), np.array([-1.0, 0.0, 0.5, 1.0, 2.0]))[0],
                                  [-2.0, 0.0, 1.0, 2.0, 4.0])
    assert both.gradcheck(np.array([-1.5, 0.25, 0.75, 3.0])).passed
    half = define_op("half", "max(x, 0)", kinks={0: sp.Rational(1, 2)})  # torch.maximum's split at a tie
    np.testing.assert_array_equal(half.vjp(np.ones(3), np.array([-1.0, 0.0, 1.0]))[0], [0.0, 0.5, 1.0])
    with pytest.raises(DefinitionError, match="outside: not differentiable where claimed: subgradient at 0 = 2"):
        define_op("outside", "max(x, 0)", kinks={0: 2})  # neither side, nor between them


def test_hinge_loss_from_max_has_both_gradients() -> None:
    hinge = define_op("my_hinge", "max(0, 1 - x * y)", inputs=("x", "y"), kind="loss", kinks={"1/y": 0})
    x = np.array([-1.0, 0.5, 1.0, 2.0])
    y = np.array([1.0, 1.0, 1.0, -1.0])
    gx, gy = hinge.vjp(np.ones(4), x, y, reduction="none")
    np.testing.assert_array_equal(gx, [-1.0, -1.0, 0.0, 1.0])  # -y where 1 - x y > 0, and 0 at the tie x y = 1
    np.testing.assert_array_equal(gy, [1.0, -0.5, 0.0, -2.0])
    assert hinge.gradcheck(np.array([0.3, -2.0]), np.array([1.0, -1.0])).passed


def test_a_domain_where_the_definition_is_real() -> None:
    log = define_op("my_log", "log(x)", domain=(0.1, 5.0))
    x = np.array([0.25, 1.0, 4.0])
    np.testing.assert_allclose(log.vjp(np.ones(3), x)[0], 1 / x, rtol=1e-15)
    assert log.verify().passed


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_a_derived_gradient_that_overflows_apart_is_taken_simplified(dtype: type) -> None:
    """ISRU, x / sqrt(1 + (a x)^2) (Carlile et al. 2017): SymPy's derivative 1 / sqrt(1 + a^2 x^2) - a^2 x^2 /
    (1 + a^2 x^2)^(3/2) is inf / inf where a^2 x^2 overflows; its simplification (1 + a^2 x^2)^(-3/2) is not,
    and is proven equal. And a gradient that is finite is not simplified."""
    isru = define_op("isru", "x / sqrt(1 + (alpha * x)**2)", params={"alpha": (1.0, (0.5, 2.0))})
    assert isru.op.formula().grads  # a closed form ...
    assert isru.verify().passed  # ... proven, within the ulp bounds, finite at the extremes
    x = np.array([-1e30, -3.0, 0.0, 0.5, 2e19, 3e38] + ([1e200, -1e300] if dtype == np.float64 else []), dtype=dtype)
    alpha = 0.75
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        grad = isru.vjp(np.ones_like(x), x, alpha=alpha)[0]
    with mpmath.workprec(200):
        true = np.array([float((1 + (alpha * mpmath.mpf(float(v))) ** 2) ** mpmath.mpf(-1.5)) for v in x])
    tiny = np.finfo(dtype).smallest_normal  # below it, an ulp is the subnormal spacing
    assert np.max(np.abs(grad - true) / np.maximum(np.spacing(true.astype(dtype)), np.spacing(tiny))) <= 8
    # softsign's derivative is finite (its negative power prints as a reciprocal's square, which underflows);
    # simplified it would square |x| in a denominator
    softsign = define_op("softsign_simple", "x / (1 + abs(x))", kinks={0: 1})
    assert not softsign.op.formula().grads


def test_arctan_gradient_is_a_reciprocal_of_hypot_and_reads_as_written() -> None:
    """arctan's derived 1 / (1 + x^2) overflows in the square from |x| = 1.8e19 in float32 (the result rounds
    to the right 0, with an overflow warning, which fails the verify row); and it has no simpler form. As
    hypot(x, 1)^-2 it underflows quietly, is proven equal, passes, and its LaTeX still reads 1 / (x^2 + 1)."""
    arctan = define_op("my_arctan", "atan(x)")
    (closed,) = arctan.op.formula().grads.values()
    assert closed.has(symdl.functions.hypot)
    assert arctan.verify().passed
    latex = arctan.latex()
    assert r"x^{2} + 1" in latex and "hypot" not in latex


@pytest.mark.parametrize(("definition", "derivative"), [
    ("sigmoid(x)", lambda v: mpmath.exp(-v) / (1 + mpmath.exp(-v)) ** 2),
    ("tanh(x)", lambda v: 1 / mpmath.cosh(v) ** 2),  # (tanh(3x) would round 3x: an error of 6x ulp in the tail)
])
def test_saturating_functions_have_gradients_accurate_in_their_tails(definition: str, derivative) -> None:
    """SymPy's sigma (1 - sigma) and 1 - tanh^2 lose every digit where sigma and tanh round to 1 (a user's
    sigmoid(x) had a 215-ulp gradient); as sigma(u) sigma(-u) and 4 sigma(2u) sigma(-2u) they keep the ulp
    bounds, within a few ulp of mpmath from the center to where the gradient underflows."""
    op = define_op("saturating", definition)
    assert op.op.formula().grads  # a proven closed form, not SymPy's derivative as printed
    assert op.verify().passed
    for dtype in (np.float32, np.float64):
        x = np.array([-60.0, -12.0, -0.3, 0.0, 2.0, 9.5, 20.0, 60.0], dtype=dtype)
        grad = op.vjp(np.ones_like(x), x)[0]
        with mpmath.workdps(40):
            true = np.array([float(derivative(mpmath.mpf(float(v)))) for v in x])
        ulps = np.abs(grad - true) / np.spacing(true.astype(dtype)).astype(np.float64)
        assert np.max(ulps) <= 8, (dtype, grad, true)


def test_a_gradient_free_of_the_input_is_a_parameter() -> None:
    """d(a x)/dx = a: the finiteness check evaluates a bare parameter (a Python float once substituted)."""
    linear = define_op("scaled", "a * x", params={"a": 1.5})
    np.testing.assert_array_equal(linear.vjp(np.ones(3), np.array([1e30, 0.0, -2.0]), a=2.5)[0], [2.5, 2.5, 2.5])


@pytest.mark.parametrize("definition", ["abs(softplus(x)) / (1 + abs(softplus(x)))", "abs(sigmoid(softplus(x)))",
                                        "tanh(sigmoid(x) / (1 + abs(sigmoid(x))))"])
def test_abs_of_a_stable_primitive_differentiates_as_a_real_function(definition: str) -> None:
    """sigmoid and softplus (and the normal CDF) are real and positive for a real argument: without saying so,
    SymPy differentiated |softplus(x)| through re() and im(), which no printer translates (the op could not be
    defined: NotImplementedError). |f| of a positive f is f: no kink to declare."""
    op = define_op("abs_of_primitive", definition)
    assert op.verify().passed
    assert op.gradcheck(np.array([-3.0, -0.4, 0.0, 1.1, 4.0])).passed


def test_a_gaussian_in_a_gradient_is_clamped_where_it_is_zero_anyway() -> None:
    """A user's GELU, x Phi(x), differentiates to Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi): x^2 overflows from
    |x| = 1.8e19 in float32 (exp(-inf) = 0 is right, but warns, and the verify row is not finite). With x
    clamped to +-40 inside the Gaussian (exp(-800) = 0 too) the values are the same and nothing overflows;
    proven equal, and equal to the catalog's GELU gradient at the extremes."""
    gelu = define_op("my_gelu", "x * normal_cdf(x)")
    assert gelu.op.formula().grads
    row = gelu.verify()
    assert row.finite and row.proofs_hold, row
    for dtype in (np.float32, np.float64):
        x = np.array([-1e30, -1e20, -50.0, -3.0, 0.5, 41.0, 1e20, 1e30], dtype=dtype)
        with np.errstate(over="raise", invalid="raise"):
            grad = gelu.vjp(np.ones_like(x), x)[0]
        np.testing.assert_allclose(grad, kernels.gelu_vjp(np.ones_like(x), x)[0], rtol=4 * np.finfo(dtype).eps)


def test_log_cosh_gradient_is_tanh_not_sinh_over_cosh() -> None:
    """d/dx log(cosh x) derives to sinh(x) / cosh(x): nan = inf / inf from |x| = 89 in float32. Simplified: tanh.
    (The forward's cosh overflows there too: its stable form is found for it, tests/test_accurate_forms.py.)"""
    log_cosh = define_op("my_log_cosh", "log(cosh(x))")
    assert log_cosh.op.formula().grads == {"x": sp.tanh(log_cosh.op.inputs[0].symbol)}
    x = np.array([-1000.0, -100.0, 0.3, 100.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):
        grad = log_cosh.vjp(np.ones_like(x), x)[0]
    np.testing.assert_allclose(grad, np.tanh(x.astype(np.float64)), rtol=1e-7)


def test_periodic_activation_with_sin() -> None:
    # snake (Ziyin et al. 2020): x + sin(alpha x)^2 / alpha, d/dx = 1 + sin(2 alpha x)
    # the gradient's zeros (sin(2 alpha x) = -1) are a cancellation no form avoids: its error is stated on the
    # scale of the terms combined, as the catalog states tanhshrink's
    snake = define_op("snake", "x + sin(alpha * x)**2 / alpha", params={"alpha": (1.0, (0.5, 2.0))},
                      tolerance={"grad_scale": "1 + abs(alpha * x)", "forward_scale": "1 + abs(x)"})
    assert snake.verify().passed
    x = np.array([-20.0, -2.5, -0.1, 0.0, 0.7, 3.0, 40.0])
    alpha = 0.7
    for xm, y, grad in _kernel_values(snake, x, alpha=alpha):
        # alpha x is rounded before sin: an absolute error of about ulp(alpha x) in each term
        error = 8 * 2.0**-53 * (1 + abs(alpha * float(xm)))
        assert abs(float(xm + mpmath.sin(alpha * xm) ** 2 / alpha) - y) <= error * max(1.0, abs(float(xm)))
        assert abs(float(1 + mpmath.sin(2 * alpha * xm)) - grad) <= error
    assert snake(x.astype(np.float32)).dtype == np.float32
    assert snake.gradcheck(np.array([-1.3, 0.2, 2.9]), alpha=1.7).passed

def test_loss_reductions() -> None:
    loss = define_op("my_mse", "(input - target)**2", inputs=("input", "target"), kind="loss")
    assert loss.op.family == "loss" and loss.op.param("reduction").default == "mean"
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 3))
    for reduction in ("none", "mean", "sum"):
        np.testing.assert_allclose(loss(a, b, reduction=reduction), kernels.mse_loss(a, b, reduction=reduction),
                                   rtol=1e-15)
        grads = loss.vjp(np.ones(()) if reduction != "none" else np.ones_like(a), a, b, reduction=reduction)
        expected = kernels.mse_loss_vjp(np.ones(()) if reduction != "none" else np.ones_like(a), a, b,
                                        reduction=reduction)
        for got, want in zip(grads, expected):
            np.testing.assert_allclose(got, want, rtol=1e-15)
    assert loss.verify().passed


def test_row_op_matches_catalog_softmax() -> None:
    softmax = define_op("my_softmax", "exp(x) / rowsum(exp(x))", kind="row",
                        stable="exp(x - rowmax(x)) / rowsum(exp(x - rowmax(x)))")
    assert softmax.op.kind == "row" and softmax.op.param("dim").default is None
    assert {p.claim for p in softmax.proofs} == {"stable form = definition", "VJP d/dx closed form = derived"}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5)) * 4
    x[0, 0] = 1e4  # an overflow for the definition, not for the stable form
    g = rng.standard_normal((3, 5))
    np.testing.assert_allclose(softmax(x, dim=1), kernels.softmax(x, dim=1), rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(softmax.vjp(g, x, dim=1)[0], kernels.softmax_vjp(g, x, dim=1)[0], rtol=1e-13,
                               atol=1e-16)


BAD_DEFINITIONS = [
    (dict(name="kinky", definition="abs(x)"), r"kinky: not differentiable at x = 0 \(from Abs\(x\)\)"),
    (dict(name="kinky2", definition="where(x > 1, x, 1)"), "kinky2: not differentiable at x = 1"),
    (dict(name="wrong_sub", definition="where(x > 0, x, 0)", kinks={0: 1}),
     "wrong_sub: not differentiable where claimed: subgradient at 0 = 1 does not hold"),
    (dict(name="lost", definition="2 * x", inputs=("x", "y")), "lost: input 'y' does not appear in the definition"),
    (dict(name="nodefault", definition="alpha * x", params=["alpha"]), "nodefault: parameter 'alpha' has no default"),
    (dict(name="undeclared", definition="alpha * x"),
     "undeclared: 'alpha' in the definition is neither an input nor a parameter with a default"),
    (dict(name="wavy", definition="tan(x)"), "wavy: unsupported function tan in the definition"),
    (dict(name="complex_log", definition="max(log(x), 2 * x)"),
     r"complex_log: the definition is not real and finite at x = -\d.*\(x in \[-6, 6\]\); pass domain="),
    (dict(name="complex_loss", definition="sqrt(input) * target", inputs=("input", "target"), kind="loss"),
     r"complex_loss: the definition is not real and finite at input = -.*or \{input: \(low, high\)\}"),
    (dict(name="overflowing", definition="log(1 + exp(x))", stable="log(1 + exp(x))"),
     "overflowing: the stable form is not finite at the extremes"),
    (dict(name="not_equal", definition="log(1 + exp(x))", stable="softplus(x) + 1"),
     "not_equal: not proven: stable form = definition does not hold"),
    (dict(name="bad_grad", definition="x**3", grads={"x": "2*x**2"}),
     "bad_grad: not proven: d/dx closed form = derived does not hold"),
    (dict(name="hostile", definition="__import__('os').system('true')"),
     "hostile: the definition text is not accepted"),
    (dict(name="relu", definition="x"), "relu: the catalog already has an op of that name"),
    (dict(name="Bad-Name", definition="x"), "op name 'Bad-Name' is not a snake_case identifier"),
    (dict(name="reserved", definition="g * 2", inputs=("g",)), "reserved: input name 'g' is reserved"),
    (dict(name="rows", definition="exp(x) / rowsum(exp(x))"), "rows: rowsum/rowmax need kind='row'"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_DEFINITIONS, ids=[k["name"] for k, _ in BAD_DEFINITIONS])
def test_bad_definitions_raise_a_typed_error_naming_op_and_rule(kwargs: dict, message: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import symdl.export.define as define

    def no_code(*args: object, **kw: object) -> str:
        raise AssertionError("code was generated for a bad definition")

    monkeypatch.setattr(define, "render_numpy", no_code)
    kwargs = dict(kwargs)
    with pytest.raises(DefinitionError, match=message) as caught:
        define_op(kwargs.pop("name"), kwargs.pop("definition"), **kwargs)
    assert isinstance(caught.value, SymdlError)


def test_kernels_from_file_writes_a_sympy_free_module(tmp_path: Path) -> None:
    definitions = tmp_path / "my_ops.py"
    definitions.write_text(
        "import symdl\n"
        "swish = symdl.define_op('swish_two', 'x * sigmoid(beta * x)', params={'beta': 1.0})\n"
        "pair = symdl.define_op('sq_err', '(a - b)**2', inputs=('a', 'b'), kind='loss', reduction='sum')\n"
    )
    out = tmp_path / "my_kernels.py"
    assert main(["kernels", "--from", str(definitions), "-o", str(out)]) == 0
    text = out.read_text()
    assert "Generated by" in text and "do not edit by hand" in text
    script = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import my_kernels as k\n"
        "assert 'sympy' not in sys.modules, 'sympy imported'\n"
        "x = np.array([-2.0, 0.5])\n"
        "print(repr(k.swish_two(x, beta=2.0).tolist()), repr(float(k.sq_err(x, x + 1))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    values, total = result.stdout.strip().rsplit(" ", 1)
    expected = [v / (1 + np.exp(-2 * v)) for v in (-2.0, 0.5)]
    np.testing.assert_allclose(eval(values), expected, rtol=1e-15)  # noqa: S307 - our own repr of a list
    assert float(total) == 2.0


def test_kernels_from_file_without_ops_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["kernels", "--from", str(empty), "-o", str(tmp_path / "k.py")]) == 2
    assert "defines no op" in capsys.readouterr().err


def test_pseudo_huber_without_closed_forms_prints_both_gradients() -> None:
    """Both gradients printed together share ``t3 * t4``; ``-t4`` is then never computed on its own.

    The in-place emitter rewrites ``t3 * (-t4)`` as ``-(t3 * t4)``, so the temporary ``-t4`` has no
    buffer; the comment naming each assignment's plain form must not look one up for it (it raised
    KeyError). The kernel must equal the textbook gradients, d/dinput = d / sqrt(1 + (d/delta)^2)
    with d = input - target, and d/dtarget its negative (SymPy's derivative, evaluated in mpmath).
    """
    op = define_op("ph", "delta**2*(sqrt(1+((input-target)/delta)**2)-1)",
                   stable="(input-target)**2/(sqrt(1+((input-target)/delta)**2)+1)",
                   inputs=("input", "target"), params={"delta": 1.0}, kind="loss")
    x, t = np.array([-2.5, 0.1, 3.0]), np.array([0.5, 0.0, -1.0])
    grad_input, grad_target = op.vjp(np.ones(3), x, t, reduction="none")
    expected = [float(mpmath.mpf(a - b) / mpmath.sqrt(1 + mpmath.mpf(a - b) ** 2)) for a, b in zip(x, t)]
    np.testing.assert_allclose(grad_input, expected, rtol=1e-14)
    np.testing.assert_allclose(grad_target, -np.array(expected), rtol=1e-14)


def test_generated_docstrings_say_where_a_user_op_came_from() -> None:
    """A user op's kernels and exports name ``symdl.define_op``, never a catalog entry it is not."""
    from symdl.export import export_source

    square = define_op("half_square", "x**2 / 2")
    sources = {"numpy": square.source, "torch": export_source([square, "relu"], "torch"),
               "jax": export_source([square], "jax")}
    for where, source in sources.items():
        assert "Generated from the user op ``half_square`` defined with ``symdl.define_op``" in source, where
        assert "catalog entry ``half_square``" not in source, where
    assert "Generated from the catalog entry ``relu``" in sources["torch"]  # a catalog op still says so


def test_a_gradient_of_parameter_weighted_masks_keeps_float32() -> None:
    """max(x, a x) differentiates to a [a x - x >= 0] + [x - a x > 0]: a Python float times a boolean mask,
    which NumPy computes in float64 whatever the input's dtype; the kernel computes it in the input's."""
    op = define_op("max_of_scaled", "max(x, a * x)", params={"a": 0.1}, kinks={0: 0.1})
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    (grad,) = op.vjp(np.ones_like(x), x)
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, np.array([0.1, 0.1, 1.0], dtype=np.float32))
    assert op.verify().passed

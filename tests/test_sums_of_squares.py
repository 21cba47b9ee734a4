"""Square roots of sums of squares: the print-time rewrite to hypot and the NumPy runtime's hypot.

Ground truth: mpmath at 200 bits for the runtime's values, NumPy's np.hypot for its inf and NaN
semantics, and SymPy's own evaluation of the expression before the rewrite for the rewrite.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from symdl.functions import hypot, to_textbook
from symdl.kernels import _runtime as rt
from symdl.printing.sums_of_squares import as_hypot

x, t, a = sp.symbols("x t alpha", real=True)
delta = sp.Symbol("delta", positive=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_runtime_hypot_is_within_an_ulp_of_mpmath_over_the_whole_float_range(dtype: type) -> None:
    """Magnitudes drawn log-uniformly from the smallest subnormal to the largest float, signs at random: where
    the squares overflow or underflow the root is still within an ulp (the true value rounded)."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(11)
    exponents = rng.uniform(np.log2(float(info.smallest_subnormal)), np.log2(float(info.max)) - 1, (2, 4000))
    first = (np.exp2(exponents[0]) * rng.choice([-1.0, 1.0], 4000)).astype(dtype)
    second = np.exp2(exponents[1]).astype(dtype)
    got = rt.hypot(first, second)
    assert got.dtype == dtype
    with mpmath.workprec(200):
        true = np.array([float(mpmath.sqrt(mpmath.mpf(float(u)) ** 2 + mpmath.mpf(float(v)) ** 2))
                         for u, v in zip(first, second)])
    ulp = np.spacing(true.astype(dtype)).astype(np.float64)
    assert np.max(np.abs(got - true) / ulp) <= 1.0
    with np.errstate(over="ignore"):
        assert np.isinf(np.square(first)).any()  # the draw reaches where the squares overflow


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_runtime_hypot_special_values_and_broadcasting_are_numpys(dtype: type) -> None:
    specials = np.array([0.0, -0.0, 1e-30, 3.0, -1e30, np.finfo(dtype).max, np.inf, -np.inf, np.nan], dtype=dtype)
    column, row = specials[:, None], specials[None, :]
    with np.errstate(over="ignore"):
        expected = np.hypot(column, row)
        got = rt.hypot(column, row)
    assert got.shape == (9, 9) and got.dtype == dtype
    # hypot(inf, nan) = inf, NaN elsewhere with a NaN, exact zeros, inf where the root overflows ...
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[~np.isfinite(expected) | (expected == 0)],
                                  expected[~np.isfinite(expected) | (expected == 0)])
    # ... and within an ulp of NumPy's elsewhere (both are within an ulp of the true root)
    finite = np.isfinite(expected) & (expected > 0)
    with np.errstate(over="ignore"):  # the spacing above the largest float is inf
        assert np.all(np.abs(got[finite] - expected[finite]) <= np.spacing(expected[finite]))
    assert rt.hypot(specials, 1.0).dtype == dtype  # a Python float is weak: float32 stays float32
    np.testing.assert_array_equal(rt.hypot(specials, 1.0), np.hypot(specials, dtype(1.0)))


EXPRESSIONS = [
    1 / sp.sqrt(1 + x**2),  # asinh'
    sp.sqrt(1 + ((x - t) / delta) ** 2),  # pseudo-Huber
    x / sp.sqrt(1 + (a * x) ** 2),  # ISRU
    -(x**2) / (x**2 + 1) ** sp.Rational(3, 2) + 1 / sp.sqrt(x**2 + 1),  # ISRU's derivative as SymPy gives it
    sp.sqrt(x**2 + t**2 + 2),  # three terms: nested hypot
    x / sp.sqrt(delta * x**2 + 1),  # a parameter declared positive
    sp.sqrt(x**2 + delta),  # a smooth |x|
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=str)
def test_square_roots_of_sums_of_squares_become_hypot_and_keep_their_value(expr: sp.Expr) -> None:
    rewritten = as_hypot(expr)
    assert rewritten.has(hypot)
    assert not any(p.exp.is_Rational and not p.exp.is_Integer and p.base.is_Add for p in rewritten.atoms(sp.Pow))
    rng = np.random.default_rng(3)
    for _ in range(5):
        point = {s: sp.Float(rng.uniform(0.2, 3.0) * rng.choice([-1, 1]) if s != delta else rng.uniform(0.2, 3.0))
                 for s in expr.free_symbols}
        assert abs(complex(to_textbook(rewritten).subs(point).evalf(30)) - complex(expr.subs(point).evalf(30))) < 1e-25


@pytest.mark.parametrize("expr", [
    sp.sqrt(1 + a * x**2),  # alpha's sign is unknown: not a sum of squares
    sp.sqrt(1 - x**2),
    sp.sqrt(delta + sp.Symbol("v", positive=True)),  # positive terms, nothing squared: nothing overflows first
    (x**2 + 1) ** 2,  # integer powers overflow only where their value does
    1 / (x**2 + 1),
    sp.sqrt(x),
], ids=str)
def test_other_powers_are_left_as_written(expr: sp.Expr) -> None:
    assert as_hypot(expr) == expr


def test_reciprocals_of_sums_of_squares_only_when_asked() -> None:
    """Negative integer powers become powers of hypot only with ``reciprocals`` (define_op asks for a gradient
    that is not finite otherwise); positive integer powers never do."""
    assert as_hypot(1 / (1 + x**2)) == 1 / (1 + x**2)
    assert as_hypot(1 / (1 + x**2), reciprocals=True) == hypot(x, 1) ** -2
    assert as_hypot((1 + x**2) ** -2, reciprocals=True) == hypot(x, 1) ** -4
    assert as_hypot((1 + x**2) ** 2, reciprocals=True) == (1 + x**2) ** 2


@pytest.mark.parametrize(("expr", "latex"), [
    (hypot(x, 1), r"\sqrt{x^{2} + 1}"),
    (hypot(x, 1) ** -2, r"\frac{1}{\left(x^{2} + 1\right)}"),  # an even power: the sum itself, no root
    (t * hypot(x, 1) ** 4, r"t \left(x^{2} + 1\right)^{2}"),
    (hypot(x, 1) ** -3, r"\frac{1}{\left(\sqrt{x^{2} + 1}\right)^{3}}"),
], ids=str)
def test_hypot_reads_as_the_root_of_the_sum_of_squares(expr: sp.Expr, latex: str) -> None:
    assert sp.latex(expr) == latex


def test_gaussians_are_clamped_where_they_are_zero_in_every_float() -> None:
    """exp(c u^2), c < 0, gets u clamped to c u^2 >= -800: float64 values equal everywhere (both 0 beyond the
    clamp, exp(-800) underflowing), and nothing else changes."""
    from symdl.functions import clamp_gaussians

    gaussian = x * sp.exp(-(x**2) / 2) + sp.exp(-3 * (x - t) ** 2)
    clamped = clamp_gaussians(gaussian)
    assert clamped.has(sp.Max) and clamped.has(sp.Min)
    assert clamp_gaussians(clamped) == clamped  # already clamped: left alone
    for other in (sp.exp(x**2), sp.exp(-x), sp.exp(-(x**3))):
        assert clamp_gaussians(other) == other
    f, g = (sp.lambdify([x, t], e, "numpy") for e in (gaussian, clamped))
    u = np.concatenate([np.linspace(-60, 60, 2401), [-1e5, 1e5]])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(f(u, 0.25), g(u, 0.25))

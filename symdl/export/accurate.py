"""Accurate forms of a user op's definition and derived gradients: exact rewrites, chosen by measurement.

The formula a user writes is often not the one to evaluate in floating point. ``log(1 + exp(x))`` overflows
from x = 89 in float32 and is 0 below x = -17 where its true value is e^x; ``delta^2 (sqrt(1 + (x/delta)^2)
- 1)`` (the pseudo-Huber loss) subtracts two nearly equal numbers near 0 and keeps a few of its digits;
``exp(x) - 1`` and ``log(1 + x^2)`` likewise. The catalog's ops carry stable forms written by hand; a user
op without ``stable=`` gets one here: each rewrite in :data:`REWRITES` is an identity (the clamped
Gaussians: equal wherever float64 is not 0 anyway), the rewrites are combined up to :data:`DEPTH` deep, and
:func:`most_accurate` measures every form the way ``symdl verify`` does (the kernel printer's code, float32
and float64, on the domain samples and the extremes, in ulp against the mpmath reference of the
definition) and takes the best. A form is only a candidate: :func:`symdl.export.define_op` proves the one
it takes equal to the definition (or to the derivative) like one the user gives.

A form that is finite at the extremes beats one that is not; then the smaller error wins; a written form
that is finite and within its tolerance is kept as written (only what fails is rewritten).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from symdl.catalog.spec import Input, Op
from symdl.functions import (
    Grouped,
    accurate_derivatives,
    clamp_gaussians,
    exp_of_square,
    hypot,
    sigmoid,
    softplus,
    stable_log_cosh,
)
from symdl.printing.numpy_printer import KernelPrinter, as_printed
from symdl.printing.sums_of_squares import as_hypot, square_root
from symdl.proofs.proof import bounded

__all__ = ["DEPTH", "REWRITES", "kernel_function", "most_accurate", "not_finite_at_extremes", "rewritten_forms"]

Rewrite = Callable[[sp.Expr], sp.Expr]


# --------------------------------------------------------------------------- rewrites
def _as_log_cosh(expr: sp.Expr) -> sp.Expr:
    r""":math:`\log\cosh u` as :func:`~symdl.functions.stable_log_cosh`: :math:`\cosh u` overflows from
    :math:`|u| \approx 89` in float32 (710 in float64), where :math:`\log\cosh u \approx |u| - \log 2`."""
    return expr.replace(lambda e: isinstance(e, sp.log) and isinstance(e.args[0], sp.cosh),
                        lambda e: stable_log_cosh(e.args[0].args[0]))


def _exp_argument(expr: sp.Expr) -> sp.Expr | None:
    """u when ``expr`` is 1 + e^u, else None."""
    rest = expr - 1
    return rest.args[0] if isinstance(rest, sp.exp) else None


def _as_log1p(expr: sp.Expr) -> sp.Expr:
    r""":math:`\log(1 + u)` as :math:`\operatorname{log1p}(u)`: :math:`1 + u` rounds away the digits of a small
    :math:`u`. (SymPy's ``log1p_opt`` rewrites the Cauchy loss's :math:`\log(1 + (x - y)^2 / c^2)` into the log
    of one expanded quotient instead.)"""
    return expr.replace(lambda e: isinstance(e, sp.log) and e.args[0].is_Add and sp.S.One in e.args[0].args,
                        lambda e: log1p(e.args[0] - 1))


def _as_expm1(expr: sp.Expr) -> sp.Expr:
    r""":math:`c e^u - c` (in any sum, :math:`c` a number: :math:`e^u - 1`, the Welsch loss's :math:`1 - e^{-u^2/2}`)
    as :math:`c \operatorname{expm1}(u)`: :math:`e^u` rounds away the digits of a small :math:`u` before 1 is
    subtracted. (SymPy's ``expm1_opt`` factors the whole expression first, which fails on a piecewise part.)"""
    def first_exp(add: sp.Add) -> tuple[sp.Expr, sp.Expr, sp.exp] | None:
        """The first term c e^u of ``add`` whose -c is a term too: (the term, c, e^u)."""
        for term in add.args:
            coefficient, rest = term.as_coeff_Mul()
            if isinstance(rest, sp.exp) and -coefficient in add.args:
                return term, coefficient, rest
        return None

    def rewrite(add: sp.Add) -> sp.Expr:
        term, coefficient, exponential = first_exp(add)
        return add - term + coefficient + coefficient * expm1(exponential.args[0])

    return expr.replace(lambda e: e.is_Add and first_exp(e) is not None, rewrite)


def _log_of_one_plus_exp(expr: sp.Expr) -> sp.Expr | None:
    """u when ``expr`` is log(1 + e^u) or log1p(e^u), else None."""
    if isinstance(expr, sp.log) and expr.args[0].is_Add:
        return _exp_argument(expr.args[0])
    if isinstance(expr, log1p) and isinstance(expr.args[0], sp.exp):
        return expr.args[0].args[0]
    return None


def _as_softplus(expr: sp.Expr) -> sp.Expr:
    r""":math:`\log(1 + e^u)` as :math:`\operatorname{softplus}(u)` (no overflow of :math:`e^u`, and
    :math:`e^u`'s digits where it is small), and :math:`\log\sigma(u)` as :math:`-\operatorname{softplus}(-u)`."""
    step = expr.replace(lambda e: _log_of_one_plus_exp(e) is not None, lambda e: softplus(_log_of_one_plus_exp(e)))
    return step.replace(lambda e: isinstance(e, sp.log) and isinstance(e.args[0], sigmoid),
                        lambda e: -softplus(-e.args[0].args[0]))


def _sigmoid_pair(product: sp.Mul) -> tuple[sp.Expr, sp.Expr] | None:
    """Factors e^u and sigmoid(-u) of ``product``, whose product is sigmoid(u); None when there are none."""
    factors = product.args
    for exp_factor in (f for f in factors if isinstance(f, sp.exp)):
        for sig_factor in (f for f in factors if isinstance(f, sigmoid)):
            if sp.expand(exp_factor.args[0] + sig_factor.args[0]) == 0:
                return exp_factor, sig_factor
    return None


def _as_sigmoid(expr: sp.Expr) -> sp.Expr:
    r""":math:`(1 + e^{w})^{-k}` as :math:`\sigma(-w)^k`, then :math:`e^u \sigma(-u)` as :math:`\sigma(u)`:
    the logistic function written out overflows in :math:`e^w` (to the right value, 0, with an overflow)."""
    step = expr.replace(
        lambda e: e.is_Pow and e.exp.is_integer and e.exp.is_negative and e.base.is_Add
        and _exp_argument(e.base) is not None,
        lambda e: sigmoid(-_exp_argument(e.base)) ** -e.exp)

    def merge(product: sp.Mul) -> sp.Expr:
        exp_factor, sig_factor = _sigmoid_pair(product)
        return product / (exp_factor * sig_factor) * sigmoid(exp_factor.args[0])

    return step.replace(lambda e: e.is_Mul and _sigmoid_pair(e) is not None, merge)


def _root_terms(add: sp.Add) -> list[sp.Expr]:
    """The terms of ``add`` with a square root factor."""
    return [t for t in add.args if any(f.is_Pow and f.exp == sp.S.Half for f in sp.Mul.make_args(t))]


def _opposite_signs(a: sp.Expr, b: sp.Expr) -> bool:
    """``a`` and ``b`` never share a sign and are never both 0 (SymPy's assumptions)."""
    return bool((a.is_nonnegative and b.is_negative) or (a.is_positive and b.is_nonpositive)
                or (a.is_nonpositive and b.is_positive) or (a.is_negative and b.is_nonnegative))


#: The largest sum (operation count) whose square is expanded by the rationalization.
_RATIONALIZED_OPS = 40


def _rationalized(expr: sp.Expr) -> sp.Expr:
    r""":math:`r + s` with :math:`r` a term with a square root and :math:`s` the rest, of opposite signs
    (they cancel), as :math:`(r^2 - s^2) / (r - s)`: the difference is formed exactly in the numerator
    (the pseudo-Huber loss's :math:`\sqrt{1 + u^2} - 1 = u^2 / (\sqrt{1 + u^2} + 1)`), and the denominator,
    a sum of terms of one sign, is never 0.

    Signs are read from SymPy's assumptions, with every symbol that the expression divides by taken as
    nonzero: where it is 0 the expression is not defined anyway."""
    divisors = {p.base for p in expr.atoms(sp.Pow) if p.exp.is_negative and p.base.is_Symbol}
    nonzero = {s: sp.Dummy(s.name, real=True, nonzero=True) for s in divisors if s.is_real}

    def cancels(add: sp.Add) -> bool:
        roots = _root_terms(add)
        if len(roots) != 1 or sp.count_ops(add) > _RATIONALIZED_OPS:
            return False
        return _opposite_signs(roots[0].xreplace(nonzero), (add - roots[0]).xreplace(nonzero))

    def rewrite(add: sp.Add) -> sp.Expr:
        root = _root_terms(add)[0]
        rest = add - root
        return sp.expand(root**2 - rest**2) / (root - rest)

    return expr.replace(lambda e: e.is_Add and cancels(e), rewrite)


def _squares_apart(expr: sp.Expr) -> sp.Expr:
    r""":math:`u^2 / D` (:math:`D` a sum) as :math:`u \cdot (u / D)`, and :math:`u^2 G` (:math:`G` a Gaussian,
    :math:`e^{c v^2}` with :math:`c < 0`, or an :func:`~symdl.functions.exp_of_square`) as :math:`u \cdot (u G)`:
    where :math:`D` grows like :math:`|u|`, or :math:`G` is 0, the square overflows (from :math:`|u| = 1.8 \cdot
    10^{19}` in float32, to :math:`\infty \cdot 0`) and the product does not. The inner product is
    :class:`~symdl.functions.Grouped`: SymPy would merge it back into the square."""
    def gaussian(factor: sp.Expr) -> bool:
        if isinstance(factor, exp_of_square):
            return True
        if not isinstance(factor, sp.exp):
            return False
        coefficient, rest = factor.args[0].as_coeff_Mul()
        return bool(coefficient.is_negative) and rest.is_Pow and rest.exp == 2

    def decays(factor: sp.Expr) -> bool:
        return (factor.is_Pow and factor.exp.is_negative and factor.base.is_Add) or gaussian(factor)

    def parts(product: sp.Mul) -> tuple[sp.Expr, sp.Expr] | None:
        squares = [f for f in product.args if f.is_Pow and f.exp == 2 and not f.base.is_number]
        decaying = [f for f in product.args if decays(f)]
        return (squares[0], decaying[0]) if squares and decaying else None

    def rewrite(product: sp.Mul) -> sp.Expr:
        square, quotient = parts(product)
        u = square.base
        rest = product / (square * quotient)
        return rest * u * Grouped(u * quotient)

    return expr.replace(lambda e: e.is_Mul and parts(e) is not None, rewrite)


def _quotients_apart(expr: sp.Expr) -> sp.Expr:
    r""":math:`u D^{-k}` (:math:`k \ge 2`) as :math:`(u / D) D^{1-k}`: the kernels print :math:`D^{-k}` as
    :math:`(1/D)^k`, which underflows to 0 where the quotient does not (the gradient of :math:`\log(1 + x^2)`,
    :math:`2x / \operatorname{hypot}(x, 1)^2`, was 0 at :math:`x = 10^{30}` in float32, where it is
    :math:`2 \cdot 10^{-30}`)."""
    def parts(product: sp.Mul) -> tuple[sp.Expr, sp.Expr] | None:
        powers = [f for f in product.args if f.is_Pow and f.exp.is_Integer and f.exp <= -2]
        others = [f for f in product.args if not f.is_number and f not in powers and not isinstance(f, Grouped)]
        return (powers[0], others[0]) if powers and others else None

    def rewrite(product: sp.Mul) -> sp.Expr:
        power, u = parts(product)
        rest = product / (power * u)
        return rest * Grouped(u / power.base) * power.base ** (power.exp + 1)

    return expr.replace(lambda e: e.is_Mul and parts(e) is not None, rewrite)


def _square_root_of(expr: sp.Expr) -> sp.Expr | None:
    """|u| when ``expr`` is u^2 (:func:`~symdl.printing.sums_of_squares.square_root`: a product of even powers
    and positive factors that squares something), else None. A clamped root, min(|u|, 1), is this rewrite's
    own: not rewritten again."""
    found = None if expr.has(sp.Min) else square_root(expr)
    return sp.Abs(found[0]) if found is not None and found[1] else None


def _log1p_of_squares(expr: sp.Expr) -> sp.Expr:
    r""":math:`\log(1 + u^2)` as :math:`\log(1 + \min(|u|, 1)^2)` where :math:`|u| < 1` and
    :math:`2 \log \operatorname{hypot}(u, 1)` elsewhere: the square overflows from :math:`|u| = 1.8 \cdot
    10^{19}` in float32 where the logarithm is 88; from 1 on the hypot is at least :math:`\sqrt 2` and its
    logarithm loses nothing, below 1 ``log1p`` keeps the digits of a small square. The clamp keeps the branch
    not taken from overflowing (both are evaluated). The Cauchy (Lorentzian) loss is :math:`\log(1 + (x/c)^2)`."""
    def root(e: sp.Expr) -> sp.Expr | None:
        return _square_root_of(e.args[0]) if isinstance(e, log1p) else None

    def rewrite(e: sp.Expr) -> sp.Expr:
        u = root(e)
        return sp.Piecewise((log1p(sp.Min(u, 1) ** 2), u < 1), (2 * sp.log(hypot(u, 1)), True))

    return expr.replace(lambda e: root(e) is not None, rewrite)


#: The coefficients c of e^(c u^2) that exp_of_square takes: a float32 square of up to 800 / |c| split in halves
#: (times 4097) stays finite.
_GAUSSIAN_COEFFICIENTS = (1e-20, 1e20)


def _gaussian_parts(exponent: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr | None] | None:
    """``(u, c, w)`` when ``exponent`` is :math:`c u^2` (``w`` None) or :math:`c u^2 / w^2` with :math:`c` a negative
    rational number (:math:`u` possibly clamped by :func:`~symdl.functions.clamp_gaussians`), else None."""
    coefficient, rest = exponent.as_coeff_Mul()
    low, high = _GAUSSIAN_COEFFICIENTS
    if not (coefficient.is_Rational and coefficient.is_negative and low <= -coefficient <= high):
        return None
    factors = sp.Mul.make_args(rest)
    squares = [f for f in factors if f.is_Pow and f.exp == 2]
    divisors = [f for f in factors if f.is_Pow and f.exp == -2]
    if len(squares) != 1 or len(divisors) > 1 or len(squares) + len(divisors) != len(factors):
        return None
    return squares[0].base, coefficient, divisors[0].base if divisors else None


def _exact_squares(expr: sp.Expr) -> sp.Expr:
    r""":math:`e^{c u^2}` (:math:`c` a negative rational number) as :func:`~symdl.functions.exp_of_square`: the
    roundings of :math:`u^2` and of :math:`c u^2` are an error of about :math:`|c| u^2` half-ulps in the exponent,
    which the exponential keeps (``exp(-x**2)`` 22 ulp at x = 6.6 in float64; a Gaussian's tail hundreds); the
    kernels keep the exponent exactly as a sum of two floats and land within about 2 ulp. A sum of two terms,
    ``x - y``, is kept as its terms, which the kernels add exactly; where :math:`u` is rounded otherwise the
    measure decides."""
    def exact(exponential: sp.exp) -> sp.Expr:
        u, c, w = _gaussian_parts(exponential.args[0])
        first, second = u.args if u.is_Add and len(u.args) == 2 else (u, sp.S.Zero)  # x - y: the kernels add it
        if w is not None:  # x / s: the kernels divide keeping the rounding error
            return exp_of_square(first, c, second, w)
        return exp_of_square(first, c, second) if second != 0 else exp_of_square(u, c)

    return expr.replace(lambda e: isinstance(e, sp.exp) and _gaussian_parts(e.args[0]) is not None, exact)


#: Rewrites of a definition or a gradient, each an identity (the clamped Gaussians: wherever float64 is not 0),
#: by the name the docs use.
REWRITES: dict[str, Rewrite] = {
    "log1p": _as_log1p,
    "expm1": _as_expm1,
    "softplus": _as_softplus,
    "sigmoid": _as_sigmoid,
    "complements": accurate_derivatives,
    "rationalized": _rationalized,
    "squares apart": _squares_apart,
    "quotients apart": _quotients_apart,
    "hypot": lambda e: as_hypot(e, reciprocals=True),
    "log1p of squares": _log1p_of_squares,
    "clamped Gaussians": clamp_gaussians,
    "log cosh": _as_log_cosh,
    "exact squares": _exact_squares,
}

#: How many rewrites are combined, and the most forms measured.
DEPTH = 3
_MOST_FORMS = 40
#: CPU seconds one rewrite of one form, and the reference values of one batch of points, may take (a rewrite
#: that fails or runs out of time gives no form; a batch whose reference does not finish, such as
#: sin(sinh(x)) at x = 1e30 where mpmath reduces an argument of 1e30 bits, is not measured).
_REWRITE_SECONDS = 2.0
_REFERENCE_SECONDS = 3.0


def rewritten_forms(expr: sp.Expr, starts: Sequence[sp.Expr] = ()) -> list[sp.Expr]:
    """Every form of ``expr`` (and of ``starts``, equal forms of it) that up to :data:`DEPTH` rewrites of
    :data:`REWRITES` give, other than ``expr``, in the order found (at most 40)."""
    seen = {expr}
    found: list[sp.Expr] = []
    for start in starts:
        if start not in seen:
            seen.add(start)
            found.append(start)
    frontier = [expr, *found]
    for _ in range(DEPTH):
        following = []
        for form in frontier:
            for rewrite in REWRITES.values():
                new, finished = bounded(lambda rewrite=rewrite, form=form: rewrite(form), _REWRITE_SECONDS)
                if finished and new not in seen:
                    seen.add(new)
                    found.append(new)
                    following.append(new)
                if len(found) >= _MOST_FORMS:
                    return found
        frontier = following
    return found


# --------------------------------------------------------------------------- measurement
def kernel_function(op: Op, expr: sp.Expr) -> Callable[..., np.ndarray]:
    """``expr`` printed as the kernels print it (the kernel printer's rules: square roots of sums of squares
    as hypot, a negative power as a power of the reciprocal, ...), parameters at their defaults, as a function
    of the op's inputs."""
    from symdl.kernels import _runtime as _rt

    values = {p.symbol: sp.sympify(p.default) for p in op.symbol_params}  # a SymPy number: a + 0 would be a float
    printed = as_printed(expr.xreplace(values))
    symbols = [i.symbol for i in op.inputs]
    return sp.lambdify(symbols, printed, modules=[{"np": np, "_rt": _rt, "math": math}], printer=KernelPrinter())


def not_finite_at_extremes(op: Op, expr: sp.Expr) -> str | None:
    """What goes wrong when ``expr`` (:func:`kernel_function`) is evaluated in float32 and float64 at the first
    input's extremes: an FP error raised (overflow, invalid, divide by zero) or a non-finite value; None when
    nothing does."""
    return _problem_at_extremes(op, kernel_function(op, expr))


def _problem_at_extremes(op: Op, function: Callable[..., np.ndarray]) -> str | None:
    """:func:`not_finite_at_extremes` of the kernel code ``function``."""
    extremes = op.inputs[0].domain.extremes
    if not extremes or op.traits.over_rows:
        return None
    for dtype in (np.float32, np.float64):
        points = np.array([v for v in extremes if np.isfinite(dtype(v))], dtype=dtype)
        others = [np.full_like(points, (i.domain.low + i.domain.high) / 2) for i in op.inputs[1:]]
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                result = np.asarray(function(points, *others))
        except FloatingPointError as error:
            return f"{np.dtype(dtype).name}: {error}"
        if not np.all(np.isfinite(result)):
            bad = points[~np.isfinite(np.broadcast_to(result, points.shape))]
            return f"not finite at x = {bad[0]!r}, {np.dtype(dtype).name}"
    return None


@dataclass
class _Measure:
    """Errors of forms of one quantity of ``op`` (its output, or the gradient for ``wrt``) against the mpmath
    reference, at the points ``symdl verify`` measures (seed 1), parameters at their defaults."""

    op: Op
    wrt: Input | None

    @cached_property
    def _params(self) -> dict[str, object]:
        from symdl.verify.ops import unreduced

        return unreduced(self.op, {p.name: p.default for p in self.op.symbol_params})

    @cached_property
    def _cases(self) -> list[tuple[list[np.ndarray], np.ndarray, np.ndarray | None]]:
        """(inputs, exact values, tolerance scale) for each batch of points, float32 and float64."""
        from symdl.verify.ops import sample_batches, tolerance_scale
        from symdl.verify.reference import Reference

        reference = Reference(self.op, "", self._params)
        tolerance = self.op.tolerance

        def exact_values(inputs: list[np.ndarray]) -> np.ndarray:
            if self.wrt is None:
                return reference.forward(inputs)
            return reference.gradients(inputs)[list(self.op.differentiable_inputs).index(self.wrt)]

        scale = tolerance.forward_scale if self.wrt is None else tolerance.grad_scale
        cases = []
        for dtype in (np.float32, np.float64):
            for inputs in sample_batches(self.op, np.random.default_rng(1), dtype):
                exact, finished = bounded(lambda inputs=inputs: exact_values(inputs), _REFERENCE_SECONDS)
                if finished:
                    cases.append((inputs, exact, tolerance_scale(self.op, scale, inputs, self._params)))
        return cases

    def prepare(self) -> None:
        """Compute the reference values now."""
        _ = self._cases

    def errors(self, function: Callable[..., np.ndarray]) -> tuple[int, float]:
        """How many points the kernel code ``function`` (:func:`kernel_function`) is not finite at where the true
        value is (in the dtype), and its largest error at the others, in ulp of each dtype."""
        from symdl.verify.reference import ulp_error

        not_finite, worst = 0, 0.0
        for inputs, exact, scale in self._cases:
            dtype = inputs[0].dtype
            with np.errstate(all="ignore"):
                value = np.broadcast_to(np.asarray(function(*inputs)), np.shape(inputs[0])).astype(dtype)
                true_finite = np.isfinite(np.array([float(v) for v in np.ravel(exact)]).astype(dtype))
            bad = ~np.isfinite(np.ravel(value)) & true_finite
            not_finite += int(np.count_nonzero(bad))
            kept = ~bad
            if np.any(kept):
                worst = max(worst, ulp_error(np.ravel(value)[kept], np.ravel(exact)[kept],
                                             None if scale is None else np.ravel(scale)[kept]))
        return not_finite, worst


def most_accurate(op: Op, expr: sp.Expr, *, wrt: Input | None = None, bound: float,
                  starts: Sequence[sp.Expr] = ()) -> sp.Expr:
    """The best of ``expr`` and its :func:`rewritten_forms` (from ``starts`` too) as the kernels compute them:
    first finite at the extremes, then finite at the most points where the true value is, then the smallest
    ulp error elsewhere (errors within ``bound`` or half an octave of each other tie, and the form with fewer
    operations wins), against the mpmath reference of the op's output (``wrt`` None) or of its gradient for
    ``wrt``. ``expr`` itself when it is finite and within ``bound`` ulp, or when no form does better. A form
    the kernel printer cannot print (SymPy refuses ``max`` of a piecewise part it cannot order), or whose
    measure runs out of time, is not a candidate."""
    forms = rewritten_forms(expr, starts)
    if not forms:
        return expr
    measure = _Measure(op, wrt)

    def score(form: sp.Expr) -> tuple[bool, int, int, int] | None:
        def measured() -> tuple[bool, int, int, int]:
            function = kernel_function(op, form)
            not_finite, ulp = measure.errors(function)
            # errors within the bound, or within half an octave of each other, tie: then the shorter form wins
            octaves = 0 if ulp <= bound else math.ceil(2 * math.log2(ulp / bound)) if math.isfinite(ulp) else 1 << 30
            return _problem_at_extremes(op, function) is not None, not_finite, octaves, sp.count_ops(form)

        result, finished = bounded(measured, _REWRITE_SECONDS)
        return result if finished else None

    measure.prepare()  # the reference values: bounded per batch, not within one form's limit
    best, best_score = expr, score(expr)
    if best_score is None or best_score[:3] == (False, 0, 0):
        return expr
    for form in forms:
        if (form_score := score(form)) is not None and form_score < best_score:
            best, best_score = form, form_score
    return best

"""Stable SymPy primitives used by the catalog.

Each primitive is a ``sympy.Function`` with

* a closed-form derivative (``fdiff``) written in terms of the primitives
  themselves, so that differentiating a stable expression yields a stable
  expression (``softplus' = sigmoid``, ``sigmoid' = sigmoid (1 - sigmoid)``);
* a rewrite to its textbook form (``expr.rewrite(exp)`` or
  :func:`to_textbook`), which is what equality proofs and the mpmath
  reference evaluate.

The NumPy printer maps each primitive to a hand-checked, numerically stable
routine in :mod:`symdl.kernels._runtime`.

Row functions (``rowsum``, ``rowmax``) describe reductions over the op's
``dim`` axis; they let softmax-like ops and class losses be written once as a
vector formula and expanded to ``n`` explicit components for proofs
(:func:`expand_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy as sp
from sympy.core.logic import fuzzy_and
from sympy.codegen.cfunctions import expm1, log1p

__all__ = [
    "sigmoid",
    "softplus",
    "xlogy",
    "normal_cdf",
    "x_normal_cdf",
    "quotient_at_zero",
    "hypot",
    "exp_of_square",
    "clamped_log",
    "clamped_log1p",
    "indicator",
    "rowsum",
    "rowmax",
    "log1p",
    "expm1",
    "to_textbook",
    "Grouped",
    "grouped",
    "expand_row",
    "NUM_CLASSES",
    "fold_piecewise",
    "accurate_derivatives",
    "clamp_gaussians",
    "stable_log_cosh",
]


def _raised(latex: str, exp: str | None) -> str:
    """``latex`` to the power ``exp``: SymPy's LaTeX printer hands a function's power to its ``_latex`` as ``exp``."""
    return latex if exp is None else rf"\left({latex}\right)^{{{exp}}}"


class _StableUnary(sp.Function):
    """A stable primitive of one argument, known exactly at 0, evaluated through its textbook form.

    Each subclass gives its value at 0 (``_at_zero``), the function its textbook form is
    written with (``_textbook``: ``expr.rewrite(_textbook)`` is what ``evalf`` evaluates) and the
    LaTeX of its name (``_latex_name``).
    """

    _at_zero: sp.Expr
    _textbook: type[sp.Function]
    _latex_name: str
    #: positive wherever its argument is real (sigma, softplus, Phi); False: of either sign (x Phi(x))
    _positive_for_real: bool = True

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_zero:
            return cls._at_zero
        return None

    # Real for a real argument: SymPy differentiates |f| of a function it cannot call real through re(f) and
    # im(f), which no kernel printer translates (|softplus(x)| / (1 + |softplus(x)|) could not be defined).
    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_positive(self) -> bool | None:
        return self.args[0].is_real if self._positive_for_real else None

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(self._textbook)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        name = self._latex_name if exp is None else rf"{self._latex_name}^{{{exp}}}"  # sigma^{2}(x), as SymPy's sin
        return rf"{name}\left({printer._print(self.args[0])}\right)"


class sigmoid(_StableUnary):  # noqa: N801 - SymPy function names are lowercase
    r"""Logistic function :math:`\sigma(x) = 1 / (1 + e^{-x})`."""

    _at_zero, _textbook, _latex_name = sp.Rational(1, 2), sp.exp, r"\sigma"

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))


class softplus(_StableUnary):  # noqa: N801
    r"""Softplus :math:`\log(1 + e^{x})`, the smooth ReLU."""

    _at_zero, _textbook, _latex_name = sp.log(2), sp.exp, r"\operatorname{softplus}"

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.log(1 + sp.exp(x))


class normal_cdf(_StableUnary):  # noqa: N801
    r"""Standard normal CDF :math:`\Phi(x) = \tfrac12 (1 + \operatorname{erf}(x / \sqrt2))`.

    A primitive of its own because SymPy rewrites ``erfc(-z)`` as
    ``2 - erfc(z)``, which cancels catastrophically for negative x.
    """

    _at_zero, _textbook, _latex_name = sp.Rational(1, 2), sp.erf, r"\Phi"

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)

    def _eval_rewrite_as_erf(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return (1 + sp.erf(x / sp.sqrt(2))) / 2


class x_normal_cdf(_StableUnary):  # noqa: N801
    r""":math:`x \Phi(x)` (GELU's exact form) as one primitive, so that the NumPy kernel can compute it in one
    fused pass (float32: ``max(x, 0) - |x| Q(|x|)``, no separate sign or product pass; see
    ``symdl.kernels._runtime.x_normal_cdf``).

    Every other printer (PyTorch, JAX, SymPy's lambdify, the parseable text of the steps) prints the product
    ``x * normal_cdf(x)`` itself, so exported modules and derivations read as before.
    """

    _at_zero, _textbook, _latex_name = sp.S.Zero, sp.erf, r"\Phi"
    _positive_for_real = False

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return normal_cdf(x) + x * sp.exp(-(x**2) / 2) / sp.sqrt(2 * sp.pi)

    def _eval_rewrite_as_erf(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return x * (1 + sp.erf(x / sp.sqrt(2))) / 2

    def as_product(self) -> sp.Expr:
        """``x * normal_cdf(x)``."""
        return self.args[0] * normal_cdf(self.args[0])

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        x = self.args[0]
        factor = printer.parenthesize(x, sp.printing.precedence.PRECEDENCE["Mul"])
        return _raised(rf"{factor} {self._latex_name}\left({printer._print(x)}\right)", exp)

    def _symdl_numpy(self, printer: sp.printing.printer.Printer) -> str:
        return f"_rt.x_normal_cdf({printer._print(self.args[0])})"

    def _print_product(self, printer: sp.printing.printer.Printer) -> str:
        return printer._print(self.as_product())

    # PyTorch/JAX exports, the parseable step text, and SymPy's code printers (lambdify's NumPy, SciPy and JAX
    # printers look up _<module>code, the others _pythoncode, _mpmathcode, _lambdacode)
    _symdl_framework = _symdl_text = _print_product
    _pythoncode = _numpycode = _scipycode = _jaxcode = _mpmathcode = _lambdacode = _print_product


class quotient_at_zero(sp.Function):  # noqa: N801
    r""":math:`n / x` for a quotient that is smooth at :math:`x = 0`, with value :math:`c` and slope :math:`s`
    there (the third and fourth arguments).

    The kernel returns :math:`c + s x` where :math:`|x|` is below an eighth of the dtype's machine epsilon
    (0/0 at :math:`x = 0`; :math:`n` has lost bits where it is subnormal) and divides elsewhere. The two
    differ by :math:`O(x^2) < \epsilon^2`, far below rounding, and the linear form gives automatic
    differentiation of an exported backward the right derivative at 0 (a constant would give 0). The
    catalog entry using it states the value and slope (GELU: :math:`\Phi(x) + x\phi(x)`, :math:`c = 1/2`,
    :math:`s = 2\phi(0) = \sqrt{2/\pi}`).
    """

    nargs = 4

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return to_textbook(self)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        n, x = (printer._print(a) for a in self.args[:2])
        return _raised(rf"\frac{{{n}}}{{{x}}}", exp)


class hypot(sp.Function):  # noqa: N801
    r""":math:`\sqrt{a^2 + b^2}` without forming the squares, which overflow where the root does not
    (:math:`\sqrt{1 + x^2}` at :math:`x = 10^{20}` in float32) and underflow where it is not 0.

    Not in the catalog's formulas: the printers rewrite square roots of sums of squares into it
    (:mod:`symdl.printing.sums_of_squares`) after every proof, and :func:`symdl.export.define_op` writes a
    reciprocal of one into a user op's gradient that overflows otherwise (proven through its textbook form).
    """

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self.args[argindex - 1] / self

    def _eval_is_extended_real(self) -> bool | None:
        return fuzzy_and(a.is_extended_real for a in self.args)

    def _eval_is_nonnegative(self) -> bool | None:
        return fuzzy_and(a.is_real for a in self.args)

    def _eval_rewrite_as_sqrt(self, a: sp.Expr, b: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.sqrt(a**2 + b**2)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.sqrt)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        a, b = self.args
        squares = printer._print(a**2 + b**2)
        if exp is not None and exp.isdigit() and int(exp) % 2 == 0:  # an even power: the sum, no root
            half = int(exp) // 2
            return rf"\left({squares}\right)" + ("" if half == 1 else f"^{{{half}}}")
        return _raised(rf"\sqrt{{{squares}}}", exp)


class exp_of_square(sp.Function):  # noqa: N801
    r""":math:`e^{c u^2}`, or :math:`e^{c ((u + v) / w)^2}` with a third argument :math:`v` and a fourth
    :math:`w`, for a number :math:`c < 0` (a Gaussian), with the exponent kept exactly.

    The rounding of :math:`u^2` (and of :math:`c u^2`) is an absolute error of about :math:`|c| u^2
    \varepsilon/2` in the exponent, which :math:`e^{(\cdot)}` turns into a relative error of as much: 22 ulp for
    :math:`e^{-x^2}` at :math:`x = 6.6`, hundreds in a Gaussian's tail. The kernels take :math:`c` as two floats,
    :math:`c_h + c_l` (:meth:`call_args`), split :math:`u^2 = s + t` and :math:`c_h s = p + q` exactly (Dekker's
    products: :math:`s` and :math:`p` rounded, :math:`t` and :math:`q` their rounding errors) and compute
    :math:`e^{p} (1 + q + c_h t + c_l s)`: within about 2 ulp. A sum :math:`u + v` they add exactly (Knuth's
    two-sum, :math:`d + r`) and square as :math:`d^2 + 2dr`: the rounding of :math:`x - y` was 65 ulp of the Welsch
    loss's gradient. A quotient by :math:`w` (an RBF's width: :math:`e^{-x^2 / (2 s^2)}`) they divide with its
    rounding error kept (Dekker's product of the quotient and :math:`w`). Zero where :math:`c u^2 < -800` (as in
    float32 and float64), so no square overflows.

    Not in the catalog's formulas: :func:`symdl.export.define_op` writes a user op's Gaussians with it where
    the measure says it is more accurate (proven equal through its textbook form).
    """

    nargs = (2, 3, 4)

    @property
    def _sum(self) -> sp.Expr:
        """The squared quantity: ``u``, ``u + v`` or ``(u + v) / w`` (a sum of two terms kept apart, so that the
        kernels add them exactly and no common subexpression takes the rounded sum's place; a divisor likewise)."""
        args = self.args
        plus = args[2] if len(args) > 2 else 0
        divisor = args[3] if len(args) > 3 else 1
        return (args[0] + plus) / divisor

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex == 2:
            raise sp.ArgumentIndexError(self, argindex)
        slope = 2 * self.args[1] * self._sum * self  # d/d(the squared quantity)
        if argindex == 4:
            return -slope * self._sum / self.args[3]
        return slope / self.args[3] if len(self.args) == 4 else slope

    def _eval_is_extended_real(self) -> bool | None:
        return fuzzy_and(a.is_extended_real for a in self.args)

    def _eval_is_positive(self) -> bool | None:
        return fuzzy_and(a.is_real for a in self.args)

    def _eval_rewrite_as_exp(self, *args: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.exp(self.args[1] * self._sum**2)

    def call_args(self) -> tuple[sp.Expr, ...]:
        """What the kernels are called with: :math:`u`, :math:`c` as the float nearest it and the float nearest
        what that leaves (:math:`-1/36` is not a float: its rounding would be an error of the exponent), the
        second term of a sum and the divisor."""
        u, c, *plus = self.args
        high = float(c)
        low = float(sp.Rational(c) - sp.Rational(high))  # exact: a Float's Rational is its binary value
        return (u, sp.Float(high), sp.Float(low), *plus)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(printer._print(sp.exp(self.args[1] * self._sum**2)), exp)


class xlogy(sp.Function):  # noqa: N801
    r""":math:`x \log y`, defined as 0 where :math:`x = 0` (as ``torch.xlogy``)."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x, y = self.args
        return sp.log(y) if argindex == 1 else x / y

    def _eval_rewrite_as_log(self, x: sp.Expr, y: sp.Expr, **kwargs: object) -> sp.Expr:
        return x * sp.log(y)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.log)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        # x log(y): each factor parenthesised as a product's (x log x + 1 read as (x log x) + 1)
        x, y = (printer.parenthesize(a, sp.printing.precedence.PRECEDENCE["Mul"]) for a in self.args)
        return _raised(rf"{x} \log {y}", exp)


class _ClampedLogarithm(sp.Function):
    r""":math:`\max(L(u), c)` for a logarithm :math:`L`: its derivative in :math:`u` is :math:`L'(u)`
    above the floor and 0 below it; in :math:`c`, 0 above and 1 below.

    Each subclass gives :math:`L` (``_log``), :math:`L'` (``_dlog``) and the LaTeX of
    :math:`L(u)` (``_latex_log``, a format of ``{u}``).
    """

    nargs = 2
    _log: Callable[[sp.Expr], sp.Expr]
    _dlog: Callable[[sp.Expr], sp.Expr]
    _latex_log: str

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        u, floor = self.args
        above = self._log(u) > floor
        if argindex == 1:
            return sp.Piecewise((self._dlog(u), above), (0, True))
        return sp.Piecewise((0, above), (1, True))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return to_textbook(self)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        u, floor = (printer._print(a) for a in self.args)
        return _raised(rf"\max\left({self._latex_log.format(u=u)}, {floor}\right)", exp)


class clamped_log(_ClampedLogarithm):  # noqa: N801
    r""":math:`\max(\log u, c)`: a log clamped below at ``c`` (PyTorch's BCE clamps at -100).

    The kernel takes ``log`` with the divide-by-zero warning of ``log 0 = -inf``
    silenced, then the maximum: ``u = 0`` gives ``c`` exactly, in two passes.
    """

    _log, _dlog, _latex_log = staticmethod(sp.log), staticmethod(lambda u: 1 / u), r"\log {u}"


class clamped_log1p(_ClampedLogarithm):  # noqa: N801
    r""":math:`\max(\log(1 + u), c)`, accurate for small ``u`` (``log(1 - p)`` as ``log1p(-p)``)."""

    _log, _dlog = staticmethod(lambda u: sp.log(1 + u)), staticmethod(lambda u: 1 / (1 + u))
    _latex_log = r"\log\left(1 + {u}\right)"


class indicator(sp.Function):  # noqa: N801
    r""":math:`[c]`: 1 where the condition ``c`` holds, else 0.

    A kernel multiplies by the boolean mask itself (0.2-0.6 ms per 1e6
    elements) where a Piecewise would select with ``np.where`` (3.5 ms), so
    gradients are written as sums of masked terms: each term must be finite
    everywhere, since ``0 * inf`` is NaN.
    """

    nargs = 1

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return to_textbook(self)._eval_evalf(prec)

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(rf"\left[{printer._print(self.args[0])}\right]", exp)


class rowsum(sp.Function):  # noqa: N801
    r"""Sum over the reduction axis: :math:`\sum_j e_j` (broadcast back)."""

    nargs = 1

    @classmethod
    def eval(cls, e: sp.Expr) -> sp.Expr | None:
        if e.is_number:  # a constant row sums to n times itself
            return e * NUM_CLASSES
        return None

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(rf"\sum_j {printer.parenthesize(self.args[0], 1000)}_j", exp)


class rowmax(sp.Function):  # noqa: N801
    r"""Maximum over the reduction axis: :math:`\max_j e_j` (a constant shift)."""

    nargs = 1

    @classmethod
    def eval(cls, e: sp.Expr) -> sp.Expr | None:
        return e if e.is_number else None

    def _latex(self, printer: sp.printing.latex.LatexPrinter, exp: str | None = None) -> str:
        return _raised(rf"\max_j {printer.parenthesize(self.args[0], 1000)}_j", exp)


class Grouped(sp.UnevaluatedExpr):
    """An ``UnevaluatedExpr`` that knows what it wraps is real (or positive): a Piecewise condition
    may compare it (SymPy refuses to order a plain UnevaluatedExpr, which has no assumptions)."""

    def _eval_is_extended_real(self) -> bool | None:
        return self.args[0].is_extended_real

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_positive(self) -> bool | None:
        return self.args[0].is_positive

    def _eval_is_nonnegative(self) -> bool | None:
        return self.args[0].is_nonnegative

    def _eval_derivative(self, symbol: sp.Symbol) -> sp.Expr:
        # the derivative of the unit, not an unevaluated Derivative of it (a stable form may group a quotient)
        return sp.diff(self.args[0], symbol)


def grouped(expr: sp.Expr) -> sp.Expr:
    """``expr`` kept as one unit when printed, so that SymPy's reordering of a
    product cannot form an overflowing intermediate (``x * n`` before ``/ (n + 2)``).
    (:class:`Grouped` where the unit must also compare as a real number.)"""
    return sp.UnevaluatedExpr(expr)


_TEXTBOOK: dict[type, Callable[..., sp.Expr]] = {
    sp.UnevaluatedExpr: lambda e: e,
    Grouped: lambda e: e,
    sigmoid: lambda x: 1 / (1 + sp.exp(-x)),
    softplus: lambda x: sp.log(1 + sp.exp(x)),
    xlogy: lambda x, y: x * sp.log(y),
    normal_cdf: lambda x: (1 + sp.erf(x / sp.sqrt(2))) / 2,
    x_normal_cdf: lambda x: x * (1 + sp.erf(x / sp.sqrt(2))) / 2,
    quotient_at_zero: lambda n, x, c, s: n / x,
    hypot: lambda a, b: sp.sqrt(a**2 + b**2),
    exp_of_square: lambda u, c, plus=0, divisor=1: sp.exp(c * ((u + plus) / divisor) ** 2),
    log1p: lambda x: sp.log(1 + x),
    expm1: lambda x: sp.exp(x) - 1,
    indicator: lambda c: sp.Piecewise((1, c), (0, True)),
    clamped_log: lambda u, floor: sp.Max(sp.log(u), floor),
    clamped_log1p: lambda u, floor: sp.Max(sp.log(1 + u), floor),
}


def to_textbook(expr: sp.Expr) -> sp.Expr:
    """Replace every stable primitive by its textbook formula."""
    return expr.replace(
        lambda e: type(e) in _TEXTBOOK,
        lambda e: _TEXTBOOK[type(e)](*e.args),
    )


#: The length of the reduction axis (the number of classes) inside row formulas.
NUM_CLASSES = sp.Symbol("num_classes", positive=True, integer=True)


def _complement(function: sp.Expr) -> sp.Expr | None:
    """:math:`1 - f` in a form accurate where :math:`f` rounds to 1, for :math:`f = \\sigma(u)` or
    :math:`\\tanh^2 u`; None for any other ``function``."""
    if isinstance(function, sigmoid):
        return sigmoid(-function.args[0])
    if function.is_Pow and function.exp == 2 and isinstance(function.base, sp.tanh):
        u = function.base.args[0]
        return 4 * sigmoid(2 * u) * sigmoid(-2 * u)
    return None


def _complemented(add: sp.Add) -> tuple[sp.Expr, sp.Expr] | None:
    """``(c f, c (1 - f))`` for the first term ``-c f`` of ``add`` whose coefficient's negation ``c`` is also a
    term of it and whose ``f`` has an accurate complement; None when there is none."""
    numbers = {t for t in add.args if t.is_Number}
    for term in add.args:
        coefficient, function = term.as_coeff_Mul()
        if -coefficient in numbers and (complement := _complement(function)) is not None:
            return term, -coefficient * complement
    return None


def accurate_derivatives(expr: sp.Expr) -> sp.Expr:
    r"""``expr`` with :math:`c - c\sigma(u)` as :math:`c\sigma(-u)` and :math:`c - c\tanh^2 u` as
    :math:`4c\sigma(2u)\sigma(-2u)`: equal, and accurate where :math:`\sigma(u)` or :math:`\tanh u` round to 1
    (from :math:`u \approx 17` and :math:`|u| \approx 9` in float32), where the differences lose every digit;
    a few roundings more where they do not (a sum of such terms that cancels, near a root of mish's gradient,
    shows them). SymPy writes the derivatives of sigmoid and tanh in the first forms (``sigmoid.fdiff`` keeps the
    textbook :math:`\sigma(1 - \sigma)`, which the derivations show)."""
    def rewrite(add: sp.Add) -> sp.Expr:
        term, accurate = _complemented(add)
        terms = list(add.args)
        terms.remove(term)
        terms.remove(-term.as_coeff_Mul()[0])
        return sp.Add(*terms, accurate)

    return expr.replace(lambda e: e.is_Add and _complemented(e) is not None, rewrite)


#: Where :func:`stable_log_cosh` changes form: both are within 4 ulp from 0.625 to 0.875 (measured against
#: mpmath in float32 and float64), the small one's error grows with |u| and the large one's cancels below.
_LOG_COSH_SPLIT = sp.Rational(3, 4)


def stable_log_cosh(u: sp.Expr) -> sp.Expr:
    r""":math:`\log\cosh u` in two forms, each accurate on its side of :math:`|u| = 3/4`:
    :math:`\log(1 + 2\sinh^2(u/2))` below (:math:`\cosh u - 1 = 2\sinh^2(u/2)` without rounding 1 + a small
    number, with ``log1p``), and :math:`|u| - \log 2 + \log(1 + e^{-2|u|})` above, with :math:`e^{-2|u|}` as
    :math:`(e^{-|u|})^2` grouped, so that no printer merges them back (:math:`-2|u|` overflows for :math:`|u|`
    above half the largest float). :math:`\cosh u` overflows from :math:`|u| \approx 89` in float32, where
    :math:`\log\cosh u` is about :math:`|u| - \log 2`; neither form does (the small one's argument is
    clamped: both are evaluated), and near 0 the value :math:`u^2/2` keeps its digits, where the large form
    alone would subtract :math:`\log 2` from about :math:`\log 2`."""
    a = sp.Abs(u)
    near_zero = log1p(2 * sp.sinh(sp.Min(a, _LOG_COSH_SPLIT) / 2) ** 2)
    return sp.Piecewise((near_zero, a < _LOG_COSH_SPLIT),
                        (a - sp.log(2) + log1p(grouped(sp.exp(-a)) ** 2), True))


#: exp(-800) is 0 in float64 and float32 (the smallest subnormal float64 is about exp(-745)).
_EXP_ZERO = 800


def _gaussian_clamp(exponent: sp.Expr) -> sp.Expr | None:
    """``exponent`` = c u^2 (c a negative number) with u clamped to where c u^2 >= -800; None for any other."""
    coefficient, rest = exponent.as_coeff_Mul()
    if not (coefficient.is_negative and rest.is_Pow and rest.exp == 2) or isinstance(rest.base, (sp.Max, sp.Min)):
        return None
    bound = sp.sqrt(sp.Integer(_EXP_ZERO) / -coefficient)
    return coefficient * sp.Max(sp.Min(rest.base, bound), -bound) ** 2


def clamp_gaussians(expr: sp.Expr) -> sp.Expr:
    r"""``expr`` with each :math:`e^{c u^2}` (:math:`c < 0`) as :math:`e^{c \min(\max(u, -L), L)^2}`,
    :math:`c L^2 = -800`: the same value in float32 and float64 (both are 0 beyond :math:`L`), and no overflow of
    :math:`u^2` (from :math:`|u| = 1.8 \cdot 10^{19}` in float32), whose :math:`e^{-\infty} = 0` is right but
    raises an overflow warning. The catalog's GELU clamps its Gaussian so by hand; a user op's derivative of
    :math:`\Phi` or erf gets it from :func:`symdl.export.define_op`."""
    return expr.replace(lambda e: isinstance(e, sp.exp) and _gaussian_clamp(e.args[0]) is not None,
                        lambda e: sp.exp(_gaussian_clamp(e.args[0])))


def fold_piecewise(expr: sp.Expr) -> sp.Expr:
    """``sympy.piecewise_fold`` that does not cross ``rowsum``/``rowmax``.

    Folding ``rowsum(Piecewise((a, c), (0, True)))`` into
    ``Piecewise((rowsum(a), c), ...)`` would be wrong: the condition varies
    along the row being reduced. Each reduction's argument is folded on its own.
    """
    if not expr.args or not expr.has(sp.Piecewise):
        return expr  # untouched: rebuilding would re-evaluate deliberately unevaluated products
    if isinstance(expr, (rowsum, rowmax)):
        return expr.func(fold_piecewise(expr.args[0]))
    if isinstance(expr, sp.Piecewise):  # its pairs' expressions (sympy.piecewise_fold refuses a bare pair)
        rebuilt = sp.Piecewise(*((fold_piecewise(e), c) for e, c in expr.args))
    else:
        rebuilt = expr.func(*(fold_piecewise(a) for a in expr.args))
    hidden = {r: sp.Dummy(f"row{i}") for i, r in enumerate(
        sorted(rebuilt.atoms(rowsum, rowmax), key=sp.default_sort_key))}
    folded = sp.piecewise_fold(rebuilt.xreplace(hidden))
    return folded.xreplace({d: r for r, d in hidden.items()})


def expand_row(expr: sp.Expr, full: Sequence[sp.Symbol], n: int) -> list[sp.Expr]:
    """Expand a row formula into its ``n`` explicit components.

    ``full`` symbols are vectors along the reduction axis: symbol ``z`` becomes
    ``z_0 ... z_{n-1}``; ``rowsum``/``rowmax`` become explicit sums and maxima.
    Every other symbol is a scalar shared by all components.
    """
    components = {s: [sp.Symbol(f"{s.name}_{i}", **s.assumptions0) for i in range(n)] for s in full}

    def component(e: sp.Expr, i: int) -> sp.Expr:
        if e in components:
            return components[e][i]
        if e == NUM_CLASSES:
            return sp.Integer(n)
        if isinstance(e, rowsum):
            return sp.Add(*(component(e.args[0], j) for j in range(n)))
        if isinstance(e, rowmax):
            return sp.Max(*(component(e.args[0], j) for j in range(n)))
        if not e.args:
            return e
        return e.func(*(component(a, i) for a in e.args))

    return [component(expr, i) for i in range(n)]


def row_components(symbol: sp.Symbol, n: int) -> list[sp.Symbol]:
    """The component symbols :func:`expand_row` uses for ``symbol``."""
    return [sp.Symbol(f"{symbol.name}_{i}", **symbol.assumptions0) for i in range(n)]

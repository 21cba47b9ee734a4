"""LaTeX for catalog formulas and update rules: kernel and optimizer docstrings, `symdl show`, and
derivations/.

Uses SymPy's LaTeX printer on the catalog expressions (latexify-py prints
NumPy calls such as ``np.where`` literally, so kernels are printed from the
SymPy side, as DESIGN.md recommends).
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.latex import LatexPrinter, translate

from symdl.catalog.optimizers import LATEX_NAMES, UpdateRule
from symdl.catalog.spec import Formula, Op


#: Parameter names that have a textbook letter (PyTorch's docs use the same ones).
CONVENTIONAL_LETTERS: dict[str, str] = {"eps": r"\epsilon", "lambd": r"\lambda", "num_classes": "C"}


def _is_index(part: str) -> bool:
    """A name part that reads as a subscript index: one letter, or digits."""
    return len(part) == 1 or part.isdigit()


#: Printing-only names for the constants a textbook writes under one root (SymPy splits sqrt(2 pi) into sqrt(2)
#: sqrt(pi) and moves a 1/2 out: the normal density's 1/sqrt(2 pi) prints as sqrt(2) / (2 sqrt(pi))).
_ROOT_2PI = sp.Symbol(r"\sqrt{2 \pi}", positive=True)
_ROOT_2_OVER_PI = sp.Symbol(r"\sqrt{\frac{2}{\pi}}", positive=True)
_ROOT_2 = sp.Symbol(r"\sqrt{2}", positive=True)


def textbook_constants(product: sp.Mul) -> sp.Expr:
    """``product`` with its sqrt(2) written as a textbook writes it, for printing only: sqrt(2) / (2 sqrt(pi)) as
    1 / sqrt(2 pi), sqrt(2) / sqrt(pi) as sqrt(2 / pi) (GELU's tanh form), sqrt(2) sqrt(pi) as sqrt(2 pi) and
    sqrt(2) x / 2 as x / sqrt(2) (the constants become symbols named in LaTeX: the result is not for computing).
    ``product`` itself where it has no sqrt(2)."""
    two, root_pi = sp.sqrt(2), sp.sqrt(sp.pi)
    if two not in product.args:
        return product
    factors = list(product.args)
    factors.remove(two)
    coefficient = next((f for f in factors if f.is_Rational), sp.S.One)
    rest = [f for f in factors if not f.is_Rational]
    halved = coefficient.q % 2 == 0  # a 1/2 to take into the root: sqrt(2) / 2 = 1 / sqrt(2)
    if 1 / root_pi in rest:
        rest.remove(1 / root_pi)
        root, coefficient = (1 / _ROOT_2PI, 2 * coefficient) if halved else (_ROOT_2_OVER_PI, coefficient)
    elif root_pi in rest:
        rest.remove(root_pi)
        root = _ROOT_2PI
    elif halved:
        root, coefficient = 1 / _ROOT_2, 2 * coefficient
    else:
        return product
    return sp.Mul(coefficient, root, *rest)


class CatalogLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, mended where it prints invalid or misleading LaTeX for catalog
    expressions."""

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        # SymPy prints a multi-letter name as a product of italic letters with the rest as a
        # subscript (negative_slope as negative_{slope}); a PyTorch parameter name prints upright
        # instead, whole (\mathrm{negative\_slope}), keeping one-letter or numeric suffixes as
        # indices (weight_k as \mathrm{weight}_{k}). Greek or one-letter names (eta_min, T_max,
        # beta1), SymPy's modifiers (vhat) and names already in LaTeX (\eta_{t-1}) keep SymPy's form.
        if expr in self._settings["symbol_names"]:
            return super()._print_Symbol(expr, style)
        if expr.name in CONVENTIONAL_LETTERS:
            return CONVENTIONAL_LETTERS[expr.name]
        head = split_super_sub(expr.name)[0]
        if len(head) == 1 or translate(head) != head or "\\" in expr.name:  # (a name written in LaTeX)
            return super()._print_Symbol(expr, style)
        parts = expr.name.split("_")
        indices = []
        while len(parts) > 1 and _is_index(parts[-1]):
            indices.insert(0, parts.pop())
        word = r"\mathrm{" + r"\_".join(parts) + "}"
        return word + (f"_{{{','.join(indices)}}}" if indices else "")

    def _needs_mul_brackets(self, expr: sp.Basic, first: bool = False, last: bool = False) -> bool:
        # A grouped product (kept as one unit for the kernel's order of operations) after another factor
        # prints bracketed, x \left(x \phi\right), not as the run of letters x x \phi (a fraction is
        # already one unit on the page).
        if isinstance(expr, sp.UnevaluatedExpr) and expr.args[0].is_Mul and not first:
            return not self._print(expr).startswith(r"\frac")
        return super()._needs_mul_brackets(expr, first=first, last=last)

    def _print_Transpose(self, expr: sp.Transpose) -> str:
        # X^{\top}, as the matrix engine (symdl.steps.matrix) writes it: SymPy's X^{T} beside it made a handout
        # spell one transpose two ways (and T reads as a matrix or a time step)
        text: str = super()._print_Transpose(expr)
        return text.removesuffix("^{T}") + r"^{\top}"

    def _as_ordered_terms(self, expr: sp.Basic, order: str | None = None) -> list[sp.Basic]:
        # A sum opens with a positive term where it has one, as it is written by hand: x - mu, not SymPy's
        # -mu + x (its canonical order sorts mu before x); the other terms keep SymPy's order.
        terms: list[sp.Basic] = list(super()._as_ordered_terms(expr, order=order))
        if isinstance(expr, sp.Add) and terms and terms[0].could_extract_minus_sign():
            first = next((i for i, t in enumerate(terms) if not t.could_extract_minus_sign()), None)
            if first is not None:
                terms.insert(0, terms.pop(first))
        return terms

    def _print_Mul(self, expr: sp.Mul) -> str:
        # the normal density's 1 / sqrt(2 pi), not SymPy's sqrt(2) / (2 sqrt(pi)) (:func:`textbook_constants`); a
        # derivative of the product still sees the product itself (d/dx, not a partial for the constant's symbol)
        written = textbook_constants(expr)
        return super()._print_Mul(expr) if written is expr else self._print(written)

    def _print_expm1(self, expr: sp.Function, exp: str | None = None) -> str:
        # SymPy reads the trailing digit of expm1 as a subscript (\operatorname{expm}_{1}); log1p, whose digit is
        # inside the name, prints whole: written like it
        power = "" if exp is None else f"^{{{exp}}}"
        return rf"\operatorname{{expm1}}{power}{{\left({self._print(expr.args[0])} \right)}}"

    def _print_Piecewise(self, expr: sp.Piecewise, exp: str | None = None) -> str:
        # SymPy hands a power of a function to its printer as exp=, and a Piecewise is a function whose printer
        # takes none (TypeError): a user's asinh(x log cosh(2x)) squares log cosh's piecewise stable form
        cases = super()._print_Piecewise(expr)
        return cases if exp is None else rf"\left({cases}\right)^{{{exp}}}"

    def _print_Pow(self, expr: sp.Pow) -> str:
        # SymPy prints an unevaluated exponential or power raised to a power with two superscripts
        # (UnevaluatedExpr(exp(a))**2 as e^{a}^{2}), which LaTeX rejects: parenthesise the base.
        base = expr.base.args[0] if isinstance(expr.base, sp.UnevaluatedExpr) else None
        if base is not None and (base.is_Pow or isinstance(base, sp.exp)):
            return rf"\left({self._print(base)}\right)^{{{self._print(expr.exp)}}}"
        return super()._print_Pow(expr)


def latex(expr: sp.Basic, **settings: object) -> str:
    """LaTeX of one catalog expression (``settings``: SymPy's, e.g. ``symbol_names``)."""
    return CatalogLatexPrinter(settings).doprint(expr)


#: The output's letter per catalog family: a loss's targets are often ``y``, so its value is \ell.
OUTPUT_SYMBOLS: dict[str, str] = {"activation": "y", "loss": r"\ell"}


def equation_latex(op: Op, expr: sp.Basic) -> str:
    """``output = expr``: a definition, stable form or special case of ``op``."""
    return f"{OUTPUT_SYMBOLS[op.family]} = {latex(expr)}"


def derivative_latex(op: Op, symbol: str) -> str:
    """The derivative of ``op``'s output with respect to ``symbol`` (LaTeX), as a fraction."""
    return rf"\frac{{\partial {OUTPUT_SYMBOLS[op.family]}}}{{\partial {symbol}}}"


def gradient_latex(op: Op, formula: Formula, input_name: str) -> str:
    """The closed-form gradient (or VJP) for one input, as an equation."""
    item = next(i for i in op.inputs if i.name == input_name)
    closed = formula.grads.get(input_name)
    expr = closed if closed is not None else sp.diff(formula.definition, item.symbol)
    symbol = latex(item.symbol)
    if op.traits.over_rows:
        return rf"\bar{{{symbol}}} = {latex(expr)}"
    return f"{derivative_latex(op, symbol)} = {latex(expr)}"


def formula_latex(op: Op, formula: Formula) -> list[str]:
    """reStructuredText math blocks for a formula's definition and gradients."""
    lines = [".. math::", "", f"    {equation_latex(op, formula.definition)}", ""]
    if formula.stable is not None:
        lines += ["Stable form:", "", ".. math::", "", f"    {equation_latex(op, formula.stable)}", ""]
    grads = [gradient_latex(op, formula, i.name) for i in op.differentiable_inputs]
    lines += ["Gradient:", "", ".. math::", ""] + [f"    {g}" for g in grads]
    return lines


class _UpdateLatexPrinter(CatalogLatexPrinter):
    """Prints an update's right-hand side with the updated variable as the first term of a sum, as a textbook
    writes it (``\\theta - d \\eta``, ``G + d^{2}``); SymPy's term order put it last (``- d \\eta + \\theta``)."""

    def __init__(self, target: sp.Basic, settings: dict[str, object]) -> None:
        super().__init__(settings)
        self._target = target

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        terms = list(super()._as_ordered_terms(expr, order=order))
        if self._target in terms:
            terms.remove(self._target)
            terms.insert(0, self._target)
        return terms


def rule_latex(rule: UpdateRule) -> list[str]:
    """An update rule as LaTeX lines ``target \\leftarrow expression`` (assignments in order)."""
    settings = {"symbol_names": LATEX_NAMES}
    return [rf"{latex(t, **settings)} \leftarrow {_UpdateLatexPrinter(t, settings).doprint(e)}"
            for t, e in rule.steps if t != e]

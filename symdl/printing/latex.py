"""LaTeX for catalog formulas and update rules: kernel and optimizer docstrings, `symdl show`, and
derivations/.

Uses SymPy's LaTeX printer on the catalog expressions (latexify-py prints
NumPy calls such as ``np.where`` literally, so kernels are printed from the
SymPy side, as DESIGN.md recommends).
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from symdl.catalog.optimizers import LATEX_NAMES, UpdateRule
from symdl.catalog.spec import Formula, Op


class CatalogLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, mended where it prints invalid LaTeX for catalog expressions."""

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


def gradient_latex(op: Op, formula: Formula, input_name: str) -> str:
    """The closed-form gradient (or VJP) for one input, as an equation."""
    item = next(i for i in op.inputs if i.name == input_name)
    closed = formula.grads.get(input_name)
    expr = closed if closed is not None else sp.diff(formula.definition, item.symbol)
    symbol = latex(item.symbol)
    if op.kind in ("row", "class_loss"):
        return rf"\bar{{{symbol}}} = {latex(expr)}"
    return rf"\frac{{\partial y}}{{\partial {symbol}}} = {latex(expr)}"


def formula_latex(op: Op, formula: Formula) -> list[str]:
    """reStructuredText math blocks for a formula's definition and gradients."""
    lines = [".. math::", "", f"    y = {latex(formula.definition)}", ""]
    if formula.stable is not None:
        lines += ["Stable form:", "", ".. math::", "", f"    y = {latex(formula.stable)}", ""]
    grads = [gradient_latex(op, formula, i.name) for i in op.differentiable_inputs]
    lines += ["Gradient:", "", ".. math::", ""] + [f"    {g}" for g in grads]
    return lines


def rule_latex(rule: UpdateRule) -> list[str]:
    """An update rule as LaTeX lines ``target \\leftarrow expression`` (assignments in order)."""
    return [rf"{latex(t, symbol_names=LATEX_NAMES)} \leftarrow {latex(e, symbol_names=LATEX_NAMES)}"
            for t, e in rule.steps if t != e]

"""Expression text that both symdl's safe parser (:func:`symdl.expr.parse`) and SymPy's ``parse_expr`` read.

SymPy's ``str`` is close, but prints ``Abs``, ``Piecewise((a, c), ...)``, ``sign``, ``E`` and
``x > 0 & x < 1``, which symdl's parser does not take (or SymPy reads back wrongly: Python's
``and`` on two relations raises, ``x == 0`` is a bool). Here a piecewise expression prints as
nested ``where(cond, a, b)`` with one comparison per condition (``and``/``or``/``==`` unfolded into
nested ``where``), ``sign``, the Kronecker delta, the kernels' mask ``indicator(c)`` and ``xlogy`` as
``where``, the kernels' other primitives by their textbook formulas (``clamped_log(u, c)`` as
``Max(log(u), c)``), the maximum as ``Max``, ``e`` as ``exp(1)``, and an indexed ``z[k]`` as the name ``z_k``.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

__all__ = ["expression_text", "ParseablePrinter"]


class ParseablePrinter(StrPrinter):
    """SymPy's string printer, with one ``_print_<Class>`` per construct symdl's parser spells differently."""

    printmethod = "_symdl_text"  # not SymPy's _sympystr, which Indexed defines (as x[j])

    def _where(self, condition: sp.Basic, then: sp.Expr, otherwise: sp.Expr) -> str:
        if condition is sp.true:
            return self._print(then)
        if condition is sp.false:
            return self._print(otherwise)
        if isinstance(condition, sp.And):
            first, *rest = condition.args
            return self._where(first, sp.Piecewise((then, sp.And(*rest)), (otherwise, True)), otherwise)
        if isinstance(condition, sp.Or):
            first, *rest = condition.args
            return self._where(first, then, sp.Piecewise((then, sp.Or(*rest)), (otherwise, True)))
        if isinstance(condition, sp.ITE):  # if a then b else c, as a condition
            a, b, c = condition.args
            first = sp.Piecewise((then, b), (otherwise, True))
            return self._where(a, first, sp.Piecewise((then, c), (otherwise, True)))
        if isinstance(condition, sp.Not):
            return self._where(condition.args[0], otherwise, then)
        if isinstance(condition, sp.Eq):
            a, b = condition.args
            return self._where(sp.Lt(a, b), otherwise, sp.Piecewise((otherwise, sp.Gt(a, b)), (then, True)))
        if isinstance(condition, sp.Ne):
            return self._where(sp.Eq(*condition.args), otherwise, then)
        return f"where({self._print(condition)}, {self._print(then)}, {self._print(otherwise)})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (value, condition), *rest = expr.args
        otherwise = sp.Piecewise(*rest) if rest else sp.nan
        if not rest and condition is not sp.true:
            otherwise = sp.S.Zero  # SymPy leaves a piecewise undefined outside its conditions; never printed here
        return self._where(condition, value, otherwise)

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_sign(self, expr: sp.sign) -> str:
        x = expr.args[0]
        return self._print(sp.Piecewise((1, x > 0), (-1, x < 0), (0, True)))

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        x = expr.args[0]
        at_zero = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        return self._print(sp.Piecewise((1, x > 0), (0, x < 0), (at_zero, True)))

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        return self._print(sp.Piecewise((1, sp.Eq(*expr.args)), (0, True)))

    def _print_indicator(self, expr: sp.Basic) -> str:
        # symdl's [c] (a kernel's 0/1 mask; symdl.functions.indicator), which the parser spells where(c, 1, 0)
        return self._where(expr.args[0], sp.S.One, sp.S.Zero)

    def _print_xlogy(self, expr: sp.Basic) -> str:
        x, y = expr.args  # x log y, 0 where x = 0 (torch.xlogy)
        return self._where(sp.Eq(x, 0), sp.S.Zero, x * sp.log(y))

    def _textbook(self, expr: sp.Basic) -> str:
        """A kernel primitive the parser has no name for, by its textbook formula (its arguments as they are)."""
        from symdl.functions import to_textbook

        holes = sp.symbols(f"_hole0:{len(expr.args)}")
        return self._print(to_textbook(expr.func(*holes)).xreplace(dict(zip(holes, expr.args, strict=True))))

    # quotient_at_zero(n, x, c, s) = n/x; clamped_log(u, c) = Max(log(u), c); clamped_log1p(u, c) = Max(log(1 + u), c)
    _print_quotient_at_zero = _print_clamped_log = _print_clamped_log1p = _textbook

    def _print_Exp1(self, expr: sp.Basic) -> str:
        return "exp(1)"

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        return "_".join([str(expr.base), *(self._print(i) for i in expr.indices)])

    def _print_Mul(self, expr: sp.Mul) -> str:
        # the chain rule's d/du f(u) * d/dx u(x), kept in the order the rule states it
        if len(expr.args) > 1 and all(isinstance(a, sp.Derivative) for a in expr.args):
            return "*".join(self._print(a) for a in expr.args)
        return super()._print_Mul(expr)

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        variables = "".join(self._print(v) for v, _ in expr.variable_count)
        return f"d/d{variables}[{self._print(expr.expr)}]"

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr)) if abs(float(expr)) < 1e16 else super()._print_Float(expr)

    def _print_UnevaluatedExpr(self, expr: sp.UnevaluatedExpr) -> str:
        return f"({self._print(expr.args[0])})"


def expression_text(expr: sp.Basic) -> str:
    """``expr`` as text for symdl's parser and SymPy's."""
    return ParseablePrinter().doprint(expr)


class ReadingPrinter(ParseablePrinter):
    """For reading in a terminal: sums and the Kronecker delta in their textbook shape (not parseable)."""

    def _print_Sum(self, expr: sp.Sum) -> str:
        (k, low, high), = expr.limits[:1]
        return f"sum[{self._print(k)}={self._print(low)}..{self._print(high)}]({self._print(expr.function)})"

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        return "delta_" + "".join(self._print(a) for a in expr.args)


def reading_text(expr: sp.Basic) -> str:
    """``expr`` for the terminal (:class:`ReadingPrinter`)."""
    return ReadingPrinter().doprint(expr)

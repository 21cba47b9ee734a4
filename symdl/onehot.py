r"""Lower a class loss's one-hot target to gathers and scatters.

Class losses are written along a row with a target row :math:`t` that, for
class-index targets, is one-hot at the target class :math:`k`. Computing with
the one-hot row costs full passes over the logits where a gather would do, so
the code generator rewrites the row formulas for that case:

* a row sum of an expression :math:`E(t)` that is affine in :math:`t`,

  .. math:: \sum_j E_j(t_j) = \sum_j E_j(0) + \bigl(E_k(1) - E_k(0)\bigr),

  becomes a row sum of :math:`E(0)` (dropped when it is 0) plus the *pick* of
  :math:`E(1) - E(0)`: that expression with every row array :math:`x` replaced
  by its value :math:`x_k` at the target class (row reductions inside it are
  constant along the row, so they stay as they are);
* a row expression :math:`G(t) = G(0) + t\,(G(1) - G(0))` (a gradient)
  becomes the full array :math:`G(0)` plus the pick of :math:`\\partial G / \\partial t = G(1) - G(0)`
  added at column :math:`k` (:func:`symdl.kernels._runtime.add_at_targets`).

Inner row sums are lowered first, so :math:`\sum_j w_j t_j` becomes
:math:`w_k` before the expression around it is split.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from symdl.functions import rowmax, rowsum

_ROW_REDUCTIONS = (rowsum, rowmax)


class NotAffineError(ValueError):
    """The target row enters a formula non-linearly: it has no gather form."""


def picked_symbol(symbol: sp.Symbol) -> sp.Symbol:
    """The per-row value of ``symbol`` at the target class (``x`` -> ``x_k``)."""
    return sp.Symbol(f"{symbol.name}_k", real=True)


def pick(expr: sp.Expr, picked: Mapping[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """``expr`` at the target class: row arrays replaced, row reductions kept."""
    reductions = {r: sp.Dummy() for r in expr.atoms(*_ROW_REDUCTIONS)}
    back = {d: r for r, d in reductions.items()}
    return expr.xreplace(reductions).xreplace(dict(picked)).xreplace(back)


def split_affine(expr: sp.Expr, t: sp.Symbol) -> tuple[sp.Expr, sp.Expr]:
    """``(E(0), dE/dt)`` for ``expr`` affine in ``t`` (then ``dE/dt = E(1) - E(0)``);
    raises :class:`NotAffineError` otherwise.

    The derivative keeps the formula's own grouping (``exp(x - max x)`` stays
    one exponential), where expanding ``E(1) - E(0)`` would split it.
    """
    slope = sp.diff(expr, t)
    if sp.expand_mul(sp.diff(slope, t)) != 0:
        raise NotAffineError(f"the target enters {expr} non-linearly")
    return expr.xreplace({t: sp.S.Zero}), slope


def lower_rowsums(expr: sp.Expr, t: sp.Symbol, picked: Mapping[sp.Symbol, sp.Symbol]) -> sp.Expr:
    """``expr`` with every row sum over the one-hot ``t`` replaced by its gather form."""
    if not expr.has(t):
        return expr
    if expr.args:
        expr = expr.func(*(lower_rowsums(a, t, picked) for a in expr.args))
    if isinstance(expr, rowsum) and expr.has(t):
        at_zero, difference = split_affine(expr.args[0], t)
        return (rowsum(at_zero) if at_zero != 0 else sp.S.Zero) + pick(difference, picked)
    if isinstance(expr, rowmax) and expr.has(t):
        raise NotAffineError(f"a row maximum depends on the target: {expr}")
    return expr


def lower_row(expr: sp.Expr, t: sp.Symbol, picked: Mapping[sp.Symbol, sp.Symbol]) -> tuple[sp.Expr, sp.Expr]:
    """A row expression as ``(base, at_target)``: the value is ``base`` everywhere plus
    ``at_target`` added at the target column."""
    base, difference = split_affine(lower_rowsums(expr, t, picked), t)
    return base, pick(difference, picked)

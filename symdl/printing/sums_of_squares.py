"""Square roots of sums of squares as :func:`~symdl.functions.hypot`: no square is formed that overflows.

A derived gradient such as asinh's :math:`1 / \\sqrt{1 + x^2}`, or a definition such as the pseudo-Huber
loss :math:`\\delta^2 (\\sqrt{1 + (d / \\delta)^2} - 1)`, printed as written, squares :math:`x` first:
:math:`x^2` overflows from :math:`|x| \\approx 1.8 \\cdot 10^{19}` in float32 (:math:`1.3 \\cdot 10^{154}` in
float64), where the root is still far from overflowing, and the kernel returns ``inf`` or 0 (the
pseudo-Huber gradient :math:`d / \\sqrt{1 + d^2}` becomes :math:`d / \\infty = 0` where it is :math:`\\pm 1`).

:func:`as_hypot` rewrites every power :math:`(\\sum_i r_i^2)^{k/2}` whose base is a sum of squares (each
term an even power, a positive number or parameter, or a product of these; one term squares something) and
whose exponent is :math:`k/2` for an odd :math:`k` into :math:`h^k`, :math:`h = \\operatorname{hypot}(r_1,
\\operatorname{hypot}(r_2, \\ldots))`: the root of the sum is never formed from the squares. Integer powers
are left alone: the sum itself overflows only where its true value does, and its reciprocal then rounds to 0
or to a subnormal number (tanh's derivative :math:`4u^2 / (u^2 + 1)^2`, :math:`u = e^{-|x|} \\le 1`, would
only cost a hypot); :func:`symdl.export.define_op` asks for them (``reciprocals=True``) in a user op's gradient
that is not finite at the extremes otherwise (arctan's :math:`1 / (1 + x^2)`). The rewrite is exact in real
arithmetic; it runs at print time, after every proof, so proofs and derivations read the formula as written.
"""

from __future__ import annotations

import functools

import sympy as sp

from symdl.functions import hypot

__all__ = ["as_hypot", "square_root"]


def square_root(term: sp.Expr) -> tuple[sp.Expr, bool] | None:
    """An :math:`r` with :math:`r^2 = ` ``term`` and whether ``term`` squares something, if ``term`` is a product
    of even powers and positive factors (numbers, symbols declared positive: a catalog parameter the kernel
    checks); the sign of :math:`r` does not matter to hypot. None otherwise."""
    roots, squares = [], False
    for factor in sp.Mul.make_args(term):
        if factor.is_Pow and factor.exp.is_Integer and factor.exp % 2 == 0:
            roots.append(factor.base ** (factor.exp // 2))
            squares = True
        elif factor.is_positive:
            roots.append(sp.sqrt(factor))
        else:
            return None
    return sp.Mul(*roots), squares


def _roots(base: sp.Expr) -> list[sp.Expr] | None:
    """The roots of the terms of ``base`` if it is a sum of such terms of which one squares something, variables
    first (the frameworks' hypot takes an array first), else None."""
    if not base.is_Add:
        return None
    found = [square_root(term) for term in base.args]
    if any(f is None for f in found) or not any(squares for _, squares in found):
        return None
    return sorted((r for r, _ in found), key=lambda r: (r.is_number, sp.default_sort_key(r)))


def _as_power_of_hypot(expr: sp.Pow) -> sp.Expr:
    roots = _roots(expr.base)
    return functools.reduce(hypot, roots) ** (2 * expr.exp)


def as_hypot(expr: sp.Expr, *, reciprocals: bool = False) -> sp.Expr:
    """``expr`` with every power :math:`k/2`, :math:`k` odd, of a sum of squares as a power of
    :func:`~symdl.functions.hypot`, innermost first; with ``reciprocals``, negative integer powers too:
    :math:`1 / (1 + x^2) = \\operatorname{hypot}(x, 1)^{-2}` underflows quietly where the square overflows
    (arctan's derivative at :math:`x = 10^{30}` in float32), at the cost of about an ulp more rounding and a
    hypot: :func:`symdl.export.define_op` asks for it only for a gradient that is not finite at the extremes
    otherwise."""
    def rewritable(e: sp.Expr) -> bool:
        if not e.is_Pow:
            return False
        twice = 2 * e.exp
        wanted = twice.is_Integer and (twice.is_odd or (reciprocals and twice.is_negative))
        return wanted and _roots(e.base) is not None

    return expr.replace(rewritable, _as_power_of_hypot)

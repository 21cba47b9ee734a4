r"""Verification of every step of a derivation: each claim ``a = b`` proven, and how.

In order, cheapest first:

1. ``expand(a - b) == 0`` (method ``expand``);
2. a 50-digit numeric comparison (to 40 digits; 12 where the expressions hold decimal numbers,
   which carry 15) at fixed floating-point sample points chosen away from the
   usual kinks (0, integers, simple fractions): it refutes a wrong step at once, and where
   it holds a time-bounded ``simplify(a - b) == 0`` is tried on small claims (method ``simplify``); if that
   does not finish, the numeric identity stands (method ``numeric``, the sample point count
   in ``detail``);
3. claims about index sums (``Sum``, ``Indexed``, ``KroneckerDelta``) are checked on an instance
   (``n = 4``, the differentiated index ``j = 2``, sums expanded), then as above on the
   instance (method ``instance``).

Exact rationals are never used as sample points: ``x**x`` at a rational made SymPy hang.
``simplify`` is bounded by :func:`symdl.expr.simplify_within` (a limit on CPU time, in any thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import sympy as sp

from symdl.functions import to_textbook
from symdl.steps.tree import Check, Derivation, Step

__all__ = ["verify_claim", "verify_step", "verify_derivation", "SAMPLES", "INSTANCE_N", "INSTANCE_J"]

#: Sample values (away from 0, +-1, integers and simple fractions, where kinks and removable
#: singularities sit); a point where either side is not a finite real number is skipped.
SAMPLES: tuple[float, ...] = (0.7316, -1.3137, 2.4142, -0.2791, 1.1709, -2.2361, 0.4453, 3.1623)
#: How many points must agree.
POINTS = 4
#: The instance index-level claims are checked on: n = 4 terms, differentiating z_j at j = 2.
INSTANCE_N, INSTANCE_J = 4, 2
DIGITS = 50
TOLERANCE = sp.Float(10) ** -40
#: The tolerance where an expression holds decimal (15-digit) numbers.
FLOAT_TOLERANCE = sp.Float(10) ** -12
#: Default CPU seconds a single ``simplify`` may take.
SIMPLIFY_SECONDS = 0.5
#: ``simplify`` is tried only on claims this small (larger ones rarely finish in time; the numeric identity stands).
SIMPLIFY_MAX_OPS = 40


def _is_zero_expanded(difference: sp.Expr) -> bool:
    try:
        return sp.expand(difference) == 0
    except (RecursionError, TypeError, ValueError):  # expand can fail on exotic nodes; others decide
        return False


def _sizes(*exprs: sp.Expr) -> set[sp.Symbol]:
    """The symbols that are sizes: sums' upper limits, and an integer ``n`` (a sum's length after it collapsed)."""
    found = {s for e in exprs for s in e.free_symbols if s.is_integer and s.name == "n"}
    for e in exprs:
        for s in e.atoms(sp.Sum):
            for _, _, high in s.limits:
                found |= high.free_symbols
    return found


def _index_instance(expr: sp.Expr, sizes: set[sp.Symbol] | None = None) -> sp.Expr:
    """``expr`` at n = 4, j = 2: sizes (:func:`_sizes`) as 4, other free integer indices as 2, sums
    expanded, ``z[i]`` replaced by plain symbols ``z_i``."""
    values: dict[sp.Basic, sp.Expr] = {s: sp.Integer(INSTANCE_N) for s in (_sizes(expr) if sizes is None else sizes)}
    for s in expr.free_symbols:
        if s.is_integer and s not in values:
            values[s] = sp.Integer(INSTANCE_J)
    concrete = expr.subs(values).doit()
    bases = {i: sp.Symbol(f"{i.base}_{'_'.join(map(str, i.indices))}", real=True) for i in concrete.atoms(sp.Indexed)}
    return concrete.xreplace(bases)


def _numeric_points(symbols: Iterable[sp.Symbol]) -> Iterable[dict[sp.Symbol, sp.Float]]:
    ordered = sorted(symbols, key=sp.default_sort_key)
    for shift in range(len(SAMPLES)):
        point = {}
        for k, s in enumerate(ordered):
            value = SAMPLES[(shift + 3 * k) % len(SAMPLES)]
            if s.is_positive or s.is_nonnegative:
                value = abs(value)
            point[s] = sp.Float(value, DIGITS)
        yield point


def _value(expr: sp.Expr, point: dict[sp.Symbol, sp.Float]) -> complex | None:
    try:
        value = sp.N(to_textbook(expr).xreplace(point).doit(), DIGITS)
        re, im = (sp.N(part, DIGITS) for part in value.as_real_imag())
    except (TypeError, ValueError, ZeroDivisionError, RecursionError, AttributeError, OverflowError, MemoryError):
        return None  # (Overflow/MemoryError: x**x**...**x at a sample point has too many digits for mpmath)
    if not (re.is_Number and im.is_Number) or value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
        return None
    if abs(im) > TOLERANCE * (1 + abs(re)):
        return None  # outside the real domain at this point
    return re


def _numeric(lhs: sp.Expr, rhs: sp.Expr) -> tuple[bool | None, str]:
    """Equal at POINTS sample points (True), different somewhere (False), or too few points (None)."""
    symbols = (lhs.free_symbols | rhs.free_symbols)
    # decimal numbers carry 15 digits: rewriting them (0.3 * 0.3 -> 0.09) moves the last ones
    tolerance = FLOAT_TOLERANCE if lhs.atoms(sp.Float) | rhs.atoms(sp.Float) else TOLERANCE
    agreed = 0
    for point in _numeric_points(symbols):
        a, b = _value(lhs, point), _value(rhs, point)
        if a is None or b is None:
            continue
        if abs(a - b) > tolerance * max(1, abs(a), abs(b)):
            where = ", ".join(f"{s} = {float(v):.4g}" for s, v in point.items())
            return False, f"differ at {where}: {float(a):.6g} vs {float(b):.6g}"
        agreed += 1
        if agreed >= POINTS or not symbols:
            return True, f"equal to {DIGITS} digits at {agreed} points"
    return (None, "too few sample points in the domain") if agreed == 0 else (True, f"equal at {agreed} points")


def _indexed(expr: sp.Expr) -> bool:
    return bool(expr.atoms(sp.Sum, sp.Indexed, sp.KroneckerDelta))


def _simplify_within(expr: sp.Expr, seconds: float) -> tuple[sp.Expr, bool]:
    """symdl's time-bounded simplify (skipped, with the numeric identity standing, if unavailable)."""
    try:
        from symdl.expr import simplify_within
    except ImportError:
        return expr, False
    try:
        return simplify_within(expr, seconds)
    except ImportError:  # the timer's module moved while the layout is reorganised
        return expr, False


def verify_claim(lhs: sp.Expr, rhs: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> Check:
    """Prove ``lhs = rhs`` (see the module docstring for the methods)."""
    method = "numeric"
    if _indexed(lhs) or _indexed(rhs):
        sizes = _sizes(lhs, rhs)
        lhs, rhs, method = _index_instance(lhs, sizes), _index_instance(rhs, sizes), "instance"
    textbook = to_textbook(lhs - rhs)
    if _is_zero_expanded(lhs - rhs) or _is_zero_expanded(textbook):
        return Check(True, "expand" if method == "numeric" else "instance",
                     "" if method == "numeric" else f"n = {INSTANCE_N}, j = {INSTANCE_J}")
    same, detail = _numeric(lhs, rhs)
    if same is False:
        return Check(False, "failed", detail)
    if method == "numeric" and seconds > 0 and sp.count_ops(textbook) <= SIMPLIFY_MAX_OPS:
        simplified, finished = _simplify_within(textbook, seconds)
        if finished and simplified == 0:
            return Check(True, "simplify")
    if same is None:
        return Check(False, "unchecked", detail)
    if method == "instance":
        detail = f"n = {INSTANCE_N}, j = {INSTANCE_J}; {detail}"
    return Check(True, method, detail)  # type: ignore[arg-type]


def verify_step(step: Step, substitute: Callable[[sp.Expr], sp.Expr] | None = None,
                seconds: float = SIMPLIFY_SECONDS) -> Check:
    """Verify one step's own claim (its named subexpressions substituted back first by ``substitute``,
    e.g. :meth:`Derivation.substitute`)."""
    lhs, rhs = step.claim(substitute)
    return verify_claim(lhs, rhs, seconds)


def verify_derivation(derivation: Derivation, seconds: float | None = None,
                      simplify_seconds: float = SIMPLIFY_SECONDS) -> None:
    """Fill ``derivation.checks`` for every step; with ``seconds``, steps past the budget are
    recorded as ``unchecked`` (so a derivation is never reported verified when it was not).

    ``simplify_seconds`` bounds each ``simplify``; 0 never tries it, which makes the recorded
    methods independent of the machine's speed (generated documents use that).
    """
    deadline = None if seconds is None else time.monotonic() + seconds
    for step in derivation.steps():
        if deadline is not None and time.monotonic() > deadline:
            derivation.checks[id(step)] = Check(False, "unchecked", "over the time limit")
            continue
        left = simplify_seconds if deadline is None else deadline - time.monotonic()
        derivation.checks[id(step)] = verify_step(step, derivation.substitute, max(0.0, min(simplify_seconds, left)))

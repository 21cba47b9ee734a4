"""Independent references for exercise answers: mpmath at 50 digits, never symdl's kernels."""

from __future__ import annotations

from collections.abc import Callable

import mpmath

#: Working precision of every reference.
DIGITS = 50


def derivative(f: Callable[[mpmath.mpf], mpmath.mpf], x: float) -> float:
    """``f'(x)`` by mpmath's numerical differentiation at :data:`DIGITS` digits."""
    with mpmath.workdps(DIGITS):
        return float(mpmath.diff(f, mpmath.mpf(x)))


def value(f: Callable[[], mpmath.mpf]) -> float:
    """``f()`` evaluated at :data:`DIGITS` digits."""
    with mpmath.workdps(DIGITS):
        return float(f())


def quad(f: Callable[[mpmath.mpf], mpmath.mpf], low: float, high: float) -> float:
    """The integral of ``f`` over [low, high] (infinite bounds allowed) at :data:`DIGITS` digits."""
    with mpmath.workdps(DIGITS):
        return float(mpmath.quad(f, [low, high]))


def sigmoid(t: mpmath.mpf) -> mpmath.mpf:
    """The logistic function in mpmath."""
    return 1 / (1 + mpmath.exp(-t))


def draw(rng: object, low: float, high: float, decimals: int = 2) -> float:
    """A number for an exercise, rounded so that a student can type it."""
    return round(float(rng.uniform(low, high)), decimals)  # type: ignore[attr-defined]

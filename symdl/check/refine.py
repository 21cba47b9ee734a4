r"""Step-size sweep with Richardson's error estimate, and kink detection.

An entry that fails the first comparison is not yet a failure: the step may
have been too large (truncation, or a kink within ``h`` of ``x``) or too
small (rounding). :func:`sweep` evaluates central differences
:math:`C(h_L)` along each line at ten geometric steps :math:`h_L` from
:math:`16 h` down to :math:`h / 4^7` (further for an element far smaller than
its input's scale), and estimates the error of each as

.. math::

    e_L = \max(|C(h_L) - C(h_{L-1})|, |C(h_{L+1}) - C(h_L)|) + r_L,

Richardson's estimate of the truncation error (:math:`C(h) = f' + c h^2 +
O(h^4)`, so the difference of two levels bounds the error of the finer one
with a 15x margin; taking both neighbours guards against two levels agreeing
by chance), trusted only where the sequence converges (the next difference
shrinks by 2x or is within rounding), plus the rounding bound
:math:`r_L = 2\nu / (2 h_L)`. The noise :math:`\nu` of one evaluation of
``f`` is *measured*: at the finest steps the second difference
:math:`|f(x+h) + f(x-h) - 2 f(x)|` is all rounding (a sum of many terms in
``f`` is noisier than :math:`\epsilon |f|`). The level with the smallest
:math:`e_L` is the best estimate and :math:`e_L` its error.

A **kink** is where the one-sided differences :math:`R(h) = (f(x+h) -
f(x))/h` and :math:`L(h) = (f(x) - f(x-h))/h` converge to different limits.
For smooth ``f`` their gap shrinks like ``h`` (by 4x per level); at a kink
it stays, while each side converges (a jump in ``f`` itself makes both
sides grow like ``1/h`` instead). Two consecutive levels with a gap that is
above rounding, shrinks by less than 2x, and with both sides stable to half
the gap mark the entry as a kink, and the finest such level gives the
one-sided values reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from symdl.check.problem import Problem, element_builder
from symdl.check.tolerances import ROUNDING_FACTOR, machine_epsilon

#: Step factors of the sweep, relative to the first-pass step (directions; elements may reach further).
FACTORS = 16.0 * 4.0 ** -np.arange(10)
LEVELS = FACTORS.size


class Lines(Protocol):
    """``C`` lines through ``x`` along which ``f`` is differentiated."""

    count: int
    f0: np.ndarray

    def at(self, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(plus, minus, magnitude, up, down)`` at sweep level ``level``: values at ``x + h_L d`` and
        ``x - h_L d`` (C, m'), their magnitude for rounding bounds, and the effective steps up and down (C,)."""


@dataclass
class ElementLines:
    """One input element per line: the numeric Jacobian columns of those elements.

    The steps run geometrically from ``16 h_j`` down to ``h_j / 4^7``, or
    further, to ``eps^(1/3) |x_j| / 4^4``, for an element much smaller than
    its input's typical scale (``sqrt`` at 1e-12 next to values near 1).
    """

    problem: Problem
    k: int
    index: np.ndarray
    steps: np.ndarray

    def __post_init__(self) -> None:
        x = np.abs(self.problem.base(self.k)[self.index].astype(np.float64))
        eps = machine_epsilon(self.problem.eval_dtype)
        own = eps ** (1 / 3) * x / 4.0**4
        # Below tiny / eps a step loses relative precision in x + h (subnormal inputs sit "at" 0).
        floor = float(np.finfo(self.problem.eval_dtype).tiny) / eps
        finest = np.minimum(self.steps * 4.0**-7, np.where(own > floor, own, np.inf))
        ratio = (16 * self.steps / finest) ** (1 / (LEVELS - 1))
        self.ladder = 16 * self.steps[None, :] * ratio[None, :] ** -np.arange(LEVELS)[:, None]

    @property
    def count(self) -> int:
        return int(self.index.size)

    @property
    def f0(self) -> np.ndarray:
        return np.broadcast_to(self.problem.f0, (self.count, self.problem.size))

    def at(self, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        base = self.problem.base(self.k)
        x = base[self.index]
        step = self.ladder[level].astype(x.dtype)
        plus, minus = x + step, x - step
        both = np.concatenate([self.index, self.index])
        values = self.problem.rows(self.k, 2 * self.count, element_builder(base, both, np.concatenate([plus, minus])))
        f_plus, f_minus = values[: self.count], values[self.count:]
        up = plus.astype(np.float64) - x.astype(np.float64)
        down = x.astype(np.float64) - minus.astype(np.float64)
        return f_plus, f_minus, np.maximum(np.abs(f_plus), np.abs(f_minus)), up, down


@dataclass
class DirectionLines:
    """Directions ``d_c`` through input ``k``, outputs projected on weights ``w_c``: ``w_c^T J d_c``."""

    problem: Problem
    k: int
    deltas: np.ndarray
    weights: np.ndarray

    @property
    def count(self) -> int:
        return int(self.deltas.shape[0])

    @property
    def f0(self) -> np.ndarray:
        return (self.weights @ self.problem.f0)[:, None]

    def at(self, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        base = self.problem.base(self.k)
        count = self.count
        step = FACTORS[level] * self.deltas
        points = np.empty((2 * count, base.size), base.dtype)
        np.add(base, step, out=points[:count])
        np.subtract(base, step, out=points[count:])
        values = self.problem.rows(self.k, 2 * count, lambda start, stop: points[start:stop])
        f_plus, f_minus = values[:count], values[count:]
        # The steps actually taken, projected on the direction (rounding moves them off it slightly).
        norm = np.einsum("cn,cn->c", self.deltas, self.deltas)
        taken = np.subtract(points[:count], base, out=step)
        up = np.einsum("cn,cn->c", taken, self.deltas) / norm
        taken = np.subtract(base, points[count:], out=step)
        down = np.einsum("cn,cn->c", taken, self.deltas) / norm
        magnitude = np.einsum("cm,cm->c", np.abs(self.weights), np.maximum(np.abs(f_plus), np.abs(f_minus)))
        return (np.einsum("cm,cm->c", self.weights, f_plus)[:, None],
                np.einsum("cm,cm->c", self.weights, f_minus)[:, None], magnitude[:, None], up, down)


@dataclass(frozen=True)
class Sweep:
    """Best numeric derivative along each line (C, m') with its error, and kinks found."""

    value: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    left: np.ndarray
    right: np.ndarray


def sweep(lines: Lines, eval_dtype: np.dtype) -> Sweep:
    """Central differences at every step factor; the best estimate per entry, and kinks."""
    eps = ROUNDING_FACTOR * machine_epsilon(eval_dtype)
    f0 = lines.f0
    central, right, left, magnitude, second, up, down = [], [], [], [], [], [], []
    for level in range(LEVELS):
        plus, minus, size, step_up, step_down = lines.at(level)
        with np.errstate(all="ignore"):
            central.append((plus - minus) / (step_up + step_down)[:, None])
            right.append((plus - f0) / step_up[:, None])
            left.append((f0 - minus) / step_down[:, None])
        magnitude.append(np.maximum(size, np.abs(f0)))
        second.append(np.abs(plus + minus - 2 * f0))
        up.append(step_up[:, None])
        down.append(step_down[:, None])
    c, r, lft = np.array(central), np.array(right), np.array(left)
    up_, down_ = np.array(up), np.array(down)
    # f's own evaluation noise, measured: at the finest steps the second difference is all rounding
    # (the smallest of three, since a kink near x inflates the coarser ones).
    finest = np.array(second)[-3:]
    noise = np.min(np.where(np.isnan(finest), np.inf, finest), axis=0)
    noise = np.maximum(eps * np.array(magnitude), 2 * np.where(np.isfinite(noise), noise, np.inf))
    rounding = noise / (up_ + down_)
    with np.errstate(all="ignore"):
        step_change = np.abs(np.diff(c, axis=0))
        change = np.full(c.shape, np.inf)
        # Richardson's estimate of level L, guarded on both sides against a chance agreement of two levels;
        # trusted only where the sequence converges (the next change shrinks, or is within rounding).
        change[1:] = step_change
        converging = step_change[1:] <= 0.5 * step_change[:-1] + 2 * rounding[2:]
        change[1:-1] = np.where(converging, np.maximum(step_change[:-1], step_change[1:]), np.inf)
        error = change + rounding
    error[~np.isfinite(error)] = np.inf
    kink, at, straddles = _kinks(r, lft, noise / np.minimum(up_, down_))
    # A level whose step straddles a kink near x differentiates across it: when some level does not,
    # those are out. Among the rest, the finest level within 4x of the smallest error is the estimate
    # (the derivative is the limit h -> 0: two plateaus, e.g. beyond and within the distance to a
    # nearby kink, are told apart by taking the finer one).
    error = np.where(straddles & ~straddles.all(axis=0), np.inf, error)
    smallest = error.min(axis=0)
    candidates = error <= 4 * smallest
    best = (error.shape[0] - 1 - np.argmax(candidates[::-1], axis=0))[None]
    value = np.take_along_axis(c, best, 0)[0]
    pick = at[None]
    return Sweep(value, np.take_along_axis(error, best, 0)[0], kink,
                 np.take_along_axis(lft, pick, 0)[0], np.take_along_axis(r, pick, 0)[0])


def _kinks(right: np.ndarray, left: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per entry: whether two consecutive levels show a persistent gap, and the finest such level;
    per level and entry: whether the one-sided differences there show a kink within the step."""
    with np.errstate(all="ignore"):
        gap = np.abs(right - left)
        reliable = np.isfinite(gap) & (gap > 10 * noise)
        level = np.zeros_like(reliable)
        level[1:] = (reliable[1:] & reliable[:-1] & (gap[1:] >= 0.5 * gap[:-1])
                     & (np.abs(right[1:] - right[:-1]) + np.abs(left[1:] - left[:-1]) <= 0.5 * gap[1:]))
    persistent = np.zeros_like(level)
    persistent[1:] = level[1:] & level[:-1]
    finest = level.shape[0] - 1 - np.argmax(persistent[::-1], axis=0)
    # A gap that collapses at a finer, still measurable step was a kink near x, not at it.
    size = np.take_along_axis(gap, finest[None], 0)
    finer = np.arange(gap.shape[0]).reshape((-1,) + (1,) * finest.ndim) > finest[None]
    with np.errstate(invalid="ignore"):
        collapsed = (finer & (gap < 0.25 * size) & (10 * noise < size)).any(axis=0)
    straddles = level.copy()
    straddles[0] = level[1]  # the coarsest level has no coarser one to compare with: it goes with the next
    return persistent.any(axis=0) & ~collapsed, finest, straddles

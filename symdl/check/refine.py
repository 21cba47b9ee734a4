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

A **jump** is where ``f(x + h) - f(x - h)`` does not shrink with ``h`` over
the three finest levels and stays far above rounding: no derivative exists
there, and the sweep says so per entry (:attr:`Sweep.jump`, with the jump).

The noise of ``f`` is also estimated where the second difference cannot see
it: where ``f`` is visibly quantised (:func:`_quantum`) and where the
estimates drift as the step shrinks while the second difference stays quiet
(:func:`_growth_noise`).
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
    jump: np.ndarray
    jump_size: np.ndarray
    flat: np.ndarray  # f(x +- h) == f(x) exactly at every step: the derivative is below f's resolution there


def sweep(lines: Lines, eval_dtype: np.dtype) -> Sweep:
    """Central differences at every step factor; the best estimate per entry, and kinks."""
    eps = ROUNDING_FACTOR * machine_epsilon(eval_dtype)
    tiny = float(np.finfo(eval_dtype).tiny) if np.dtype(eval_dtype).kind in "fc" else float(np.finfo(float).tiny)
    f0 = lines.f0
    central, right, left, magnitude, second, up, down = [], [], [], [], [], [], []
    plus_diffs, minus_diffs = [], []
    for level in range(LEVELS):
        plus, minus, size, step_up, step_down = lines.at(level)
        with np.errstate(all="ignore"):
            plus_diffs.append(plus - f0)
            minus_diffs.append(f0 - minus)
            central.append((plus - minus) / (step_up + step_down)[:, None])
            right.append((plus - f0) / step_up[:, None])
            left.append((f0 - minus) / step_down[:, None])
        # an evaluation's absolute error is at least eps * tiny (the subnormal spacing), even where f underflows
        magnitude.append(np.maximum(np.maximum(size, np.abs(f0)), tiny))
        with np.errstate(all="ignore"):  # (f+ - f0) - (f0 - f-): plus + minus - 2 f0 overflows near the largest float
            second.append(np.abs(plus_diffs[-1] - minus_diffs[-1]))
        up.append(step_up[:, None])
        down.append(step_down[:, None])
    c, r, lft = np.array(central), np.array(right), np.array(left)
    up_, down_ = np.array(up), np.array(down)
    magnitude_, second_ = np.array(magnitude), np.array(second)
    width = up_ + down_
    # f's own evaluation noise, measured: at the finest steps the second difference is all rounding
    # (the smallest of three, since a kink near x inflates the coarser ones; an exact 0 is a tie on a grid
    # of values, no evidence of quiet, so the smallest nonzero one).
    finest = second_[-3:]
    with np.errstate(invalid="ignore"):
        nonzero = np.min(np.where(np.isnan(finest) | (finest == 0), np.inf, finest), axis=0)
        # all three exactly 0: a straight line on the grid (the floor eps |f| stands); any NaN: no estimate
        noise = np.where(np.isfinite(nonzero), nonzero, np.where(np.isnan(finest).any(axis=0), np.inf, 0.0))
    noise = np.maximum(eps * magnitude_, 2 * noise)
    grid = 2 * _quantum(np.array(plus_diffs), np.array(minus_diffs))
    noise = np.maximum(noise, grid)
    with np.errstate(all="ignore"):
        step_change = np.abs(np.diff(c, axis=0))
    _, _, straddles = _kinks(r, lft, noise / np.minimum(up_, down_))
    grid = np.maximum(grid, _growth_noise(step_change, r, lft, width, straddles))
    noise = np.maximum(noise, grid)
    rounding = noise / width
    with np.errstate(all="ignore"):
        change = np.full(c.shape, np.inf)
        # Richardson's estimate of level L, guarded on both sides against a chance agreement of two levels;
        # trusted only where the sequence converges (the next change shrinks, or is within rounding).
        change[1:] = step_change
        converging = step_change[1:] <= 0.5 * step_change[:-1] + 2 * rounding[2:]
        change[1:-1] = np.where(converging, np.maximum(step_change[:-1], step_change[1:]), np.inf)
        error = change + rounding
    error[~np.isfinite(error)] = np.inf
    kink, at, straddles = _kinks(r, lft, noise / np.minimum(up_, down_))
    # a jump must stand far above rounding and above f's grid (one grid step that stays as h shrinks is no jump;
    # the second difference, which a jump inflates, is left out of this floor)
    jump, jump_size = _jumps(np.array(plus_diffs) + np.array(minus_diffs), np.maximum(eps * magnitude_, grid))
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
    flat = ((np.array(plus_diffs) == 0) & (np.array(minus_diffs) == 0)).all(axis=0)
    return Sweep(value, np.take_along_axis(error, best, 0)[0], kink & ~jump,
                 np.take_along_axis(lft, pick, 0)[0], np.take_along_axis(r, pick, 0)[0], jump, jump_size, flat)


def _quantum(plus: np.ndarray, minus: np.ndarray) -> np.ndarray:
    """Per entry, the resolution of ``f`` where it is visibly quantised, else 0.

    Where ``f(x + h) == f(x) == f(x - h)`` exactly at some step although ``f`` changes at
    another, the values of ``f`` near ``x`` lie on a grid coarser than the
    change of the finer steps (``s (1 - s)`` of a sigmoid ``s`` near 1 moves in
    steps of eps, whatever its own size): no difference finer than one grid
    step means anything, so the smallest nonzero change seen is the noise.
    """
    with np.errstate(invalid="ignore"):
        tied = ((plus == 0) & (minus == 0)).any(axis=0)  # on both sides: one flat side is a kink, not a grid
        # Only levels where both sides moved measure the grid: a step reaching across a jump or a kink next to
        # a flat stretch moves one side only, by the jump, which is no rounding.
        moved = (plus != 0) & (minus != 0) & np.isfinite(plus) & np.isfinite(minus)
        both = np.concatenate([np.where(moved, np.abs(plus), np.inf), np.where(moved, np.abs(minus), np.inf)])
        smallest = np.min(both, axis=0)
    return np.where(tied & np.isfinite(smallest), smallest, 0.0)


def _growth_noise(step_change: np.ndarray, right: np.ndarray, left: np.ndarray, width: np.ndarray,
                  straddles: np.ndarray) -> np.ndarray:
    """Noise revealed by differences that grow as the step shrinks, where the second difference hides it.

    Rounding makes ``C(h)`` wander by about ``2 nu / w`` (``w`` the width of
    the difference). Where ``f``'s rounding is the same on both sides (``exp(x)
    - 1`` rounded to the grid of 1) or follows a staircase at fine steps, the
    second difference stays near 0 and misses it, but the central differences
    still drift apart as the step shrinks. Changes that grow going finer,
    between levels that straddle no kink, with *both* one-sided differences
    wandering comparably (a step reaching across a kink moves one side only:
    the other stays on its branch), are rounding, and ``|C_L - C_{L-1}| w_L /
    1.25`` is a lower bound of ``2 nu``.
    """
    with np.errstate(all="ignore"):
        grows = np.zeros(step_change.shape, bool)
        grows[1:] = step_change[1:] > 2 * step_change[:-1]
        implied = step_change * width[1:] / 1.25
        moved_right, moved_left = np.abs(np.diff(right, axis=0)), np.abs(np.diff(left, axis=0))
        both = np.minimum(moved_right, moved_left) >= 0.1 * np.maximum(moved_right, moved_left)
        smooth = ~straddles[1:] & ~straddles[:-1]
        found = np.where(grows & both & (step_change > 0) & smooth & np.isfinite(implied), implied, 0.0)
    return found.max(axis=0)


def _jumps(differences: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry: whether ``f`` jumps at ``x`` (``f(x + h) - f(x - h)`` does not shrink with ``h`` over the three
    finest levels, and is far above rounding), and the jump at the finest level."""
    size = np.abs(differences)
    with np.errstate(invalid="ignore"):
        holds = (size[-1] >= 0.5 * size[-2]) & (size[-2] >= 0.5 * size[-3])
        jump = holds & (size[-1] > 1e3 * floor[-1]) & np.isfinite(size[-1])
    return jump, np.where(jump, differences[-1], 0.0)


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

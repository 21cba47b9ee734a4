"""Compare the user's Jacobian block with the numeric one, refining entries that disagree.

First pass: entry ``(i, j)`` passes when ``|a - n| <= rtol (|n| + s) + r``
(:mod:`symdl.check.tolerances`). Columns with a failing entry are re-checked,
worst first in chunks, by the step-size sweep of :mod:`symdl.check.refine`,
whose error estimate then replaces ``r``. A failing entry at a detected kink
passes when the user's value lies between the one-sided derivatives (within
tolerance). Refinement stops at the first chunk that confirms a failure: the
verdict is then settled, and the rest need not be paid for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symdl.check.problem import Problem
from symdl.check.refine import ElementLines, sweep
from symdl.check.report import InputReport, NonDifferentiablePoint, summarise
from symdl.check.tolerances import Tolerance

#: Columns refined per sweep.
REFINE_CHUNK = 64
#: Kinks listed in a report per input (the rest are counted in a note).
MAX_KINKS = 20


@dataclass
class Judgement:
    """An input's verdict, the kinks met and notes."""

    report: InputReport
    kinks: list[NonDifferentiablePoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge(problem: Problem, k: int, name: str, analytic: np.ndarray, numeric: np.ndarray, rounding: np.ndarray,
          tol: Tolerance, refine_all: bool = False) -> Judgement:
    """The verdict on input ``k``'s Jacobian block ``analytic`` (outputs, size) against ``numeric``."""
    numeric, error = numeric.copy(), rounding.copy()
    refined = np.zeros(analytic.shape[1], bool)
    kink = np.zeros(analytic.shape, bool)
    within = np.zeros(analytic.shape, bool)
    left, right = np.full(analytic.shape, np.nan), np.full(analytic.shape, np.nan)
    steps = problem.steps(k)
    while True:
        scale = _scale(numeric)
        allowed = tol.bound(numeric, scale, error)
        with np.errstate(invalid="ignore"):
            close = (np.abs(analytic - numeric) <= allowed) & np.isfinite(allowed)
        ok = close | (kink & within)
        confirmed = ~ok & refined[None, :]
        todo = np.flatnonzero((~ok.all(axis=0) | refine_all) & ~refined)
        if confirmed.any() or not todo.size:
            break
        with np.errstate(all="ignore"):
            badness = np.nan_to_num(np.max(np.abs(analytic - numeric)[:, todo] / allowed[:, todo], axis=0), nan=np.inf)
        chunk = todo[np.argsort(-badness, kind="stable")[:REFINE_CHUNK]]
        found = sweep(ElementLines(problem, k, chunk, steps[chunk]), problem.eval_dtype)
        numeric[:, chunk], error[:, chunk], refined[chunk] = found.value.T, found.error.T, True
        kink[:, chunk], left[:, chunk], right[:, chunk] = found.kink.T, found.left.T, found.right.T
        low, high = np.minimum(left[:, chunk], right[:, chunk]), np.maximum(left[:, chunk], right[:, chunk])
        slack = tol.bound(high - low, _scale(numeric), error[:, chunk])
        within[:, chunk] = (analytic[:, chunk] >= low - slack) & (analytic[:, chunk] <= high + slack)
    judgement = Judgement(summarise(k, name, problem.inputs[k], problem.out_shape, analytic, numeric, allowed, ok))
    if refined.any():
        judgement.notes.append(f"{name}: {int(refined.sum())} of {refined.size} columns re-checked by a step-size sweep"
                               + ("" if ok.all() else "; a disagreement was confirmed"))
    kink &= ~close  # only where the kink decides the verdict
    judgement.kinks = _kinks(problem, k, analytic, kink, within, left, right)
    if int(kink.sum()) > MAX_KINKS:
        judgement.notes.append(f"{name}: {int(kink.sum())} kink entries, {MAX_KINKS} listed")
    return judgement


def _scale(numeric: np.ndarray) -> float:
    finite = np.abs(numeric[np.isfinite(numeric)])
    return float(finite.max()) if finite.size else 0.0


def _kinks(problem: Problem, k: int, analytic: np.ndarray, kink: np.ndarray, within: np.ndarray, left: np.ndarray,
           right: np.ndarray) -> list[NonDifferentiablePoint]:
    shape, out_shape = problem.inputs[k].shape, problem.out_shape
    points = []
    for i, j in list(zip(*np.nonzero(kink)))[:MAX_KINKS]:
        points.append(NonDifferentiablePoint(
            input=k, index=tuple(int(t) for t in np.unravel_index(j, shape)),
            output=tuple(int(t) for t in np.unravel_index(i, out_shape)),
            left=float(left[i, j]), right=float(right[i, j]), given=float(analytic[i, j]), within=bool(within[i, j])))
    return points

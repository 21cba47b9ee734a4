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

from dataclasses import dataclass, field, replace

import numpy as np

from symdl.check.problem import Problem
from symdl.check.refine import ElementLines, Sweep, sweep
from symdl.check.report import InputReport, NonDifferentiablePoint, element_name, summarise
from symdl.check.tolerances import Tolerance

#: Columns refined per sweep.
REFINE_CHUNK = 64
#: How much larger the steps of the second sweep are, for entries the first left unresolved.
COARSER = 4.0**5
#: A first-pass rounding bound this many times the gradient's tolerance leaves the entry unjudged (refined).
UNRESOLVED = 1024.0
#: Kinks listed in a report per input (the rest are counted in a note).
MAX_KINKS = 20


@dataclass
class Judgement:
    """An input's verdict, the kinks met and notes."""

    report: InputReport
    kinks: list[NonDifferentiablePoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge(problem: Problem, k: int, name: str, analytic: np.ndarray, numeric: np.ndarray, rounding: np.ndarray,
          tol: Tolerance, refine_all: bool = False, finding: str = "") -> Judgement:
    """The verdict on input ``k``'s Jacobian block ``analytic`` (outputs, size) against ``numeric``.

    ``finding`` is a fault found before the values were compared (a dtype
    mismatch): the input fails, and the report says whether the values match too.
    An entry where ``f`` jumps has no derivative: it never passes, and the
    report says so ("not differentiable at x[i]: f jumps by J").
    """
    numeric, error = numeric.copy(), rounding.copy()
    refined = np.zeros(analytic.shape[1], bool)
    jump, jump_size = np.zeros(analytic.shape, bool), np.zeros(analytic.shape)
    kink = np.zeros(analytic.shape, bool)
    within = np.zeros(analytic.shape, bool)
    left, right = np.full(analytic.shape, np.nan), np.full(analytic.shape, np.nan)
    steps = problem.steps(k)
    while True:
        scale = _scale(numeric)
        allowed = tol.bound(numeric, scale, error)
        with np.errstate(invalid="ignore"):
            close = (np.abs(analytic - numeric) <= allowed) & np.isfinite(allowed)
        ok = (close | (kink & within)) & ~jump
        confirmed = ~ok & refined[None, :]
        # A column passing only on the numeric side's rounding, its bound far above the gradient's own
        # tolerance (inputs far smaller than the scale f varies on; f = 1e6 + small terms), has not been
        # judged: it is refined too. (Within UNRESOLVED of it, as for a scalar f summing thousands of terms,
        # the first pass stands: refining every column would cost ten times the evaluations.)
        with np.errstate(invalid="ignore"):
            unresolved = (error > UNRESOLVED * tol.bound(numeric, scale, 0.0)) & (analytic != numeric)
        todo = np.flatnonzero((~ok.all(axis=0) | unresolved.any(axis=0) | refine_all) & ~refined)
        if confirmed.any() or not todo.size:
            break
        with np.errstate(all="ignore"):
            badness = np.nan_to_num(np.max(np.abs(analytic - numeric)[:, todo] / allowed[:, todo], axis=0), nan=np.inf)
        chunk = todo[np.argsort(-badness, kind="stable")[:REFINE_CHUNK]]
        found = sweep(ElementLines(problem, k, chunk, steps[chunk]), problem.eval_dtype)
        found = _coarser_where_unresolved(problem, k, chunk, steps, found, tol, _scale(numeric))
        numeric[:, chunk], error[:, chunk], refined[chunk] = found.value.T, found.error.T, True
        kink[:, chunk], left[:, chunk], right[:, chunk] = found.kink.T, found.left.T, found.right.T
        jump[:, chunk], jump_size[:, chunk] = found.jump.T, found.jump_size.T
        low, high = np.minimum(left[:, chunk], right[:, chunk]), np.maximum(left[:, chunk], right[:, chunk])
        slack = tol.bound(high - low, _scale(numeric), error[:, chunk])
        within[:, chunk] = (analytic[:, chunk] >= low - slack) & (analytic[:, chunk] <= high + slack)
    detail = "; ".join(filter(None, [_jump_detail(problem, k, name, jump, jump_size), finding and (
        finding + ("; its values match" if ok.all() else "; its values do not match either"))]))
    judgement = Judgement(summarise(k, name, problem.inputs[k], problem.out_shape, analytic, numeric, allowed, ok,
                                    detail))
    if refined.any():
        judgement.notes.append(f"{name}: {int(refined.sum())} of {refined.size} columns re-checked by a step-size sweep"
                               + ("" if ok.all() else "; a disagreement was confirmed"))
    kink &= ~close  # only where the kink decides the verdict
    judgement.kinks = _kinks(problem, k, analytic, kink, within, left, right)
    if int(kink.sum()) > MAX_KINKS:
        judgement.notes.append(f"{name}: {int(kink.sum())} kink entries, {MAX_KINKS} listed")
    return judgement


def _coarser_where_unresolved(problem: Problem, k: int, chunk: np.ndarray, steps: np.ndarray, found: Sweep,
                              tol: Tolerance, scale: float) -> Sweep:
    """The sweep again with steps ``4^5`` times larger for columns it left unresolved, keeping the better estimate.

    An estimate whose own error exceeds the tolerance cannot judge the gradient
    (a function of scale 1 at inputs of 1e-5 changes by 1e-15 over their step,
    a few units of rounding), nor can one where ``f`` did not change at all
    (``1 - tanh(x)^2`` at 16 moves by less than its grid over every step):
    larger steps resolve both. The coarse sweep has its own Richardson and
    straddle checks, and its estimate replaces the first only where its error
    is smaller, never at a kink or a jump.
    """
    with np.errstate(all="ignore"):
        unresolved = ((found.error > tol.bound(found.value, scale, 0.0)) | found.flat) & ~found.kink & ~found.jump
    columns = np.flatnonzero(unresolved.any(axis=1))
    if not columns.size:
        return found
    wide = sweep(ElementLines(problem, k, chunk[columns], steps[chunk[columns]] * COARSER), problem.eval_dtype)
    better = unresolved[columns] & ~wide.kink & ~wide.jump & (wide.error < found.error[columns])
    value, error = found.value.copy(), found.error.copy()
    value[columns] = np.where(better, wide.value, value[columns])
    error[columns] = np.where(better, wide.error, error[columns])
    return replace(found, value=value, error=error)


def _jump_detail(problem: Problem, k: int, name: str, jump: np.ndarray, size: np.ndarray) -> str:
    """``not differentiable at x[i]: f jumps by J`` for the entries where ``f`` jumps ('' for none)."""
    places = list(zip(*np.nonzero(jump)))
    shape, out_shape = problem.inputs[k].shape, problem.out_shape
    said = [f"not differentiable at {element_name(name, np.unravel_index(j, shape))}: f"
            f"{element_name('', np.unravel_index(i, out_shape)) if out_shape else ''} jumps by {size[i, j]:.6g}"
            for i, j in places[:MAX_KINKS]]
    return "; ".join(said) + (f"; and {len(places) - MAX_KINKS} more jumps" if len(places) > MAX_KINKS else "")


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

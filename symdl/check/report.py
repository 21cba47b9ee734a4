"""What a gradient check found, as an object, text and JSON.

Errors per input are measured on the Jacobian entries compared: ``max_abs_error``
is :math:`\\max |a - n|`, ``max_rel_error`` the normwise relative error
:math:`\\max |a - n| / \\max |n|` (0/0 counts as 0), and the *worst* entry is
the one furthest outside its tolerance (or closest to it when all pass).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class NonDifferentiablePoint:
    """A kink: one-sided derivatives ``left`` and ``right`` differ; ``given`` is the user's value there."""

    input: int
    index: tuple[int, ...]
    output: tuple[int, ...]
    left: float
    right: float
    given: float
    within: bool


@dataclass(frozen=True)
class InputReport:
    """The verdict for one input's gradient."""

    input: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    passed: bool
    entries: int = 0
    max_abs_error: float = float("nan")
    max_rel_error: float = float("nan")
    worst_index: tuple[int, ...] | None = None
    worst_output: tuple[int, ...] | None = None
    analytic: float | None = None
    numeric: float | None = None
    allowed: float | None = None
    detail: str = ""


@dataclass
class GradcheckReport:
    """The outcome of :func:`symdl.check.gradcheck`.

    Attributes:
        passed: every checked input passed.
        mode: the mode run (``full``, ``fast``, ``complex``, ``richardson``, ``second-order``).
        step: the relative step ``eps^(1/3)`` of the evaluation dtype (0 for complex step: see notes).
        rtol: the relative tolerance of the gradient's dtype.
        eval_dtype: the dtype ``f`` was evaluated in for the numeric side.
        inputs: one report per checked input.
        kinks: non-differentiable points met, with the one-sided derivatives.
        notes: what else happened (fallbacks, refinements).
        evaluations, vjp_calls: work done.
    """

    passed: bool
    mode: str
    step: float
    rtol: float
    eval_dtype: str
    inputs: list[InputReport]
    kinks: list[NonDifferentiablePoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0
    vjp_calls: int = 0

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return _plain(asdict(self))

    def to_json(self) -> str:
        """The report as JSON (non-finite numbers as strings)."""
        return json.dumps(self.as_dict(), indent=2)

    def to_text(self) -> str:
        """A readable table: one row per input, then kinks and notes."""
        head = (f"gradcheck {'PASS' if self.passed else 'FAIL'}: mode {self.mode}, step {self.step:.1e} x scale, "
                f"rtol {self.rtol:.1e}, f evaluated in {self.eval_dtype}, {self.evaluations} evaluations, "
                f"{self.vjp_calls} gradient calls")
        columns = ("input", "shape", "dtype", "max abs err", "max rel err", "worst at", "analytic", "numeric",
                   "allowed", "ok")
        rows = [columns] + [_row(r) for r in self.inputs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines = [head] + ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines += [f"  {r.name}: {r.detail}" for r in self.inputs if r.detail]
        names = {r.input: r.name for r in self.inputs}
        for kink in self.kinks:
            where = element_name(names.get(kink.input, f"input {kink.input}"), kink.index)
            output = f" (output {element_name('out', kink.output)})" if kink.output else ""
            lines.append(f"kink at {where}{output}: one-sided derivatives {kink.left:.6g} (left) and {kink.right:.6g} "
                         f"(right); the gradient given, {kink.given:.6g}, "
                         f"{'lies between them' if kink.within else 'is OUTSIDE them'}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    __str__ = to_text


def element_name(name: str, index: tuple[int, ...] | tuple[np.integer, ...]) -> str:
    """``x[1, 2]`` for an element of ``x``; ``x`` itself for a 0-d array (a scalar prints as a scalar)."""
    return f"{name}[{', '.join(str(int(i)) for i in index)}]" if len(index) else name


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def _row(r: InputReport) -> tuple[str, ...]:
    where = "-" if r.worst_index is None else (element_name("", r.worst_index) or "(scalar)") + (
        f" -> {element_name('out', r.worst_output)}" if r.worst_output else "")
    return (r.name, str(r.shape), r.dtype, _number(r.max_abs_error), _number(r.max_rel_error), where,
            _number(r.analytic), _number(r.numeric), _number(r.allowed), "PASS" if r.passed else "FAIL")


def _plain(value: object) -> object:
    """Tuples to lists, NumPy scalars to Python, non-finite floats to strings (strict JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def summarise(k: int, name: str, x: np.ndarray, out_shape: tuple[int, ...], analytic: np.ndarray,
              numeric: np.ndarray, allowed: np.ndarray, passed: np.ndarray, detail: str = "") -> InputReport:
    """An :class:`InputReport` from the compared Jacobian blocks (outputs, input size)."""
    with np.errstate(all="ignore"):
        error = np.abs(analytic - numeric)
        error = np.where(np.isnan(error) & (np.isnan(analytic) != np.isnan(numeric)), np.inf, error)
        finite = np.abs(numeric[np.isfinite(numeric)])
        scale = float(finite.max()) if finite.size else 0.0
        # Entries never judged (no finite tolerance: left unrefined after a confirmed failure) rank last.
        score = np.where(np.isfinite(allowed), error / allowed, 0.0)
        score[np.isnan(score)] = np.inf
        # Failing entries rank above every passing one; among each group, the furthest outside its tolerance.
        score = np.where(passed, score / (1.0 + score), 2.0 + score)
    worst = int(np.argmax(score)) if score.size else 0
    i, j = np.unravel_index(worst, analytic.shape) if analytic.size else (0, 0)
    max_abs = float(np.max(np.where(np.isnan(error), np.inf, error))) if error.size else 0.0
    max_rel = 0.0 if max_abs == 0 else (max_abs / scale if scale > 0 else float("inf"))
    return InputReport(
        input=k, name=name, shape=tuple(x.shape), dtype=str(x.dtype), passed=bool(passed.all()) and not detail,
        entries=int(analytic.size), max_abs_error=max_abs, max_rel_error=max_rel,
        worst_index=tuple(int(t) for t in np.unravel_index(j, x.shape)) if x.shape else (),
        worst_output=tuple(int(t) for t in np.unravel_index(i, out_shape)) if out_shape else (),
        analytic=float(analytic.flat[worst]) if analytic.size else None,
        numeric=float(numeric.flat[worst]) if numeric.size else None,
        allowed=float(allowed.flat[worst]) if allowed.size else None, detail=detail)


def failed_input(k: int, name: str, x: np.ndarray, detail: str) -> InputReport:
    """The report of an input whose gradient could not even be compared (missing, wrong shape or dtype)."""
    return InputReport(input=k, name=name, shape=tuple(x.shape), dtype=str(x.dtype), passed=False, detail=detail)

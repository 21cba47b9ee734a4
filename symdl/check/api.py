"""``gradcheck`` and ``gradgradcheck``: the checker's public entry points."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from symdl.check.analytic import Analytic, GradKind
from symdl.check.errors import GradcheckInputError, JacobianTooLargeError
from symdl.check.modes import COMPLEX_STEP, MODES, Options
from symdl.check.problem import Precision, Problem, unchanged
from symdl.check.report import GradcheckReport
from symdl.check.tolerances import default_tolerance, machine_epsilon

ModeName = Literal["full", "fast", "complex", "richardson"]

#: Largest Jacobian (outputs x checked input elements) the entrywise modes build: 64 Mi float64s, 512 MiB.
MAX_JACOBIAN = 1 << 26


def _as_inputs(inputs: object) -> tuple[object, ...]:
    return tuple(inputs) if isinstance(inputs, (list, tuple)) else (inputs,)


def gradcheck(f: Callable[..., object], inputs: object, vjp: Callable[..., object] | None = None, *,
              mode: ModeName = "full", wrt: Sequence[int] | None = None, kind: GradKind = "auto",
              rtol: float | None = None, precision: Precision = "auto", directions: int = 3, seed: int = 0,
              names: Sequence[str] | None = None) -> GradcheckReport:
    r"""Check the gradient of ``f`` at ``inputs`` against finite differences.

    Args:
        f: maps the input arrays (positional) to an array or a scalar.
        inputs: one array or a sequence of arrays (integer arrays, such as class
            indices, are passed through and not differentiated).
        vjp: the gradient under test: ``vjp(v, *inputs)`` returning :math:`v^T
            \partial f / \partial x_k` for every input (one array per input,
            None where there is none), or, for scalar ``f``, ``grad(*inputs)``.
        mode: ``full`` (whole Jacobian by central differences, vectorised over a
            leading batch axis when ``f`` broadcasts), ``fast`` (random
            projections :math:`v^T J u`, full mode on failure), ``complex``
            (complex step where ``f`` is complex-analytic), ``richardson``
            (every entry by the step-size sweep; for ill-conditioned points).
        wrt: indices of the inputs to check (default: every real floating input).
        kind: ``"vjp"``, ``"grad"`` or ``"auto"`` (from ``vjp``'s arity).
        rtol: relative tolerance (default ``sqrt(eps)`` of each input's dtype).
        precision: ``"auto"`` evaluates ``f`` in float64 for the numeric side
            when it accepts float64; ``"input"`` keeps the inputs' dtypes.
        directions, seed: fast mode's number of random projections and their seed.
        names: input names for the report.

    Returns:
        A :class:`~symdl.check.report.GradcheckReport` (truthy when it passed).
        Step sizes and tolerances are explained in :mod:`symdl.check.tolerances`.
    """
    if vjp is None:
        raise GradcheckInputError("gradcheck: give the gradient to check as vjp(v, *inputs) or grad(*inputs)")
    if mode not in MODES:
        raise GradcheckInputError(f"gradcheck: unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if directions < 1:
        raise GradcheckInputError(f"gradcheck: directions must be >= 1, got {directions}")
    # Problem.build copies the inputs before f first sees them and raises if f changes them.
    problem = Problem.build(f, _as_inputs(inputs), wrt, precision)
    entries = problem.size * sum(problem.inputs[k].size for k in problem.wrt)
    if mode != "fast" and entries > MAX_JACOBIAN:
        raise JacobianTooLargeError(problem.size, entries // problem.size, MAX_JACOBIAN)
    originals = [x.copy() for x in problem.inputs]
    analytic = Analytic.build(problem, vjp, kind, tuple(names or ()))
    tols = {k: default_tolerance(problem.inputs[k].dtype, rtol, problem.eval_dtype) for k in problem.wrt}
    options = Options(directions, seed, tuple(names or ()))
    judgements = MODES[mode](problem, analytic, tols, options, problem.wrt)
    unchanged(originals, problem.inputs, "f or the gradient function")
    return GradcheckReport(
        passed=all(j.report.passed for j in judgements), mode=mode,
        step=COMPLEX_STEP if mode == "complex" else machine_epsilon(problem.eval_dtype) ** (1 / 3),
        rtol=max(t.rtol for t in tols.values()), eval_dtype=str(problem.eval_dtype),
        inputs=[j.report for j in judgements], kinks=[p for j in judgements for p in j.kinks],
        notes=[n for j in judgements for n in j.notes], evaluations=problem.evaluations, vjp_calls=analytic.calls)


def gradgradcheck(grad: Callable[..., object], hvp: Callable[..., object], inputs: object, *,
                  mode: ModeName = "full", rtol: float | None = None, seed: int = 0,
                  names: Sequence[str] | None = None) -> GradcheckReport:
    r"""Check a Hessian-vector product (gradient of the gradient) of a scalar function.

    ``grad(*inputs)`` is the gradient of the scalar (one array per input, or
    one array for one input); ``hvp(v, *inputs)`` returns :math:`H v` in the
    same layout, ``v`` having that layout too. The Hessian is the Jacobian of
    the gradient and is symmetric, so :math:`H v` is also the VJP of the
    gradient, and the gradient's Jacobian is checked by :func:`gradcheck`
    (the gradient itself should be checked first).
    """
    arrays = tuple(np.asarray(x) for x in _as_inputs(inputs))
    shapes = [x.shape for x in arrays]
    sizes = np.cumsum([0] + [x.size for x in arrays])
    found: list[str] = []

    def pieces(flat: np.ndarray) -> tuple[np.ndarray, ...]:
        # v takes each input's own dtype (a float32 input's v is float32, whatever dtype grad returns)
        return tuple(np.asarray(flat[sizes[i]:sizes[i + 1]]).reshape(s).astype(_float_dtype(arrays[i].dtype))
                     for i, s in enumerate(shapes))

    def layout(value: object) -> tuple[object, ...]:
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)

    def gradient(*xs: np.ndarray) -> np.ndarray:
        parts = [np.asarray(g) for g in layout(grad(*xs))]
        for i, g in enumerate(parts):
            # An integer gradient (a ReLU's 0/1 mask) has values: check them as floats, and say so.
            if g.dtype.kind in "iub":
                note = f"the gradient of input {i} has dtype {g.dtype}; checked as {_float_dtype(arrays[i].dtype)}"
                found.append(note) if note not in found else None
                parts[i] = g.astype(_float_dtype(arrays[i].dtype))
        return np.concatenate([np.ravel(g) for g in parts])

    def product(w: np.ndarray, *xs: np.ndarray) -> tuple[object, ...]:
        v = pieces(np.asarray(w).ravel())
        return layout(hvp(v if len(v) > 1 else v[0], *xs))

    report = gradcheck(gradient, arrays, product, mode=mode, kind="vjp", rtol=rtol, seed=seed, names=names)
    report.mode = f"second-order ({mode})"
    report.notes.extend(found)
    return report


def _float_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)

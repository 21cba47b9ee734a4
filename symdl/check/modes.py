"""The checking modes: full (central differences), richardson, complex step, fast (projections).

Each mode maps ``(problem, analytic, tol, options)`` to a list of
:class:`~symdl.check.judge.Judgement`, one per checked input; ``MODES`` is the
dispatch table :func:`symdl.check.gradcheck` reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from symdl.check.analytic import Analytic, Gradient
from symdl.check.judge import COARSER, UNRESOLVED, Judgement, judge
from symdl.check.problem import Problem, element_builder
from symdl.check.refine import FACTORS, DirectionLines, Sweep, sweep
from symdl.check.report import failed_input, summarise
from symdl.check.tolerances import (DTYPE_ULPS, ROUNDING_FACTOR, Tolerance, dtype_spacing, machine_epsilon,
                                    rounding_bound, typical_scale)

#: Complex-step size relative to an element's scale: the O(h^2) truncation is far below rounding.
COMPLEX_STEP = 1e-20
#: Fast mode's band along a direction ``u``, in units of ``||u * t||_2`` (``t`` the entrywise allowances): a
#: screen, not the verdict (a projection outside it goes to full mode, which decides).
FAST_BAND = 0.5


@dataclass(frozen=True)
class Options:
    """Mode settings: random directions of fast mode and their seed, and input names."""

    directions: int = 3
    seed: int = 0
    names: tuple[str, ...] = ()

    def name(self, k: int) -> str:
        return self.names[k] if k < len(self.names) else f"input {k}"


#: ``mode(problem, analytic, tolerances, options, inputs)``: judgements of ``inputs`` (indices into the inputs).
Mode = Callable[[Problem, Analytic, dict[int, Tolerance], Options, tuple[int, ...]], list[Judgement]]


# --------------------------------------------------------------------------- numeric Jacobians
def central_jacobian(problem: Problem, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of every element of input ``k``: the Jacobian block and its rounding bounds.

    The step actually taken is ``(x + h) - (x - h)`` as rounded, so that the
    quotient has no representation error in its denominator.
    """
    base = problem.base(k)
    h = problem.steps(k).astype(base.dtype)
    plus, minus = base + h, base - h
    index = np.arange(base.size)
    values = problem.rows(k, 2 * base.size, element_builder(base, np.concatenate([index, index]),
                                                            np.concatenate([plus, minus])))
    f_plus, f_minus = values[: base.size], values[base.size:]
    width = (plus.astype(np.float64) - minus.astype(np.float64))[:, None]
    with np.errstate(all="ignore"):
        numeric = (f_plus - f_minus) / width
    return numeric.T, rounding_bound(f_plus, f_minus, width, problem.eval_dtype).T


def complex_jacobian(problem: Problem, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    r"""Complex-step derivatives :math:`\operatorname{Im} f(x + i h e_j) / h` (no cancellation), or None
    when ``f`` does not return complex values for complex input."""
    dtype = np.result_type(problem.eval_dtype, np.complex64)
    base = problem.base(k, dtype)
    try:
        with warnings.catch_warnings():  # f casting complex to real is an answer here, not news for the user
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
            arrays = [x.astype(dtype) if i == k else x for i, x in enumerate(problem.eval_inputs)]
            probe = np.asarray(problem.f(*arrays))
    except Exception:  # noqa: BLE001 - f rejects complex input: the caller falls back
        return None
    if probe.dtype.kind != "c" or probe.size != problem.size:
        return None
    h = COMPLEX_STEP * np.maximum(np.abs(base.real), typical_scale(base.real))
    index = np.arange(base.size)
    values = problem.rows(k, base.size, element_builder(base, index, base + 1j * h), dtype=dtype)
    numeric = (values.imag / h[:, None]).T
    return numeric, 8 * machine_epsilon(dtype) * np.abs(numeric)


# --------------------------------------------------------------------------- modes
def _blocks(problem: Problem, analytic: Analytic, options: Options, inputs: tuple[int, ...]
            ) -> dict[int, Gradient | Judgement]:
    """The user's Jacobian per input, or the failing judgement when it cannot be compared."""
    blocks: dict[int, Gradient | Judgement] = {}
    for k, block in analytic.jacobian().items():
        if k not in inputs:
            continue
        if block.values is None:
            blocks[k] = Judgement(failed_input(k, options.name(k), problem.inputs[k], block.finding))
        else:
            blocks[k] = block
    return blocks


#: ``numeric(problem, k, tol, options)``: the numeric Jacobian block, its error bounds, and a note ('' for none).
Numeric = Callable[[Problem, int, Tolerance, Options], tuple[np.ndarray, np.ndarray, str]]


def _numeric_mode(numeric: Numeric, refine_all: bool = False) -> Mode:
    """A mode that judges each input's Jacobian against the block ``numeric`` computes."""

    def run(problem: Problem, analytic: Analytic, tols: dict[int, Tolerance], options: Options,
            inputs: tuple[int, ...]) -> list[Judgement]:
        out = []
        for k, block in _blocks(problem, analytic, options, inputs).items():
            if isinstance(block, Judgement):
                out.append(block)
                continue
            values, bounds, note = numeric(problem, k, tols[k], options)
            out.append(judge(problem, k, options.name(k), block.values, values, bounds, tols[k], refine_all,
                             block.finding))
            out[-1].notes.extend([note] if note else [])
        return out

    return run


def _central(problem: Problem, k: int, tol: Tolerance, options: Options) -> tuple[np.ndarray, np.ndarray, str]:
    return (*central_jacobian(problem, k), "")


def _unset(problem: Problem, k: int, tol: Tolerance, options: Options) -> tuple[np.ndarray, np.ndarray, str]:
    """No first pass: every column goes to the sweep (richardson mode)."""
    shape = (problem.size, problem.eval_inputs[k].size)
    return np.full(shape, np.nan), np.full(shape, np.inf), ""


def _complex(problem: Problem, k: int, tol: Tolerance, options: Options) -> tuple[np.ndarray, np.ndarray, str]:
    """Complex step where ``f`` is complex-analytic (checked along a random direction), else central differences."""
    found = complex_jacobian(problem, k)
    reason = "f does not return complex values for complex input" if found is None else _not_analytic(
        problem, k, found[0], tol, options)
    if not reason:
        return (*found, "")
    return (*central_jacobian(problem, k),
            f"{options.name(k)}: complex step not applicable ({reason}); central differences used")


full = _numeric_mode(_central)
richardson = _numeric_mode(_unset, refine_all=True)
complex_step = _numeric_mode(_complex)


def _not_analytic(problem: Problem, k: int, jacobian: np.ndarray, tol: Tolerance, options: Options) -> str:
    """Why the complex-step Jacobian cannot be trusted ('' when it can): it must agree with a
    central-difference sweep along a random direction (abs, max and comparisons break analyticity)."""
    rng = np.random.default_rng(options.seed + 7919 * k)
    base = problem.base(k)
    u = rng.standard_normal(base.size) * problem.steps(k)
    w = rng.standard_normal(problem.size)
    found = sweep(DirectionLines(problem, k, u[None, :], w[None, :]), problem.eval_dtype)
    if found.jump[0, 0]:
        return "f jumps along a random direction"
    claimed = float(w @ jacobian @ u)
    bound = tol.bound(abs(found.value[0, 0]), float(np.abs(w) @ np.abs(jacobian) @ np.abs(u)), found.error[0, 0])
    if not abs(claimed - found.value[0, 0]) <= bound:
        return "it disagrees with central differences along a random direction, so f is not complex-analytic here"
    return ""


def fast(problem: Problem, analytic: Analytic, tols: dict[int, Tolerance], options: Options,
         inputs: tuple[int, ...]) -> list[Judgement]:
    r"""Random projections: :math:`v^T J u` from the VJP against a directional central difference.

    ``options.directions`` pairs ``(v, u)`` per input; ``u`` is scaled by each
    element's step scale. A projection that disagrees is re-checked by a
    step-size sweep along it; one that still disagrees sends that input to
    full mode, which names the worst element (and is the verdict).
    """
    rng = np.random.default_rng(options.seed)
    count = options.directions
    # One VJP (the user's cost) serves every direction: v^T J u_d for d = 1..count.
    v = rng.standard_normal(problem.size) if problem.size > 1 else np.ones(1)
    products = analytic.products(v)
    out = []
    for k in inputs:
        if products[k].values is None:
            out.append(Judgement(failed_input(k, options.name(k), problem.inputs[k], products[k].finding)))
            continue
        # Uniform directions: as good as normal ones for a projection test, and 3x cheaper to draw.
        u = (rng.random((count, problem.eval_inputs[k].size)) - 0.5) * problem.steps(k)
        judgement = _projections(problem, k, products[k].values, u, np.broadcast_to(v, (count, v.size)), tols[k],
                                 options)
        if products[k].finding:
            judgement.report = replace(judgement.report, passed=False, detail=products[k].finding)
        if not judgement.report.passed:
            judgement = full(problem, analytic, tols, options, (k,))[0]
            judgement.notes.append(f"{options.name(k)}: a random projection disagreed; "
                                   "full mode names the worst element")
        out.append(judgement)
    return out


def _projections(problem: Problem, k: int, g: np.ndarray, u: np.ndarray, v: np.ndarray, tol: Tolerance,
                 options: Options) -> Judgement:
    """Compare ``u_d . g`` (the user's ``v^T J`` along each direction) with directional differences."""
    lines = DirectionLines(problem, k, u, v)
    plus, minus, magnitude, up, down = lines.at(int(np.flatnonzero(FACTORS == 1.0)[0]))
    with np.errstate(all="ignore"):
        numeric = (plus - minus)[:, 0] / (up + down)
        rounding = ROUNDING_FACTOR * machine_epsilon(problem.eval_dtype) * magnitude[:, 0] / (up + down)
    claimed = u @ g
    # The entrywise allowances t_j = rtol (|n_j| + s) + 4 ulp_d(n_j) (the user's gradient standing in for n),
    # combined along u as errors independent of the random u are: |u . e| is of the size of ||u * e||_2, not
    # the worst case sum |u_j| t_j, which grows like n and let a 1e-4 error in float32 through. A correct
    # gradient's errors are far inside t (symdl's float32 kernels: 1/50 of it; float32 sums of 65536 terms:
    # 1/10), so they stay inside FAST_BAND ||u * t||_2 but for odds below 1e-5 per direction (Hoeffding), and
    # a projection outside goes to full mode, whose entrywise verdict stands: no false alarm can come of it.
    size_g = np.abs(g)
    entry = tol.rtol * (size_g + size_g.max()) + DTYPE_ULPS * dtype_spacing(g, tol.dtype)
    band = FAST_BAND * _weighted_norms(u, entry)  # the gradient's own tolerance along each direction
    allowed = band + rounding
    with np.errstate(invalid="ignore"):
        ok = np.abs(claimed - numeric) <= allowed
        # passing only on the numeric side's rounding is no verdict: those directions are swept too
        settled = ok & (rounding <= UNRESOLVED * band)
    if not settled.all():
        found = _direction_sweep(lines, band, problem.eval_dtype)
        numeric = np.where(settled, numeric, found.value[:, 0])
        allowed = np.where(settled, allowed, band + found.error[:, 0])
        with np.errstate(invalid="ignore"):
            # f jumping along a direction: no derivative there (full mode then names the element)
            ok = (np.abs(claimed - numeric) <= allowed) & ~found.jump[:, 0]
    x = problem.inputs[k]
    report = summarise(k, options.name(k), np.zeros(len(ok), x.dtype), (len(ok),), claimed[None, :],
                       numeric[None, :], allowed[None, :], ok[None, :])
    # The compared entries are projections, not Jacobian entries: there is no element to name.
    return Judgement(replace(report, shape=tuple(x.shape), worst_index=None, worst_output=None))


def _weighted_norms(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``||u_d * t||_2`` for each row ``u_d`` of ``u``, scaled so that squares neither overflow nor underflow."""
    top_u, top_t = np.max(np.abs(u), axis=1, keepdims=True), float(np.max(t)) if t.size else 0.0
    if not top_t > 0:
        return np.zeros(u.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(top_u > 0, u / top_u, 0.0)
    return top_u[:, 0] * top_t * np.sqrt(np.square(ratio) @ np.square(t / top_t))


def _direction_sweep(lines: DirectionLines, band: np.ndarray, eval_dtype: np.dtype) -> Sweep:
    """The step-size sweep along each direction, again with ``4^5`` times larger steps where its error
    still exceeds the tolerance ``band`` or ``f`` did not move (as :func:`symdl.check.judge` does per element)."""
    found = sweep(lines, eval_dtype)
    with np.errstate(invalid="ignore"):
        unresolved = ((found.error[:, 0] > band) | found.flat[:, 0]) & ~found.kink[:, 0] & ~found.jump[:, 0]
    if not unresolved.any():
        return found
    wide = sweep(DirectionLines(lines.problem, lines.k, lines.deltas * COARSER, lines.weights), eval_dtype)
    better = (unresolved & ~wide.kink[:, 0] & ~wide.jump[:, 0] & (wide.error[:, 0] < found.error[:, 0]))[:, None]
    return replace(found, value=np.where(better, wide.value, found.value),
                   error=np.where(better, wide.error, found.error))


MODES: dict[str, Mode] = {"full": full, "fast": fast, "complex": complex_step, "richardson": richardson}

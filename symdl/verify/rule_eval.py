"""Direct evaluation of an update rule's SymPy assignments (the reference the kernels are checked against).

:func:`run_rule` evaluates each assignment of the catalog entry with
``sympy.lambdify`` (SymPy's own NumPy printer, independent of the in-place
emitter in :mod:`symdl.codegen.optimizers`), in float64, step after step, and
:func:`run_kernel` runs the generated optimizer on the same data. Imports
SymPy: used by tests and ``symdl verify``, never by :mod:`symdl.optim` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

import symdl.optim as optim
from symdl.catalog.optimizers import GRAD, OPTIMIZERS, PARAM, STEP, UpdateRule
from symdl.verify.rounding import ORDER_SLACK, bounded_step


@dataclass(frozen=True)
class Trajectory:
    """Parameters after every step (``params[k]`` after step k + 1) and the final state.

    ``states[k]`` is the whole state after step k + 1 (kept by :func:`run_rule` only).
    """

    params: list[np.ndarray]
    state: dict[str, object]
    states: list[dict[str, object]] | None = None


@cache
def _compiled(name: str) -> tuple[tuple[sp.Symbol, ...], list[tuple[sp.Symbol, object]]]:
    rule = OPTIMIZERS[name]
    symbols = sorted({s for target, expr in rule.steps for s in (target, *expr.free_symbols)}
                     | set(rule.hyper_symbols) | {STEP, PARAM, GRAD}, key=lambda s: s.name)
    functions = [(target, sp.lambdify(symbols, expr, modules="numpy")) for target, expr in rule.steps]
    return tuple(symbols), functions


def run_rule(rule: UpdateRule, hypers: dict[str, object], param: np.ndarray,
             grads: Sequence[np.ndarray]) -> Trajectory:
    """Evaluate the rule's assignments directly (float64), one step per gradient."""
    symbols, functions = _compiled(rule.name)
    env: dict[sp.Symbol, object] = {s: np.zeros_like(param, dtype=np.float64) for s in symbols}
    env.update({s: float(v) if not isinstance(v, bool) else v for s, v in rule.symbol_values(hypers).items()})
    for item in rule.states:
        value = float(item.init.xreplace(rule.symbol_values(hypers)))
        env[item.symbol] = value if item.scalar else np.full(param.shape, value)
    env[PARAM] = np.array(param, dtype=np.float64)
    scalar_states = {i.symbol for i in rule.states if i.scalar}
    params: list[np.ndarray] = []
    states: list[dict[str, object]] = []
    with np.errstate(all="ignore"):  # Piecewise evaluates every branch, including the ones not taken
        for t, g in enumerate(grads, start=1):
            env[STEP], env[GRAD] = t, np.asarray(g, dtype=np.float64)
            for target, function in functions:
                value = function(*(env[s] for s in symbols))
                env[target] = value if target in scalar_states else np.broadcast_to(
                    np.asarray(value, dtype=np.float64), param.shape).copy()
            params.append(env[PARAM].copy())
            states.append({i.name: np.copy(env[i.symbol]) if not i.scalar else env[i.symbol] for i in rule.states})
    return Trajectory(params, states[-1] if states else {}, states)


def run_kernel(rule: UpdateRule, hypers: dict[str, object], param: np.ndarray,
               grads: Sequence[np.ndarray]) -> Trajectory:
    """Run ``symdl.optim.<ClassName>`` on a copy of ``param`` (its dtype kept)."""
    p = param.copy()
    optimizer = getattr(optim, rule.class_name)([p], **hypers)
    params = []
    for g in grads:
        optimizer.step([np.asarray(g, dtype=p.dtype)])
        params.append(p.copy())
    return Trajectory(params, optimizer.state.get(0, {}))


def trajectory_error(computed: Trajectory, reference: Trajectory) -> float:
    """Largest difference over the run, relative to the largest finite reference value at that step."""
    worst = 0.0
    for a, b in zip(computed.params, reference.params):
        scale = max(float(np.max(np.abs(b), where=np.isfinite(b), initial=0.0)), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(_errors(a, b), initial=0.0)) / scale)
    return worst


def local_error(rule: UpdateRule, hypers: dict[str, object], param: np.ndarray, grads: Sequence[np.ndarray],
                reference: Trajectory | None = None, dtype: type = np.float64) -> float:
    """Largest one-step error of the kernel as a fraction of its rounding-error bound (pass: <= 1).

    Each step starts from the rule's own state (a whole trajectory can amplify rounding: Adam
    with betas = (0, 0) is a sign method, chaotic at a large lr; one step cannot, so this
    measures the kernel, not the dynamics). The truth and the bound come from
    :func:`symdl.verify.rounding.bounded_step`: the step in long double, and Wilkinson's running
    bound on the rounding error of evaluating the rule in ``dtype`` (times
    :data:`~symdl.verify.rounding.ORDER_SLACK` for the kernel's own order of operations). For
    float32 the kernel and the truth start from the rule's state rounded to float32.
    """
    reference = reference or run_rule(rule, hypers, param, grads)
    p = np.array(param, dtype=dtype)
    optimizer = getattr(optim, rule.class_name)([p], **hypers)
    previous, worst = np.array(param, dtype=np.float64), 0.0
    unit_roundoff = float(np.finfo(dtype).eps) / 2
    for k, g in enumerate(grads):
        expected = reference.params[k]
        if not np.all(np.isfinite(expected)):
            break  # the rule itself overflowed (divergent dynamics): nothing finite to compare from here
        p[:] = previous
        state = None
        if k:
            state = {name: v.astype(dtype) if isinstance(v, np.ndarray) else v
                     for name, v in reference.states[k - 1].items()}
            optimizer.state[0] = {"step": k, **{name: np.copy(v) for name, v in state.items()}}  # updated in place
        grad = np.asarray(g, dtype=dtype)
        optimizer.step([grad])
        truth, bound = bounded_step(rule, hypers, previous.astype(dtype), state, grad, k + 1, unit_roundoff)
        # the truth's own rounding (long double) and the smallest subnormal, so that exact zeros compare
        allowed = ORDER_SLACK * bound + 2.0**-60 * np.abs(truth) + np.finfo(dtype).smallest_subnormal
        worst = max(worst, float(np.max(_errors(p, truth) / allowed)))
        previous = expected
    return worst


def _errors(computed: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Elementwise |computed - truth| in long double; infinite where exactly one is finite or where
    non-finite values differ (a NaN must not vanish in a ``max``)."""
    a, b = computed.astype(np.longdouble), np.asarray(truth, dtype=np.longdouble)
    finite = np.isfinite(a) & np.isfinite(b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    difference = np.subtract(a, b, out=np.zeros_like(a), where=finite)  # inf - inf never formed
    return np.where(finite, np.abs(difference), np.where(same, 0.0, np.inf))

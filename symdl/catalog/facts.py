"""Derived facts about the update rules and schedules, each a named SymPy derivation with its LaTeX.

Every :class:`Fact` derives its claim from the catalog entries (the
assignments of :mod:`symdl.catalog.optimizers`, the schedules of
:mod:`symdl.catalog.schedules`), not from a restatement, so a change to a rule
that breaks a fact makes its proof fail. ``Fact.prove()`` returns whether the
claim holds and how it was shown; ``Fact.latex`` is the claim for handouts and
``docs/optim.md``. Imports SymPy (``symdl verify`` and tests only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sympy as sp

from symdl.catalog import optimizers as rules
from symdl.catalog.optimizers import (ADAGRAD, ADAM, BETA1, BETA2, D, EPS, EXP_AVG, EXP_AVG_SQ, INITIAL_ACC, LR,
                                      LR_DECAY, MOMENTUM_BUFFER, PARAM, SGD, STEP, SUM, UpdateRule)
from symdl.catalog.schedules import EPOCH, PREVIOUS, SCHEDULES, TOTAL

G = sp.Symbol("g", positive=True)  # a constant (positive, by symmetry) gradient
A = sp.Symbol("a", positive=True)  # curvature of f(x) = a x^2 / 2
LAMBDA = sp.Symbol("lambda", positive=True)  # an eigenvalue of the Hessian
RATIO = sp.Symbol("r", positive=True)  # lambda_i / lambda_max, in (0, 1]
Z = sp.Symbol("z")


@dataclass(frozen=True)
class Fact:
    """One derived fact: ``derive()`` returns (holds, method)."""

    name: str
    statement: str
    latex: str
    derive: Callable[[], tuple[bool, str]]

    def prove(self) -> tuple[bool, str]:
        """Whether the derivation holds, and the method (cached: derivations take up to a second)."""
        return _proved(self.name)


def _zero(expr: sp.Expr) -> bool:
    return sp.simplify(expr) == 0


def _update(rule: UpdateRule, target: sp.Symbol, **values: object) -> sp.Expr:
    """The expression of ``rule``'s (last) assignment to ``target`` with its branches resolved by ``values``."""
    names = {h.name: s for h in rule.hypers for s in h.symbols}
    subs = {names.get(k, getattr(rules, k.upper(), None)): sp.sympify(v) for k, v in values.items()}
    expr = [e for t, e in rule.steps if t == target][-1]
    return sp.piecewise_fold(expr.xreplace(subs))


# --------------------------------------------------------------------------- optimizer facts
def _adam_bias_correction() -> tuple[bool, str]:
    # Induction on t: if m_{t-1} = (1 - beta1^(t-1)) g then Adam's update gives m_t = (1 - beta1^t) g (m_0 = 0).
    m = _update(ADAM, EXP_AVG).xreplace({D: G, EXP_AVG: (1 - BETA1 ** (STEP - 1)) * G})
    v = _update(ADAM, EXP_AVG_SQ).xreplace({D: G, EXP_AVG_SQ: (1 - BETA2 ** (STEP - 1)) * G**2})
    holds = _zero(m - (1 - BETA1**STEP) * G) and _zero(v - (1 - BETA2**STEP) * G**2)
    holds &= _zero(m / (1 - BETA1**STEP) - G) and _zero(v / (1 - BETA2**STEP) - G**2)
    return holds, "symbolic (induction on t from the catalog's Adam update)"


def _momentum_steady_state() -> tuple[bool, str]:
    b, mu = sp.Symbol("b"), sp.Symbol("mu", positive=True)
    update = _update(SGD, MOMENTUM_BUFFER, step=2, dampening=0, momentum=mu).xreplace({D: G, MOMENTUM_BUFFER: b})
    (fixed,) = sp.solve(sp.Eq(b, update), b)
    direction = _update(SGD, D, momentum=mu, nesterov=False).xreplace({MOMENTUM_BUFFER: fixed})
    step = _update(SGD, PARAM).xreplace({D: direction, PARAM: 0})
    return _zero(step + LR * G / (1 - mu)), "symbolic (fixed point of the catalog's SGD momentum buffer)"


def _gd_quadratic() -> tuple[bool, str]:
    # Plain SGD on f(x) = a x^2 / 2: g = a x, so x_{t+1} = (1 - lr a) x_t; converges iff |1 - lr a| < 1.
    x = sp.Symbol("x", real=True)
    lr = sp.Symbol("lr", positive=True)
    factor = sp.cancel(_update(SGD, PARAM).xreplace({D: A * x, PARAM: x, LR: lr}) / x)
    region = sp.solve_univariate_inequality(sp.Abs(factor) < 1, lr, relational=False)
    fastest = sp.solve(factor, lr)
    holds = region == sp.Interval.open(0, 2 / A) and fastest == [1 / A]
    return holds, "symbolic (solve |1 - lr a| < 1; the factor vanishes at lr = 1/a)"


def _gd_hessian() -> tuple[bool, str]:
    # Along each eigenvector of H the error shrinks by (1 - lr lambda_i); lambda_i = r lambda_max, 0 < r <= 1.
    lr = sp.Symbol("lr", positive=True)
    per_direction = sp.solve_univariate_inequality(sp.Abs(1 - lr * RATIO * LAMBDA) < 1, lr, relational=False)
    largest = sp.solve_univariate_inequality(sp.Abs(1 - lr * LAMBDA) < 1, lr, relational=False)
    contains = per_direction.sup - largest.sup  # 2 / (r lambda) - 2 / lambda >= 0 for r <= 1
    holds = largest == sp.Interval.open(0, 2 / LAMBDA) and sp.simplify(contains.subs(RATIO, 1)) == 0 and \
        sp.diff(contains, RATIO).is_negative
    return bool(holds), "symbolic (intersection over eigen-directions is the one of lambda_max)"


def _heavy_ball() -> tuple[bool, str]:
    # SGD with momentum on a x^2/2: state (x_t, b_t); eigenvalues of the linear map satisfy z^2 - (1 + mu - lr a) z + mu.
    x, b = sp.symbols("x b", real=True)
    mu, lr = sp.Symbol("mu", positive=True), sp.Symbol("lr", positive=True)
    buffer = _update(SGD, MOMENTUM_BUFFER, step=2, dampening=0, momentum=mu).xreplace({D: A * x, MOMENTUM_BUFFER: b})
    direction = _update(SGD, D, momentum=mu, nesterov=False).xreplace({MOMENTUM_BUFFER: buffer})
    new_x = _update(SGD, PARAM).xreplace({D: direction, PARAM: x, LR: lr})
    matrix = sp.Matrix([[sp.diff(e, s) for s in (x, b)] for e in (new_x, buffer)])
    a1, a0 = sp.Poly(matrix.charpoly(Z).as_expr(), Z).all_coeffs()[1:]
    # Schur-Cohn/Jury: both roots of z^2 + a1 z + a0 inside the unit circle iff |a0| < 1 and |a1| < 1 + a0.
    # Both conditions are linear in lr with slope a > 0: c1 lr + c0 < 0 iff lr < -c0 / c1.
    upper, lower = sp.expand(a1 - 1 - a0), sp.expand(-(a1 + 1 + a0))
    slopes = [sp.diff(e, lr) for e in (upper, lower)]
    bounds = [sp.simplify(-e.subs(lr, 0) / c) for e, c in zip((upper, lower), slopes)]
    holds = _zero(a0 - mu) and _zero(a1 + 1 + mu - lr * A) and slopes[0].is_positive and \
        slopes[1].is_negative and _zero(bounds[0] - 2 * (1 + mu) / A) and bounds[1] == 0
    return holds, "symbolic (characteristic polynomial of the catalog's SGD momentum map; Jury criterion)"


def _adagrad_effective_lr() -> tuple[bool, str]:
    # Unrolled: G_t = G_0 + sum of squares; the step is -eta_eff * d with eta_eff as stated.
    total = sp.Symbol("S", nonnegative=True)
    update = _update(ADAGRAD, PARAM, maximize=False, weight_decay=0).xreplace({SUM: INITIAL_ACC + total, PARAM: 0})
    effective = LR / (1 + (STEP - 1) * LR_DECAY) / (sp.sqrt(INITIAL_ACC + total) + EPS)
    accumulates = _zero(_update(ADAGRAD, SUM).xreplace({SUM: INITIAL_ACC + total, D: G}) - (INITIAL_ACC + total + G**2))
    return _zero(update + effective * D) and accumulates, "symbolic (the catalog's Adagrad update, unrolled)"


@cache
def adam_step_bound() -> sp.Expr:
    """B_t: with eps = 0 and beta1^2 < beta2, Adam's per-coordinate step |param_t - param_{t-1}| <= B_t."""
    r = BETA1**2 / BETA2
    geometric = (1 - r**STEP) / (1 - r)  # sum_{j<t} r^j
    return LR * (1 - BETA1) / sp.sqrt(1 - BETA2) * sp.sqrt((1 - BETA2**STEP) * geometric) / (1 - BETA1**STEP)


def _adam_step_bound() -> tuple[bool, str]:
    # m_t = (1-b1) sum b1^(t-k) g_k, v_t = (1-b2) sum b2^(t-k) g_k^2; Cauchy-Schwarz with weights b2^(t-k):
    # |m_t| <= (1-b1) sqrt(sum (b1^2/b2)^(t-k)) sqrt(v_t / (1-b2)); equality for g_k = (b1/b2)^(t-k).
    j = sp.Symbol("j", integer=True, nonnegative=True)
    r = BETA1**2 / BETA2
    summed = sp.summation(r**j, (j, 0, STEP - 1))
    holds = _zero(sp.piecewise_fold(summed).args[-1].expr - (1 - r**STEP) / (1 - r)) if isinstance(
        summed, sp.Piecewise) else _zero(summed - (1 - r**STEP) / (1 - r))
    b1, b2, lr = sp.Rational(9, 10), sp.Rational(999, 1000), sp.Rational(1, 1000)
    for steps in (1, 2, 3):  # the extremal sequence attains the bound (the catalog's Adam, eps = 0, exact)
        m = v = sp.S.Zero
        for k in range(1, steps + 1):
            g = (b1 / b2) ** (steps - k)
            m = _update(ADAM, EXP_AVG).xreplace({EXP_AVG: m, D: g, BETA1: b1})
            v = _update(ADAM, EXP_AVG_SQ).xreplace({EXP_AVG_SQ: v, D: g, BETA2: b2})
        step = -_update(ADAM, PARAM, amsgrad=False).xreplace(
            {PARAM: 0, EXP_AVG: m, rules.VHAT: v, EXP_AVG_SQ: v, EPS: 0, BETA1: b1, BETA2: b2, STEP: steps, LR: lr})
        bound = adam_step_bound().xreplace({BETA1: b1, BETA2: b2, STEP: steps, LR: lr})
        holds &= _zero(step - bound)
    return holds, "symbolic (Cauchy-Schwarz; geometric sum; equality case for t = 1, 2, 3)"


# --------------------------------------------------------------------------- schedule facts
def _chain_equals_closed(name: str) -> Callable[[], tuple[bool, str]]:
    def derive() -> tuple[bool, str]:
        schedule = SCHEDULES[name]
        previous = schedule.closed.xreplace({EPOCH: EPOCH - 1})
        chained = schedule.chain.xreplace({PREVIOUS: previous})
        target = schedule.closed
        if name == "LinearLR":  # on 1 <= t <= T, min(t, T) = t and min(t - 1, T) = t - 1
            chained, target = (e.replace(sp.Min, lambda *args: args[0] if args[0] != TOTAL else args[1])
                               for e in (chained, target))
        return _zero(chained - target), "symbolic (the update applied to the closed form at t - 1 gives it at t)"
    return derive


def _step_lr() -> tuple[bool, str]:
    schedule = SCHEDULES["StepLR"]
    n = sp.Symbol("n", integer=True, positive=True)  # t = n * step_size: floor(t / s) = floor((t - 1) / s) + 1
    s = sp.Symbol("step_size", integer=True, positive=True)
    closed = schedule.closed.xreplace({EPOCH: n * s})
    previous = schedule.closed.xreplace({EPOCH: n * s - 1})
    holds = _zero(sp.powsimp(schedule.chain.xreplace({PREVIOUS: previous}) - closed, force=True).rewrite(sp.floor)
                  .subs(sp.floor((n * s - 1) / s), n - 1))
    return holds, "symbolic (at t = n step_size, floor drops by one from t to t - 1)"


def _one_cycle() -> tuple[bool, str]:
    closed = SCHEDULES["OneCycleLR"].closed
    pct = sp.Symbol("pct", nonnegative=True)
    ends = closed.subs(pct, 0) - sp.Symbol("eta_start", positive=True), closed.subs(pct, 1) - sp.Symbol(
        "eta_end", nonnegative=True)
    monotone = sp.simplify(sp.diff(closed, pct) / (sp.Symbol("eta_end", nonnegative=True)
                                                  - sp.Symbol("eta_start", positive=True)))
    return all(_zero(e) for e in ends) and monotone.subs(pct, sp.Rational(1, 2)) > 0, \
        "symbolic (starts at eta_start, ends at eta_end, moves monotonically between)"


FACTS: dict[str, Fact] = {f.name: f for f in (
    Fact("adam_bias_correction", "For a constant gradient g, Adam's bias-corrected moments are exactly g and g^2.",
         r"m_t = (1 - \beta_1^t)\, g \;\Rightarrow\; \hat m_t = \frac{m_t}{1 - \beta_1^t} = g, \quad "
         r"\hat v_t = \frac{v_t}{1 - \beta_2^t} = g^2", _adam_bias_correction),
    Fact("momentum_steady_state", "For a constant gradient, SGD with momentum steps lr g / (1 - momentum).",
         r"b^\ast = \mu b^\ast + g \;\Rightarrow\; b^\ast = \frac{g}{1-\mu}, \quad "
         r"\theta_{t+1} - \theta_t = -\frac{\eta\, g}{1 - \mu}", _momentum_steady_state),
    Fact("gd_quadratic_1d", "Gradient descent on a x^2/2 converges iff 0 < lr < 2/a, fastest (one step) at lr = 1/a.",
         r"x_{t+1} = (1 - \eta a)\, x_t: \quad |1 - \eta a| < 1 \iff 0 < \eta < \tfrac{2}{a}; \quad "
         r"\eta = \tfrac{1}{a} \Rightarrow x_1 = 0", _gd_quadratic),
    Fact("gd_quadratic_hessian", "On a quadratic with Hessian H > 0, gradient descent converges iff lr < 2/lambda_max(H).",
         r"e_{t+1} = (I - \eta H)\, e_t \to 0 \iff \max_i |1 - \eta \lambda_i| < 1 \iff "
         r"0 < \eta < \tfrac{2}{\lambda_{\max}(H)}", _gd_hessian),
    Fact("heavy_ball_region", "SGD with momentum mu in [0, 1) on a x^2/2 converges iff 0 < lr a < 2 (1 + mu).",
         r"z^2 - (1 + \mu - \eta a) z + \mu = 0,\ |z| < 1 \iff 0 < \eta a < 2 (1 + \mu) \quad (0 \le \mu < 1)",
         _heavy_ball),
    Fact("adagrad_effective_lr", "Adagrad's per-coordinate learning rate is lr / (1 + (t-1) lr_decay) / "
         "(sqrt(G_0 + sum of squared gradients) + eps).",
         r"\theta_t = \theta_{t-1} - \eta_t^{\mathrm{eff}} g_t, \quad \eta_t^{\mathrm{eff}} = "
         r"\frac{\eta}{(1 + (t-1)\gamma) \left(\sqrt{G_0 + \sum_{k \le t} g_k^2} + \epsilon\right)}",
         _adagrad_effective_lr),
    Fact("adam_step_bound", "With eps = 0 and beta1^2 < beta2, Adam's per-coordinate step is at most B_t (attained).",
         r"|\Delta\theta_t| \le \eta \frac{1 - \beta_1}{\sqrt{1 - \beta_2}} \frac{\sqrt{(1 - \beta_2^t)"
         r"\sum_{j<t} (\beta_1^2/\beta_2)^j}}{1 - \beta_1^t} \xrightarrow{t \to \infty} "
         r"\frac{\eta (1 - \beta_1)}{\sqrt{(1 - \beta_2)(1 - \beta_1^2/\beta_2)}}", _adam_step_bound),
    Fact("cosine_annealing_closed_form", "torch's chainable CosineAnnealingLR update gives the closed form.",
         r"\eta_t = \eta_{\min} + (\eta_0 - \eta_{\min}) \frac{1 + \cos(\pi t / T)}{2}",
         _chain_equals_closed("CosineAnnealingLR")),
    Fact("linear_warmup_closed_form", "torch's chainable LinearLR update gives the linear ramp.",
         r"\eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)", _chain_equals_closed("LinearLR")),
    Fact("exponential_closed_form", "ExponentialLR's update gives eta_0 gamma^t.", r"\eta_t = \eta_0 \gamma^t",
         _chain_equals_closed("ExponentialLR")),
    Fact("step_lr_closed_form", "StepLR's update gives eta_0 gamma^floor(t / step_size).",
         r"\eta_t = \eta_0 \gamma^{\lfloor t / s \rfloor}", _step_lr),
    Fact("one_cycle_anneal", "OneCycleLR's cosine phase runs from its start to its end value.",
         r"\eta(p) = \eta_{\mathrm{end}} + \frac{\eta_{\mathrm{start}} - \eta_{\mathrm{end}}}{2}(1 + \cos \pi p),"
         r"\ \eta(0) = \eta_{\mathrm{start}},\ \eta(1) = \eta_{\mathrm{end}}", _one_cycle),
)}


@cache
def _proved(name: str) -> tuple[bool, str]:
    try:
        return FACTS[name].derive()
    except Exception as error:  # a derivation that cannot be carried out is a failed proof, with the reason
        return False, f"derivation failed: {type(error).__name__}: {error}"

"""Step-by-step derivations of facts about the update rules (``symdl derive adam_bias_correction``).

Each derivation starts from the catalog's own update rule (:mod:`symdl.catalog.optimizers`), so a
change to the rule that breaks the fact breaks a step; every step is a named rewrite, verified like
any other (an induction hypothesis or a fixed point enters as an assumption the step is checked
under, and is stated as such).
"""

from __future__ import annotations

import sympy as sp

from symdl.catalog.optimizers import (
    ADAM,
    BETA1,
    BETA2,
    EXP_AVG,
    EXP_AVG_SQ,
    LR,
    MOMENTUM_BUFFER,
    PARAM,
    SGD,
    STEP,
    D,
    UpdateRule,
)
from symdl.steps.tree import Derivation, Part, Rewrite

__all__ = ["FACT_DERIVATIONS", "derive_fact"]

G = sp.Symbol("g", real=True)  # a constant gradient
T = sp.Symbol("t", positive=True, integer=True)  # the step count, as the textbook writes it
MU = sp.Symbol("mu", positive=True)  # the momentum


def _assignment(rule: UpdateRule, target: sp.Symbol, values: dict[sp.Symbol, sp.Basic] | None = None) -> sp.Expr:
    """The last assignment to ``target`` in ``rule``, its branches resolved by ``values``."""
    expr = [e for t, e in rule.steps if t == target][-1]
    return sp.piecewise_fold(expr.xreplace(values or {}))


def _moment(state: sp.Symbol, beta: sp.Symbol, power: int, name: str) -> Part:
    """Adam's moment with a constant gradient: (1 - beta^t) g^power by induction, then the bias correction."""
    previous = sp.Symbol(f"{name}_prev", real=True)  # m_{t-1} (a name expression text can carry)
    update = _assignment(ADAM, state).xreplace({state: previous, D: G, STEP: T})
    hypothesis = (1 - beta ** (T - 1)) * G**power
    assumed = update.xreplace({previous: hypothesis})
    closed = (1 - beta**T) * G**power
    g = "g" if power == 1 else f"g^{power}"
    return Part(f"the {'first' if power == 1 else 'second'} moment {name}_t, by induction on t", None, (
        Rewrite(update, None, assumed, f"Adam's update of {name} with the constant gradient g, and the induction "
                                       f"hypothesis {name}_(t-1) = (1 - beta^(t-1)) {g} (true at t = 1: "
                                       f"{name}_0 = 0)", ((previous, hypothesis),)),
        Rewrite(assumed, None, closed, "expand: beta - beta^t + 1 - beta = 1 - beta^t"),
        Rewrite(sp.Mul(closed, sp.Pow(1 - beta**T, -1), evaluate=False), None, G**power,
                f"the bias correction divides {name}_t by 1 - beta^t: exactly {g}, at every step t"),
    ), key=f"{name}_hat")


def adam_bias_correction() -> Derivation:
    """For a constant gradient g, Adam's bias-corrected moments are exactly g and g^2."""
    parts = [_moment(EXP_AVG, BETA1, 1, "m"), _moment(EXP_AVG_SQ, BETA2, 2, "v")]
    return Derivation(G, (G,), parts, title="adam_bias_correction: for a constant gradient g, Adam's "
                                            "bias-corrected moments are exactly g and g^2")


def momentum_steady_state() -> Derivation:
    """For a constant gradient, SGD with momentum steps lr g / (1 - momentum)."""
    buffer = sp.Symbol("b", real=True)
    steady = G / (1 - MU)
    from symdl.catalog.optimizers import DAMPENING, MOMENTUM

    update = _assignment(SGD, MOMENTUM_BUFFER, {MOMENTUM: MU, DAMPENING: 0, STEP: 2}).xreplace(
        {MOMENTUM_BUFFER: buffer, D: G})
    step = _assignment(SGD, PARAM).xreplace({PARAM: 0, D: buffer})
    parts = [
        Part("the buffer's fixed point", None, (
            Rewrite(update, None, steady, "the buffer stops changing when b = mu b + g, i.e. b = g/(1 - mu): "
                                          "checked by putting it in", ((buffer, steady),)),)),
        Part("the step", None, (
            Rewrite(step, None, -LR * steady, "the parameter moves by -lr d with d = b (no Nesterov), at the "
                                              "fixed point", ((buffer, steady),)),), key="step"),
    ]
    return Derivation(G, (G,), parts, title="momentum_steady_state: for a constant gradient, SGD with momentum "
                                            "steps lr g / (1 - momentum)",
                      notes=("The buffer approaches the fixed point geometrically (|mu| < 1): b_t - g/(1 - mu) "
                             "= mu^(t-1) (b_1 - g/(1 - mu)).",))


#: The facts ``symdl derive`` shows step by step, by catalog fact name.
FACT_DERIVATIONS = {"adam_bias_correction": adam_bias_correction, "momentum_steady_state": momentum_steady_state}


def derive_fact(name: str, verify: bool = True, simplify_seconds: float | None = None) -> Derivation:
    """The step-by-step derivation of an optimizer fact, verified."""
    derivation = FACT_DERIVATIONS[name]()
    return derivation.verify(None, simplify_seconds) if verify else derivation

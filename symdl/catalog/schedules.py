"""Learning-rate schedules: closed forms and torch's chainable updates, in SymPy.

Each :class:`Schedule` gives the learning rate at epoch ``t`` in closed form
and, where ``torch.optim.lr_scheduler`` computes it from the previous value
(``get_lr``), that *chainable* update as an expression in :data:`PREVIOUS`
(the lr after epoch ``t - 1``). :mod:`symdl.catalog.facts` proves that the
update applied to the closed form at ``t - 1`` gives the closed form at ``t``,
so ``symdl.optim.lr_scheduler`` (which follows torch's updates) computes the
closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

EPOCH = sp.Symbol("t", integer=True, nonnegative=True)
PREVIOUS = sp.Symbol("eta_prev", positive=True)
BASE = sp.Symbol("eta_0", positive=True)
ETA_MIN = sp.Symbol("eta_min", nonnegative=True)
T_MAX = sp.Symbol("T_max", integer=True, positive=True)
GAMMA = sp.Symbol("gamma", positive=True)
STEP_SIZE = sp.Symbol("step_size", integer=True, positive=True)
START = sp.Symbol("start_factor", positive=True)
END = sp.Symbol("end_factor", nonnegative=True)
TOTAL = sp.Symbol("total_iters", integer=True, positive=True)
PCT = sp.Symbol("pct", nonnegative=True)
FROM = sp.Symbol("eta_start", positive=True)
TO = sp.Symbol("eta_end", nonnegative=True)
FACTOR = sp.Symbol("factor", positive=True)
MIN_LR = sp.Symbol("min_lr", nonnegative=True)
PASSED = sp.Symbol("k", integer=True, nonnegative=True)  # milestones passed


@dataclass(frozen=True)
class Schedule:
    """One scheduler's math.

    Attributes:
        name: ``torch.optim.lr_scheduler`` class name.
        closed: the learning rate at epoch :data:`EPOCH` (or as a function of
            the phase fraction :data:`PCT` for OneCycleLR's annealing).
        chain: torch's update from :data:`PREVIOUS` on the epochs where it
            changes the lr, or None.
        domain: the epochs where ``chain`` applies (for the proof), as a condition.
        summary: one line.
    """

    name: str
    closed: sp.Expr
    chain: sp.Expr | None
    domain: sp.Basic
    summary: str


SCHEDULES: dict[str, Schedule] = {s.name: s for s in (
    Schedule("StepLR", BASE * GAMMA ** sp.floor(EPOCH / STEP_SIZE), PREVIOUS * GAMMA,
             sp.Eq(sp.Mod(EPOCH, STEP_SIZE), 0), "decay by gamma every step_size epochs"),
    Schedule("MultiStepLR", BASE * GAMMA ** PASSED, PREVIOUS * GAMMA, sp.true,
             "decay by gamma at each milestone (k milestones passed)"),
    Schedule("ExponentialLR", BASE * GAMMA ** EPOCH, PREVIOUS * GAMMA, EPOCH >= 1, "decay by gamma every epoch"),
    Schedule("CosineAnnealingLR", ETA_MIN + (BASE - ETA_MIN) * (1 + sp.cos(sp.pi * EPOCH / T_MAX)) / 2,
             (1 + sp.cos(sp.pi * EPOCH / T_MAX)) / (1 + sp.cos(sp.pi * (EPOCH - 1) / T_MAX)) * (PREVIOUS - ETA_MIN)
             + ETA_MIN, sp.And(EPOCH >= 1, EPOCH <= T_MAX), "half a cosine from the base lr down to eta_min"),
    Schedule("LinearLR", BASE * (START + (END - START) * sp.Min(EPOCH, TOTAL) / TOTAL),
             PREVIOUS * (1 + (END - START) / (TOTAL * START + (EPOCH - 1) * (END - START))),
             sp.And(EPOCH >= 1, EPOCH <= TOTAL), "linear warm-up of the lr factor from start_factor to end_factor"),
    Schedule("OneCycleLR", TO + (FROM - TO) / 2 * (1 + sp.cos(sp.pi * PCT)), None, sp.true,
             "cosine anneal from eta_start to eta_end as pct goes from 0 to 1 within a phase"),
    Schedule("ReduceLROnPlateau", sp.Max(PREVIOUS * FACTOR, MIN_LR), None, sp.true,
             "multiply by factor after patience bad epochs, never below min_lr"),
)}

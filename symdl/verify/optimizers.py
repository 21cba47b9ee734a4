"""``symdl verify`` rows for the optimizers: one per rule and case, one per derived fact.

Rule rows: the generated kernel against the rule's SymPy assignments evaluated
directly (:mod:`symdl.verify.rule_eval`) on 3 gradient sequences of 100 steps:
``fwd ulp`` is the largest one-step error in float64 ulps (each step from the
rule's own state), ``grad ulp`` the float32 kernel's largest one-step error in
float32 ulps, ``fd rel err`` the float64 whole-trajectory relative difference
(bound 1e-6 like the catalog's finite differences; measured ~1e-16), and
``finite`` that gradients of 1e15 (float32) / 1e150 (float64) and 0 raise no
FP warning and stay finite. Fact rows: the derivation of
:mod:`symdl.catalog.facts`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import symdl.optim as optim
from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule
from symdl.catalog.facts import FACTS
from symdl.verify.rule_eval import local_error, run_kernel, run_rule, trajectory_error
from symdl.verify.row import VerifyRow, finite_and_typed

STEPS, SEEDS = 100, 3
#: One step's error from the truth (long double) as a fraction of its running rounding-error bound
#: (symdl.verify.rounding), float64 and float32: at most 1.
STEP_ERROR_BOUND = 1.0


def names() -> list[str]:
    """Row names: each rule, then each fact."""
    return [*OPTIMIZERS, *FACTS]


def _float32_error(rule: UpdateRule, hypers: dict, param: np.ndarray, grads: list[np.ndarray]) -> float:
    """One-step error of the float32 kernel over its float32 rounding bound, from float32-rounded state."""
    p32, g32 = param.astype(np.float32), [g.astype(np.float32) for g in grads]
    reference = run_rule(rule, hypers, p32.astype(np.float64), g32)
    return local_error(rule, hypers, p32.astype(np.float64), g32, reference, dtype=np.float32)


def _finite(rule: UpdateRule, hypers: dict) -> tuple[bool, str]:
    for dtype, big in ((np.float32, 1e15), (np.float64, 1e150)):
        p = np.array([1.0, -2.0, 0.5, 0.0], dtype=dtype)
        opt = getattr(optim, rule.class_name)([p], **hypers)

        def run() -> list[np.ndarray]:  # called at once, in this iteration
            for g in ([big, -big, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-big, big, 1.0, 0.0]):
                opt.step([np.array(g, dtype=dtype)])
            return [p]

        holds, detail = finite_and_typed(run, dtype, f"{np.dtype(dtype).name} parameter")
        if not holds:
            return False, detail
    return True, ""


def _rule_row(rule: UpdateRule) -> VerifyRow:
    step64 = step32 = trajectory = 0.0
    finite, details = True, []
    for case, hypers in rule.cases.items():
        for seed in range(SEEDS):
            rng = np.random.default_rng(seed)
            param = rng.standard_normal(12)
            drift = rng.standard_normal(12)
            grads = [drift + rng.standard_normal(12) for _ in range(STEPS)]
            reference = run_rule(rule, hypers, param, grads)
            step64 = max(step64, local_error(rule, hypers, param, grads, reference))
            step32 = max(step32, _float32_error(rule, hypers, param, grads))
            trajectory = max(trajectory, trajectory_error(run_kernel(rule, hypers, param, grads), reference))
        ok, detail = _finite(rule, hypers)
        finite &= ok
        details += [f"{case}: {detail}"] if detail else []
    return VerifyRow(op=rule.name, variant=", ".join(rule.cases), proof=f"kernel = SymPy rule evaluated directly, "
                     f"{len(rule.cases)} cases x {SEEDS} runs x {STEPS} steps; step error / rounding bound", proofs_hold=True,
                     fd_error=trajectory, forward_ulp=step64, grad_ulp=step32, forward_ulp_bound=STEP_ERROR_BOUND,
                     grad_ulp_bound=STEP_ERROR_BOUND, finite=finite, detail="; ".join(details))


def _fact_row(name: str) -> VerifyRow:
    holds, method = FACTS[name].prove()
    return VerifyRow(op=name, variant="fact", proof=method, proofs_hold=holds, fd_error=0.0, forward_ulp=0.0,
                     grad_ulp=0.0, forward_ulp_bound=0.0, grad_ulp_bound=0.0, finite=True,
                     detail="" if holds else f"proof failed: {FACTS[name].statement}")


def verify(names: list[str], *, use_cache: bool = True, on_done: Callable[[], None] = lambda: None) -> list[VerifyRow]:
    """The rows for ``names`` (proofs here take seconds: nothing to cache)."""
    rows = []
    for name in names:
        rows.append(_rule_row(OPTIMIZERS[name]) if name in OPTIMIZERS else _fact_row(name))
        on_done()
    return rows

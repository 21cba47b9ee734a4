"""Trajectories equal torch.optim's (single-tensor path, float64) over hundreds of steps."""

from __future__ import annotations

import numpy as np
import pytest

from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule
from symdl.verify.rule_eval import Trajectory, run_kernel, trajectory_error

torch = pytest.importorskip("torch")

CASES = [pytest.param(r, c, id=f"{r.name}-{c}") for r in OPTIMIZERS.values() if r.in_torch for c in r.cases]


def _run_torch(rule: UpdateRule, hypers: dict, param: np.ndarray, grads: list[np.ndarray]) -> Trajectory:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # NAdam keeps mu_product in the default dtype
    try:
        p = torch.tensor(param, requires_grad=True)
        optimizer = getattr(torch.optim, rule.class_name)([p], foreach=False, **hypers)
        params = []
        for g in grads:
            p.grad = torch.tensor(g)
            optimizer.step()
            params.append(p.detach().numpy().copy())
    finally:
        torch.set_default_dtype(previous)
    return Trajectory(params, {})


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_trajectory_equals_torch(rule: UpdateRule, case: str) -> None:
    rng = np.random.default_rng(5)
    param = rng.standard_normal(32)
    drift = rng.standard_normal(32)
    grads = [drift + rng.standard_normal(32) for _ in range(300)]
    hypers = {**rule.cases[case], "lr": 0.01}
    error = trajectory_error(run_kernel(rule, hypers, param, grads), _run_torch(rule, hypers, param, grads))
    assert error <= 1e-14, error  # measured <= 6e-16: the order of roundings only

"""The reference the optimizer kernels are judged by: one step in long double with a running bound
on the rounding error of evaluating it in floats (symdl.verify.rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from symdl.catalog.optimizers import OPTIMIZERS, UpdateRule
from symdl.optim import _generated
from symdl.verify.rounding import bounded_step
from symdl.verify.rule_eval import local_error, run_rule

CASES = [pytest.param(rule, case, id=f"{rule.name}-{case}") for rule in OPTIMIZERS.values() for case in rule.cases]


def _data(seed: int, scale: float, steps: int = 30) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    drift = rng.standard_normal(16)
    return rng.standard_normal(16), [scale * (drift + rng.standard_normal(16)) for _ in range(steps)]


@pytest.mark.parametrize(("rule", "case"), CASES)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_direct_float64_evaluation_is_within_the_bound(rule: UpdateRule, case: str, scale: float) -> None:
    """The bound is an error bound: the rule evaluated in float64 (another evaluation than the
    kernel's) never leaves it, and the truth agrees with it to long double's precision."""
    hypers = rule.cases[case]
    param, grads = _data(7, scale)
    reference = run_rule(rule, hypers, param, grads)
    previous = param
    for k, g in enumerate(grads):
        state = reference.states[k - 1] if k else None
        truth, bound = bounded_step(rule, hypers, previous, state, g, k + 1, 2.0**-53)
        error = np.abs(reference.params[k].astype(np.longdouble) - truth)
        assert np.all(error <= bound + 2.0**-60 * np.abs(truth)), (k, np.max(error / bound))
        assert np.all(bound <= 1e-6 * np.maximum(np.abs(truth), 1)), k  # and not vacuous on these tame steps
        previous = reference.params[k]


def test_a_cancelling_sum_gets_a_bound_from_its_terms_not_its_result() -> None:
    """SGD's param - lr d with lr d = 1 - 2^-30 and param = 1: the result is 2^-30, but the
    subtraction's rounding is bounded by u times its operands (about 2u), not by u times the result;
    with the product's own rounding (u), the bound is 3u."""
    u = 2.0**-53
    truth, bound = bounded_step(OPTIMIZERS["sgd"], {"lr": 1.0}, np.array([1.0]), None, np.array([1 - 2.0**-30]), 1, u)
    assert float(truth[0]) == 2.0**-30
    assert 2 * u <= float(bound[0]) <= 4 * u


def test_a_kernel_off_by_a_billionth_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step test can fail: every parameter update scaled by (1 + 1e-9) is thousands of bounds off."""
    axpy = _generated._axpy
    param, grads = _data(0, 1.0)
    for name in ("sgd", "rmsprop", "adam", "adadelta"):
        assert local_error(OPTIMIZERS[name], {}, param, grads) <= 1.0
    monkeypatch.setattr(_generated, "_axpy", lambda a, x, y: axpy(a * (1 + 1e-9), x, y))
    for name in ("sgd", "rmsprop", "adam", "adadelta"):
        assert local_error(OPTIMIZERS[name], {}, param, grads) > 1e3, name

"""Derived facts: each proof holds, has LaTeX, and predicts what numeric runs of the optimizers do."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from symdl.catalog.optimizers import BETA1, BETA2, LR, STEP
from symdl.optim import SGD, Adagrad, Adam
from symdl.catalog.facts import FACTS, adam_step_bound


@pytest.mark.parametrize("name", list(FACTS))
def test_fact_is_proven_with_latex(name: str) -> None:
    holds, method = FACTS[name].prove()
    assert holds, method
    assert FACTS[name].latex and "\\" in FACTS[name].latex


def _run_quadratic(hessian: np.ndarray, lr: float, momentum: float, steps: int) -> float:
    """|x_T| / |x_0| for SGD on f(x) = x^T H x / 2 from x_0 = ones (gradient H x)."""
    x = np.ones(hessian.shape[0])
    optimizer = SGD([x], lr=lr, momentum=momentum)
    for _ in range(steps):
        optimizer.step([hessian @ x])
        if not np.all(np.isfinite(x)) or np.linalg.norm(x) > 1e150:
            return np.inf
    return float(np.linalg.norm(x) / np.sqrt(len(x)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), side=st.sampled_from([0.9, 1.1]), momentum=st.sampled_from([0.0, 0.5, 0.9]))
@example(seed=0, side=0.99, momentum=0.0)
@example(seed=0, side=1.01, momentum=0.9)
def test_convergence_threshold_predicts_random_quadratics(seed: int, side: float, momentum: float) -> None:
    """lr = side * 2 (1 + mu) / lambda_max: converges below the threshold, diverges above (gd_quadratic_hessian,
    heavy_ball_region; mu = 0 is plain gradient descent)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    eigenvalues = rng.uniform(0.1, 10.0, 4)
    hessian = q @ np.diag(eigenvalues) @ q.T
    threshold = 2 * (1 + momentum) / eigenvalues.max()
    result = _run_quadratic(hessian, side * threshold, momentum, steps=3000)
    assert (result < 1e-3) if side < 1 else (result > 1e3)


def test_fastest_rate_is_one_over_a() -> None:
    for a in (0.5, 3.0, 40.0):
        x = np.array([2.0])
        SGD([x], lr=1 / a).step([a * x])
        assert abs(x[0]) <= 1e-15


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), b1=st.floats(0.0, 0.95), b2=st.floats(0.95, 0.9999))
@example(seed=21666, b1=1e-07, b2=0.9998829651381855)  # the float64 bound was 2e-12 below lr here
def test_adam_step_never_exceeds_its_bound(seed: int, b1: float, b2: float) -> None:
    rng = np.random.default_rng(seed)
    p = np.zeros(50)
    optimizer = Adam([p], lr=1e-2, betas=(b1, b2), eps=1e-300)
    # the bound evaluated exactly (50 digits) at the very floats the optimizer runs with: in float64 its
    # 1 - beta2 cancels (1e-12 relative at beta2 = 0.99988), below the exact lr bound a t = 1 step meets
    exact = adam_step_bound().xreplace({LR: sp.Float(1e-2, 50), BETA1: sp.Float(b1, 50), BETA2: sp.Float(b2, 50)})

    def bound(t: int) -> float:
        return float(exact.subs(STEP, t).evalf(50))
    for t in range(1, 60):
        before = p.copy()
        optimizer.step([rng.standard_normal(50) * rng.choice([1e-3, 1.0, 1e3], 50)])
        assert np.max(np.abs(p - before)) <= bound(t) * (1 + 1e-12)


def test_adam_constant_gradient_steps_lr() -> None:
    """Bias correction: with a constant gradient every step is lr g / (|g| + eps)."""
    p = np.zeros(3)
    optimizer = Adam([p], lr=0.1, eps=1e-8)
    g = np.array([2.0, -0.5, 1e-4])
    for t in range(1, 20):
        before = p.copy()
        optimizer.step([g])
        assert np.allclose(before - p, 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_adagrad_effective_lr_numerically() -> None:
    p = np.zeros(2)
    optimizer = Adagrad([p], lr=0.5, lr_decay=0.1, initial_accumulator_value=0.3, eps=1e-10)
    total = np.zeros(2)
    for t in range(1, 10):
        g = np.array([1.0, -2.0]) * t
        before = p.copy()
        optimizer.step([g])
        total += g**2
        effective = 0.5 / (1 + (t - 1) * 0.1) / (np.sqrt(0.3 + total) + 1e-10)
        assert np.allclose(before - p, effective * g, rtol=1e-14)


def test_momentum_steady_state_numerically() -> None:
    p = np.zeros(1)
    optimizer = SGD([p], lr=0.1, momentum=0.9)
    for _ in range(600):
        before = p.copy()
        optimizer.step([np.ones(1)])
    assert np.isclose(before[0] - p[0], 0.1 / (1 - 0.9), rtol=1e-12)

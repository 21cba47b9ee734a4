"""Schedulers: torch's values step for step, the catalog's closed forms, state round trips, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from symdl.catalog.schedules import BASE, END, EPOCH, ETA_MIN, GAMMA, SCHEDULES, START, STEP_SIZE, T_MAX, TOTAL
from symdl.errors import OpParameterError
from symdl.optim import SGD, Adam
from symdl.optim import lr_scheduler as sched

CASES = {
    "StepLR": ({"step_size": 3, "gamma": 0.5}, 30),
    "MultiStepLR": ({"milestones": [2, 5, 5, 9], "gamma": 0.3}, 30),
    "ExponentialLR": ({"gamma": 0.9}, 40),
    "CosineAnnealingLR": ({"T_max": 10, "eta_min": 0.01}, 45),
    "LinearLR": ({"start_factor": 0.1, "end_factor": 1.0, "total_iters": 8}, 20),
    "OneCycleLR": ({"max_lr": 1.0, "total_steps": 50}, 50),
    "OneCycleLR-3": ({"max_lr": 1.0, "total_steps": 40, "three_phase": True, "anneal_strategy": "linear"}, 40),
}


def _lrs(module, name: str, kwargs: dict, steps: int, make_optimizer, step_optimizer) -> list[tuple[float, ...]]:
    """The learning rates (and momenta) a schedule gives, stepping the optimizer (without gradients:
    no parameter moves) before the schedule each time, in the order torch asks for."""
    optimizer = make_optimizer()
    scheduler = getattr(module, name.split("-")[0])(optimizer, **kwargs)
    values = []
    for _ in range(steps):
        values.append((*scheduler.get_last_lr(), *[g.get("momentum", g.get("betas", (0,))[0])
                                                    for g in optimizer.param_groups]))
        step_optimizer(optimizer)
        scheduler.step()
    return values


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_step_for_step(name: str) -> None:
    torch = pytest.importorskip("torch")
    kwargs, steps = CASES[name]
    ours = _lrs(sched, name, kwargs, steps, lambda: SGD([np.zeros(2)], lr=0.1, momentum=0.9),
                lambda optimizer: optimizer.step([None]))
    theirs = _lrs(torch.optim.lr_scheduler, name, kwargs, steps,
                  lambda: torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9),
                  lambda optimizer: optimizer.step())
    assert np.allclose(ours, theirs, rtol=1e-15, atol=0), (ours, theirs)


def test_reduce_on_plateau_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    metrics = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.89999, 0.5, 0.6, 0.6, 0.6, 0.7, 0.6, 0.6, 0.6, 0.6]
    for kwargs in ({"patience": 2}, {"patience": 1, "cooldown": 2, "mode": "max", "threshold_mode": "abs"},
                   {"patience": 0, "factor": 0.5, "min_lr": 0.02}):
        ours_opt = Adam([np.zeros(2)], lr=0.1)
        theirs_opt = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
        ours, theirs = sched.ReduceLROnPlateau(ours_opt, **kwargs), torch.optim.lr_scheduler.ReduceLROnPlateau(
            theirs_opt, **kwargs)
        for m in metrics:
            ours.step(m)
            theirs.step(m)
            assert ours.get_last_lr() == theirs.get_last_lr()


def _closed(name: str, values: dict) -> sp.Expr:
    return sp.lambdify(EPOCH, SCHEDULES[name].closed.xreplace(values))


@pytest.mark.parametrize(("name", "kwargs", "values"), [
    ("StepLR", {"step_size": 3, "gamma": 0.5}, {STEP_SIZE: 3, GAMMA: 0.5}),
    ("ExponentialLR", {"gamma": 0.9}, {GAMMA: 0.9}),
    ("CosineAnnealingLR", {"T_max": 10, "eta_min": 0.01}, {T_MAX: 10, ETA_MIN: 0.01}),
    ("LinearLR", {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 8}, {START: 0.1, END: 1.0, TOTAL: 8}),
])
def test_chainable_updates_follow_the_closed_form(name: str, kwargs: dict, values: dict) -> None:
    """The values step() writes equal the catalog's closed form to float64 rounding (the proven fact, numerically)."""
    optimizer = SGD([np.zeros(2)], lr=0.1)
    scheduler = getattr(sched, name)(optimizer, **kwargs)
    closed = _closed(name, {**values, BASE: 0.1})
    for t in range(kwargs.get("T_max", 30)):  # cosine: the closed form describes the first half-period
        assert math.isclose(scheduler.get_last_lr()[0], float(closed(t)), rel_tol=1e-14, abs_tol=1e-17), t
        scheduler.step()


def test_state_dict_round_trip_and_groups() -> None:
    optimizer = SGD([np.zeros(2), np.zeros(3)], lr=0.1)
    scheduler = sched.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.5)
    for _ in range(3):
        scheduler.step()
    saved = scheduler.state_dict()
    other = sched.MultiStepLR(SGD([np.zeros(2)], lr=0.1), milestones=[9])
    other.load_state_dict(saved)
    assert other.last_epoch == 3 and other.milestones == scheduler.milestones
    assert "optimizer" not in saved


@pytest.mark.parametrize(("make", "message"), [
    (lambda o: sched.StepLR(o, step_size=0), "StepLR: step_size must be a positive int"),
    (lambda o: sched.CosineAnnealingLR(o, T_max=0), "CosineAnnealingLR: T_max must be > 0"),
    (lambda o: sched.LinearLR(o, start_factor=0.0), r"LinearLR: start_factor must be in \(0, 1\]"),
    (lambda o: sched.OneCycleLR(o, max_lr=1.0), "OneCycleLR: needs total_steps"),
    (lambda o: sched.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=5), "OneCycleLR: max_lr needs one value per"),
    (lambda o: sched.ReduceLROnPlateau(o, factor=1.0), "ReduceLROnPlateau: factor must be < 1"),
    (lambda o: sched.ReduceLROnPlateau(o, mode="up"), "ReduceLROnPlateau: mode must be 'min' or 'max'"),
])
def test_bad_arguments(make, message: str) -> None:
    with pytest.raises(OpParameterError, match=message):
        make(SGD([np.zeros(2)], lr=0.1, momentum=0.9))


def test_one_cycle_past_the_end_raises() -> None:
    scheduler = sched.OneCycleLR(SGD([np.zeros(2)], lr=0.1, momentum=0.9), max_lr=1.0, total_steps=3)
    for _ in range(3):
        scheduler.step()
    with pytest.raises(OpParameterError, match="OneCycleLR: stepped 4 times; total_steps is 3"):
        scheduler.step()

"""The gradient checker on third-party-style code (tests/gradcheck_corpus/): 0 false alarms and 0 misses in
every mode, against ground truth from mpmath (tests/gradcheck_corpus/truth.py), not from the checker.

Each case is classified from the truth alone: per checked input, the error of each entry beyond what the
gradient's dtype can hold (the distance from the interval of one-sided derivatives, less 4 units of the
dtype at the truth) relative to the largest true entry. A case is *right* when that error is at most 1e-10
(float64) or 1e-5 (float32) for every input, *wrong* when it reaches 1e-7 (float64) or 1e-4 (float32) for
some input (the errors docs/gradcheck.md promises to catch), and *not differentiable* when the function
checked jumps at a point; the corpus has no case between (asserted). A right case must pass, a wrong case
must fail, and a jump must be reported as "not differentiable" and never pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from symdl.check import MODES, gradcheck, gradgradcheck
from tests.conftest import SUMMARY
from tests.gradcheck_corpus import activations as acts
from tests.gradcheck_corpus import layers
from tests.gradcheck_corpus import truth as gt

RIGHT = {np.float64: 1e-10, np.float32: 1e-5}
WRONG = {np.float64: 1e-7, np.float32: 1e-4}

POINTS = {  # float64 values; float32 cases round them
    "typical and extreme": [-500.0, -30.0, -2.3, -0.7, 0.4, 1.9, 30.0, 500.0],
    "at kinks": [-1.0, 0.0, 0.5, 1.5],
    "near kinks": [-3e-6, -1e-6, -3e-7, 3e-7, 1e-6, 0.8, -0.9],
    "-500 alone": [-500.0],
    "+500 alone": [500.0],
}
#: Alone, +-500 is a float32 subject (the truth underflows there): in float64 the derivative there (1e-217) is
#: far below what any difference of f (~1 there, rounded to 1e-16) can resolve, so no checker can judge it.
ALONE = ("-500 alone", "+500 alone")


@dataclass(frozen=True)
class Case:
    """One check: ``run(mode)`` gives the report; ``user()`` the gradient's values to classify against ``truth()``."""

    name: str
    dtype: type
    run: Callable[[str], object]
    user: Callable[[], list[np.ndarray]]
    truth: Callable[[], list[gt.Truth]]


WRONG_FIRST_DERIVATIVE = (acts.SigmoidNaiveGrad, acts.LeakyReLUWrongAtZero, acts.SELUTruncatedAlpha,
                          acts.SELURoundedScale, acts.GELUMixedDensity)


def _activation_cases() -> list[Case]:
    classes = {  # class -> the truth it is measured against (its base's math)
        acts.Sigmoid: "Sigmoid", acts.SigmoidNaiveGrad: "Sigmoid", acts.SigmoidWrongGrad2: "Sigmoid",
        acts.Tanh: "Tanh", acts.TanhWrongGrad2: "Tanh", acts.ReLU: "ReLU", acts.LeakyReLU: "LeakyReLU",
        acts.LeakyReLUWrongAtZero: "LeakyReLU", acts.ELU: "ELU", acts.SELU: "SELU", acts.SELUTruncatedAlpha: "SELU",
        acts.SELURoundedScale: "SELU",
        acts.SoftPlus: "SoftPlus", acts.SoftPlusWrongGrad2: "SoftPlus", acts.GELU: "GELU",
        acts.GELUMixedDensity: "GELU", acts.HardShrink: "HardShrink",
    }
    cases = []
    for cls, base in classes.items():
        act = cls()
        for points_name, points in POINTS.items():
            for dtype in (np.float32,) if points_name in ALONE else (np.float64, np.float32):
                x = np.array(points, dtype)
                # A second-order check differentiates the class's own grad: only where that grad is right is
                # the truth of its second order the base's (the others are first-order cases).
                for order in (1,) if cls in WRONG_FIRST_DERIVATIVE else (1, 2):
                    cases.append(_activation_case(act, base, points_name, x, order))
    return cases


def _activation_case(act: object, base: str, points_name: str, x: np.ndarray, order: int) -> Case:
    def first(mode: str):
        return gradcheck(lambda z: np.sum(act.fn(z), axis=-1), x, lambda z: act.grad(z), mode=mode, kind="grad",
                         names=["x"])

    def second(mode: str):
        return gradgradcheck(lambda z: act.grad(z), lambda v, z: v * act.grad2(z), x, mode=mode, names=["x"])

    def user() -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            return [np.asarray(act.grad(x) if order == 1 else act.grad2(x))]

    name = f"{type(act).__name__} {'grad' if order == 1 else 'grad2'} {points_name} {x.dtype}"
    return Case(name, x.dtype.type, first if order == 1 else second, user,
                functools.cache(lambda: [gt.activation(base, order, x)]))


def _layer_cases() -> list[Case]:
    cases = []
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(5)
        # dyadic values: x @ w + b is exact, so the pre-activations below are exactly what they say
        x = rng.integers(-4, 5, (3, 4)).astype(dtype) / 4
        w = rng.integers(-4, 5, (4, 3)).astype(dtype) / 8
        b = rng.integers(-4, 5, 3).astype(dtype) / 16
        a = x @ w
        b_kink = (-a[0] + np.array([0.0, -2.0**-11, 0.5])).astype(dtype)  # one unit at 0, one just below
        v = rng.standard_normal((3, 3)).astype(dtype)
        shapes = (x.shape, w.shape)
        for forward, backward, loss, bias, tag in (
                (layers.affine_forward, layers.affine_backward, gt.affine_loss, b, "affine"),
                (layers.affine_forward, layers.affine_backward_wrong, gt.affine_loss, b, "affine wrong"),
                (layers.affine_relu_forward, layers.affine_relu_backward, gt.affine_relu_loss, b_kink,
                 "affine-relu at a kink"),
                (layers.affine_relu_forward, layers.affine_relu_backward_wrong, gt.affine_relu_loss, b_kink,
                 "affine-relu wrong mask")):
            cases.append(_cache_case(f"{tag} {np.dtype(dtype)}", forward, backward, (x, w, bias), (),
                                     functools.partial(loss, shapes=shapes), v))
        xb = (rng.standard_normal((4, 3)) * 2 + 1).astype(dtype)
        gamma, beta = rng.uniform(0.5, 1.5, 3).astype(dtype), rng.standard_normal(3).astype(dtype)
        vb = rng.standard_normal((4, 3)).astype(dtype)
        for backward, tag in ((layers.batchnorm_backward, "batchnorm"), (layers.batchnorm_backward_wrong,
                                                                         "batchnorm wrong")):
            cases.append(_cache_case(f"{tag} {np.dtype(dtype)}", layers.batchnorm_forward, backward,
                                     (xb, gamma, beta), ({"mode": "train"},),
                                     functools.partial(gt.batchnorm_loss, shape=xb.shape), vb))
        scores = (rng.standard_normal((4, 5)) * 3).astype(dtype)
        y = rng.integers(0, 5, 4)
        for loss_fn, tag in ((layers.softmax_loss, "softmax loss"), (layers.softmax_loss_wrong, "softmax loss wrong")):
            cases.append(_loss_case(f"{tag} {np.dtype(dtype)}", loss_fn, scores, y))
    return cases


def _cache_case(name: str, forward, backward, inputs, extra, loss_of_v, v) -> Case:
    from symdl.check import check_cache_layer

    def run(mode: str):
        return check_cache_layer(forward, backward, *inputs, extra=extra, mode=mode)

    def user() -> list[np.ndarray]:
        import copy
        _, cache = forward(*inputs, *copy.deepcopy(extra))
        return [np.asarray(g) for g in backward(v, cache)]

    return Case(name, inputs[0].dtype.type, run, user,
                functools.cache(lambda: gt.scalar_gradient(loss_of_v(v), inputs)))


def _loss_case(name: str, loss_fn, scores: np.ndarray, y: np.ndarray) -> Case:
    def run(mode: str):
        return gradcheck(lambda s: loss_fn(s, y)[0], scores, lambda s: loss_fn(s, y)[1], mode=mode, kind="grad")

    return Case(name, scores.dtype.type, run, lambda: [np.asarray(loss_fn(scores, y)[1])],
                functools.cache(lambda: gt.scalar_gradient(gt.softmax_loss(y, scores.shape), [scores])))


CASES = _activation_cases() + _layer_cases()


def classify(case: Case) -> tuple[str, float]:
    """``right``, ``wrong``, ``jump`` or ``between`` from the truth alone (with ``dtype`` in front when the
    gradient's dtype is not its input's: a finding of its own, the values judged too), and the error."""
    truths = case.truth()
    if any(t.jump.any() for t in truths):
        return "jump", float("nan")
    label, error = _values(case, truths)
    mismatch = any(np.asarray(g).dtype != case.dtype for g in case.user())
    return (f"dtype {label}" if mismatch else label), error


def _values(case: Case, truths: list[gt.Truth]) -> tuple[str, float]:
    worst = 0.0
    for values, t in zip(case.user(), truths):
        a = values.astype(np.float64)
        if not np.all(np.isfinite(a)):
            return "wrong", float("inf")
        with np.errstate(all="ignore"):
            distance = np.maximum(np.maximum(t.low - a, a - t.high), 0.0)
            nearest = np.clip(a, t.low, t.high)
            held = 4 * np.spacing(np.abs(nearest).astype(case.dtype)).astype(np.float64)
        error = np.maximum(distance - held, 0.0)
        scale = float(np.max(np.maximum(np.abs(t.low), np.abs(t.high))))
        top = float(np.max(error))
        worst = max(worst, top / scale if scale > 0 else (np.inf if top > 0 else 0.0))
    if worst <= RIGHT[case.dtype]:
        return "right", worst
    return ("wrong" if worst >= WRONG[case.dtype] else "between"), worst


RESULTS: dict[tuple[str, str], tuple[str, bool]] = {}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_corpus(case: Case, mode: str) -> None:
    label, error = classify(case)
    assert label != "between", f"{case.name}: error {error:.3g} lies between rounding and the documented catch"
    with np.errstate(all="ignore"):
        report = case.run(mode)
    RESULTS[(case.name, mode)] = (label, report.passed)
    if label == "right":
        assert report.passed, f"false alarm (error {error:.2g}):\n{report.to_text()}"
    elif label == "wrong":
        assert not report.passed, f"miss (error {error:.2g}):\n{report.to_text()}"
    elif label.startswith("dtype"):  # a finding of its own, and the values judged after casting
        verdict = "its values match" if label == "dtype right" else "do not match either"
        assert not report.passed and verdict in report.to_text(), report.to_text()
    else:
        assert not report.passed and "not differentiable" in report.to_text(), report.to_text()


def test_real_corpus_summary(record_property: Callable[[str, object], None]) -> None:
    """Counts per mode (recorded as a summary, conftest.py); every case of every mode ran and agreed."""
    labels = {case.name: classify(case)[0] for case in CASES}
    for kind in ("right", "wrong", "jump", "dtype right", "dtype wrong"):
        assert kind in labels.values(), kind  # the corpus holds every kind of case
    lines = [f"gradcheck real corpus: {len(CASES)} cases per mode "
             f"({sum(v == 'right' for v in labels.values())} right, {sum(v == 'wrong' for v in labels.values())} "
             f"wrong, {sum(v == 'jump' for v in labels.values())} not differentiable, "
             f"{sum(v.startswith('dtype') for v in labels.values())} with a gradient of another dtype)"]
    for mode in MODES:
        done = {name: RESULTS[(name, m)] for (name, m) in RESULTS if m == mode}
        if len(done) != len(CASES):
            pytest.skip("run with the whole corpus to get the summary")
        alarms = sum(label == "right" and not ok for label, ok in done.values())
        misses = sum(label != "right" and ok for label, ok in done.values())
        lines.append(f"  {mode:10s} false alarms {alarms}, misses {misses}")
        assert alarms == 0 and misses == 0
    record_property(SUMMARY, "\n".join(lines))

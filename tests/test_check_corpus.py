"""The gradient checker against a corpus of deliberately wrong and of correct gradients.

Every mode must flag every wrong gradient and pass every correct one. The
corpus covers the usual bugs (sign, missing factor, transposed weight,
off-by-one index in a convolution, wrong broadcast, reduction over the wrong
axis, float32 precision bugs, a wrong subgradient at a kink) and correct code
that is hard to check (float32, tiny and huge magnitudes, kinks near and at
the sample points, ill-conditioned points). A summary with the detection
and false-alarm counts is printed after the run (conftest.py's summaries) and
asserted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from symdl.check import MODES, gradcheck
from tests.conftest import SUMMARY


@dataclass(frozen=True)
class Case:
    """``f`` at ``inputs``, a gradient and whether it is right."""

    name: str
    f: Callable[..., object]
    inputs: tuple[np.ndarray, ...]
    gradient: Callable[..., object]
    right: bool


RNG = np.random.default_rng(1234)


def _normal(*shape: int, dtype: type = np.float64, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(dtype)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -z))


def _logsumexp(z: np.ndarray, axis: int) -> np.ndarray:
    top = z.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(z - top).sum(axis=axis))


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _tanh_cases() -> list[Case]:
    def f(x): return np.sum(np.tanh(x))
    def right(x): return (1 - np.tanh(x) ** 2).astype(x.dtype)
    def sign(x): return -right(x)
    x64, x32 = _normal(3, 4), _normal(3, 4, dtype=np.float32)
    return [Case("tanh float64", f, (x64,), right, True), Case("tanh float32", f, (x32,), right, True),
            Case("tanh sign flip", f, (x64,), sign, False), Case("tanh sign flip float32", f, (x32,), sign, False)]


def _square_cases() -> list[Case]:
    def f(x): return np.sum(x**2, axis=-1)
    x = _normal(6)
    return [Case("square", f, (x,), lambda x: 2 * x, True),
            Case("square missing factor 2", f, (x,), lambda x: x, False)]


def _dense_cases() -> list[Case]:
    # f(W, x) = sum softplus(W x); grads: W: s x^T, x: W^T s with s = sigmoid(W x). W square: a transpose fits.
    w, x = _normal(5, 5), _normal(5)

    def f(w, x): return np.sum(_softplus(np.einsum("...ij,...j->...i", w, x)), axis=-1)
    def right(w, x): return np.outer(_sigmoid(w @ x), x), w.T @ _sigmoid(w @ x)
    def transposed(w, x): return np.outer(_sigmoid(w @ x), x), w @ _sigmoid(w @ x)
    return [Case("dense layer", f, (w, x), right, True), Case("dense transposed weight", f, (w, x), transposed, False)]


def _conv_cases() -> list[Case]:
    # y = correlate(x, k, 'valid'); dx = convolve(g, k, 'full'), dk = correlate(x, g, 'valid').
    x, k = _normal(9), _normal(3)

    def f(x, k): return np.tanh(np.correlate(x, k, "valid"))

    def right(g, x, k):
        gy = g * (1 - f(x, k) ** 2)
        return np.convolve(gy, k, "full"), np.correlate(x, gy, "valid")

    def off_by_one(g, x, k):
        dx, dk = right(g, x, k)
        return np.roll(dx, 1), dk

    return [Case("conv1d", f, (x, k), right, True), Case("conv1d off-by-one index", f, (x, k), off_by_one, False)]


def _broadcast_cases() -> list[Case]:
    # f(x, b) = sum tanh(x + b), b broadcast over rows: its gradient sums over axis 0.
    x, b = _normal(4, 4), _normal(4)

    def f(x, b): return np.sum(np.tanh(x + b), axis=(-2, -1))
    def right(x, b): return 1 - np.tanh(x + b) ** 2, (1 - np.tanh(x + b) ** 2).sum(axis=0)
    def wrong(x, b): return 1 - np.tanh(x + b) ** 2, (1 - np.tanh(x + b) ** 2).sum(axis=1)
    return [Case("bias broadcast", f, (x, b), right, True), Case("bias summed over the wrong axis", f, (x, b), wrong, False)]


def _reduction_cases() -> list[Case]:
    z = _normal(3, 4)

    def f(z): return np.sum(_logsumexp(z, axis=-1), axis=-1)
    return [Case("logsumexp rows", f, (z,), lambda z: _softmax(z, 1), True),
            Case("logsumexp softmax over the wrong axis", f, (z,), lambda z: _softmax(z, 0), False)]


def _float32_cases() -> list[Case]:
    # Cross-entropy against class 0: the gradient without the max shift overflows exp in float32.
    z = np.array([[100.0, 99.0, -3.0], [2.0, 1.0, 0.5]], dtype=np.float32)

    def f(z): return np.sum(_logsumexp(z, -1) - z[..., 0], axis=-1)

    def onehot(z):
        e = np.zeros_like(z)
        e[:, 0] = 1
        return e

    def right(z): return (_softmax(z, 1) - onehot(z)).astype(z.dtype)

    def naive(z):
        with np.errstate(all="ignore"):
            return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True) - onehot(z)

    # Variance far from 0: 2 x / n - 2 mean / n cancels catastrophically in float32.
    v = (3e6 + _normal(7)).astype(np.float32)

    def var(v): return np.mean((v - v.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    def var_right(v):  # differences from v[0] are exact in float32 (Sterbenz), so no digit is lost
        d = v - v[0]
        return (2 * (d - d.mean()) / v.size).astype(v.dtype)
    def var_cancel(v): return 2 * v / v.size - 2 * v.mean() / v.size
    return [Case("cross-entropy float32", f, (z,), right, True),
            Case("cross-entropy float32 without max shift", f, (z,), naive, False),
            Case("variance float32", var, (v,), var_right, True),
            Case("variance float32 cancelling", var, (v,), var_cancel, False)]


def _magnitude_cases() -> list[Case]:
    tiny, huge = _normal(5, scale=1e-20), _normal(5, scale=1e20)

    def cube(x): return np.sum(x**3, axis=-1)
    def scaled_sin(x): return 1e30 * np.sum(np.sin(x), axis=-1)
    x = _normal(5)
    return [Case("cube at 1e-20", cube, (tiny,), lambda x: 3 * x**2, True),
            Case("cube at 1e20", cube, (huge,), lambda x: 3 * x**2, True),
            Case("cube at 1e-20 off by 1%", cube, (tiny,), lambda x: 3.03 * x**2, False),
            Case("1e30 sin", scaled_sin, (x,), lambda x: 1e30 * np.cos(x), True),
            Case("1e30 sin missing chain factor", lambda x: 1e30 * np.sum(np.sin(3 * x), axis=-1), (x,),
                 lambda x: 1e30 * np.cos(3 * x), False)]


def _kink_cases() -> list[Case]:
    near = np.array([-1.5, -0.3, 1e-7, 0.2, 2.0])  # kinks away from (one close to) the points
    at = np.array([-1.0, 0.0, 2.0])                 # a point exactly at relu's kink

    def relu_sum(x): return np.sum(np.maximum(x, 0), axis=-1)
    def abs_sum(x): return np.sum(np.abs(x), axis=-1)
    def torch_relu(x): return (x > 0).astype(x.dtype)
    def bad_subgradient(x): return np.where(x == 0, 2.0, torch_relu(x))
    return [Case("relu near kinks", relu_sum, (near,), torch_relu, True),
            Case("abs near kinks", abs_sum, (near,), np.sign, True),
            Case("relu at its kink (torch's 0)", relu_sum, (at,), torch_relu, True),
            Case("abs at its kink (sign(0) = 0)", abs_sum, (at,), np.sign, True),
            Case("relu with subgradient 2 at its kink", relu_sum, (at,), bad_subgradient, False),
            Case("abs with the sign flipped", abs_sum, (near,), lambda x: -np.sign(x), False)]


def _ill_conditioned_cases() -> list[Case]:
    x = np.array([1e-12, 0.5, 1.0, 2.0])

    def sqrt_sum(x): return np.sum(np.sqrt(x), axis=-1)
    y = np.array([1 + 1e-6, 3.0])

    def log_sum(y): return np.sum(np.log(y - 1), axis=-1)
    return [Case("sqrt near 0", sqrt_sum, (x,), lambda x: 0.5 / np.sqrt(x), True),
            Case("sqrt near 0, 10% off", sqrt_sum, (x,), lambda x: 0.55 / np.sqrt(x), False),
            Case("log near its pole", log_sum, (y,), lambda y: 1 / (y - 1), True),
            Case("log near its pole, sign flip", log_sum, (y,), lambda y: -1 / (y - 1), False)]


def _one_element_cases() -> list[Case]:
    x = _normal(20)

    def f(x): return np.sum(np.sin(x) * x, axis=-1)
    def right(x): return np.cos(x) * x + np.sin(x)

    def one_off(x):
        g = right(x)
        g[7] *= 1.01
        return g

    return [Case("x sin x", f, (x,), right, True), Case("x sin x, one element 1% off", f, (x,), one_off, False)]


CORPUS = [c for build in (_tanh_cases, _square_cases, _dense_cases, _conv_cases, _broadcast_cases, _reduction_cases,
                          _float32_cases, _magnitude_cases, _kink_cases, _ill_conditioned_cases, _one_element_cases)
          for c in build()]
OUTCOMES: dict[str, dict[str, int]] = {mode: {"detected": 0, "missed": 0, "passed": 0, "false alarms": 0}
                                       for mode in MODES}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus(case: Case, mode: str) -> None:
    report = gradcheck(case.f, case.inputs, case.gradient, mode=mode)
    key = ("passed" if report.passed else "false alarms") if case.right else (
        "missed" if report.passed else "detected")
    OUTCOMES[mode][key] += 1
    assert report.passed == case.right, report.to_text()


def test_corpus_summary(record_property: Callable[[str, object], None]) -> None:
    """Runs last in this module: every mode saw every case, with no miss and no false alarm.
    The counts are recorded as a summary (conftest.py), so they show in every run's output."""
    wrong = sum(not c.right for c in CORPUS)
    lines = [f"gradcheck corpus: {wrong} wrong and {len(CORPUS) - wrong} right gradients per mode"]
    for mode, counts in OUTCOMES.items():
        lines.append(f"  {mode:<10} detected {counts['detected']}/{wrong}, missed {counts['missed']}, "
                     f"passed {counts['passed']}/{len(CORPUS) - wrong}, false alarms {counts['false alarms']}")
    record_property(SUMMARY, "\n".join(lines))
    for mode, counts in OUTCOMES.items():
        if sum(counts.values()) == len(CORPUS):  # the whole corpus ran (not deselected)
            assert counts["missed"] == 0 and counts["false alarms"] == 0, lines

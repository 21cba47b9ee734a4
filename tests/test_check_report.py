"""gradcheck's behaviour beyond right/wrong: reports, kinks, batching, second order, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from symdl.check import GradcheckInputError, gradcheck, gradgradcheck


def tanh_sum(x: np.ndarray) -> np.ndarray:
    return np.sum(np.tanh(x), axis=-1)


def tanh_grad(x: np.ndarray) -> np.ndarray:
    return 1 - np.tanh(x) ** 2


def test_report_names_the_worst_element_and_renders() -> None:
    x = np.linspace(-1.0, 1.0, 6)

    def wrong(x: np.ndarray) -> np.ndarray:
        g = tanh_grad(x)
        g[4] += 0.1
        return g

    report = gradcheck(tanh_sum, x, wrong, names=["x"])
    assert not report.passed and not report
    (row,) = report.inputs
    assert row.worst_index == (4,) and row.max_abs_error == pytest.approx(0.1, rel=1e-6)
    assert row.analytic == pytest.approx(row.numeric + 0.1, rel=1e-6) and row.allowed < 1e-6
    text = report.to_text()
    assert "FAIL" in text and "[4]" in text
    data = json.loads(report.to_json())
    assert data["inputs"][0]["worst_index"] == [4] and data["mode"] == "full" and not data["passed"]


def test_kink_reports_one_sided_derivatives_and_whether_the_gradient_is_between() -> None:
    x = np.array([-1.0, 0.0, 2.0])

    def relu_sum(x: np.ndarray) -> np.ndarray:
        return np.sum(np.maximum(x, 0), axis=-1)

    report = gradcheck(relu_sum, x, lambda x: (x > 0).astype(x.dtype))
    assert report.passed
    (kink,) = report.kinks
    assert kink.index == (1,) and kink.within
    assert kink.left == pytest.approx(0.0, abs=1e-6) and kink.right == pytest.approx(1.0, rel=1e-6)
    outside = gradcheck(relu_sum, x, lambda x: np.where(x == 0, -0.5, x > 0))
    assert not outside.passed and not outside.kinks[0].within
    assert "OUTSIDE" in outside.to_text()


def test_batched_and_looped_evaluation_agree_and_mixing_functions_are_looped() -> None:
    x = np.random.default_rng(0).standard_normal(7)
    batched = gradcheck(tanh_sum, x, tanh_grad)
    looped = gradcheck(lambda x: float(np.sum(np.tanh(x))), x, tanh_grad)  # a float: no batch axis
    assert batched.passed and looped.passed
    assert batched.inputs[0].max_abs_error < 1e-9 and looped.inputs[0].max_abs_error < 1e-9

    def centred(x: np.ndarray) -> np.ndarray:
        return x - x.mean()  # mean over everything: a batch would mix its rows

    report = gradcheck(centred, x, lambda v, x: v - v.mean())
    assert report.passed and report.inputs[0].max_abs_error < 1e-9


def test_float32_gradient_must_stay_float32_and_shapes_must_match() -> None:
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    assert gradcheck(tanh_sum, x, tanh_grad).passed
    widened = gradcheck(tanh_sum, x, lambda x: tanh_grad(x.astype(np.float64)))
    assert not widened.passed and "dtype float64" in widened.inputs[0].detail
    w, v = np.ones((2, 3)), np.ones(3)
    transposed = gradcheck(lambda w, v: np.sum(w @ v), (w, v), lambda w, v: (np.ones((3, 2)), np.full(3, 2.0)))
    assert not transposed.passed and "shape (3, 2)" in transposed.inputs[0].detail
    assert transposed.inputs[1].passed


def test_gradient_function_forms_and_wrt() -> None:
    x, y = np.linspace(0.5, 1.5, 3), np.array([2.0, 3.0, 4.0])

    def f(x, y):
        return np.sum(x * y, axis=-1)

    assert gradcheck(f, (x, y), lambda x, y: (y, x)).passed                # a plain gradient
    assert gradcheck(f, (x, y), lambda g, x, y: (g * y, g * x)).passed     # a VJP
    only_x = gradcheck(f, (x, y), lambda g, x, y: (g * y, None), wrt=[0])  # None where unchecked
    assert only_x.passed and [r.input for r in only_x.inputs] == [0]
    missing = gradcheck(f, (x, y), lambda g, x, y: (g * y, None))
    assert not missing.passed and "no gradient" in missing.inputs[1].detail


def test_second_order_checks_a_hessian_vector_product() -> None:
    x, w = np.linspace(-1, 1, 4), np.linspace(0.5, 2, 4)

    def grad(x, w):
        s = 1 - np.tanh(x * w) ** 2
        return s * w, s * x

    def hvp(v, x, w):
        vx, vw = v
        t = np.tanh(x * w)
        s, dz = 1 - t**2, vx * w + x * vw
        return -2 * t * s * dz * w + s * vw, -2 * t * s * dz * x + s * vx

    assert gradgradcheck(grad, hvp, (x, w)).passed
    assert not gradgradcheck(grad, lambda v, x, w: (hvp(v, x, w)[0], 1.1 * hvp(v, x, w)[1]), (x, w)).passed


@pytest.mark.parametrize(("call", "rule"), [
    (lambda: gradcheck(tanh_sum, np.ones(3)), "give the gradient"),
    (lambda: gradcheck(tanh_sum, np.ones(3), tanh_grad, mode="sideways"), "unknown mode"),
    (lambda: gradcheck(tanh_sum, np.array([1.0, np.nan]), tanh_grad), "non-finite"),
    (lambda: gradcheck(lambda x: np.log(x).sum(), -np.ones(2), lambda x: 1 / x), "not finite"),
    (lambda: gradcheck(tanh_sum, np.arange(3), tanh_grad), "no real floating input"),
    (lambda: gradcheck(tanh_sum, np.ones(3), lambda a, b, c: a), "must take"),
    (lambda: gradcheck(tanh_sum, np.ones(3), lambda x: np.multiply(x, 2, out=x)), "modified in place"),
    (lambda: gradcheck(np.tanh, np.ones(10_000), lambda v, x: v * (1 - np.tanh(x) ** 2)), "use mode='fast'"),
])
def test_bad_input_raises_a_typed_error_naming_the_rule(call, rule: str) -> None:
    with pytest.raises(GradcheckInputError, match=rule), np.errstate(invalid="ignore"):
        call()

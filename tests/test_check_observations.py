"""The nine observations of issue 20 and the false PASS of issue 23 (point 1), each on small examples of
its own: every test here failed before the fix it names (docs/gradcheck.md lists them).

Ground truth is written out from calculus (the derivative of a sigmoid is s(1 - s), ...), never taken
from the checker.
"""

from __future__ import annotations

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.check import GradcheckInputError, gradcheck, gradgradcheck

MODES = ("full", "fast", "complex", "richardson")
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0, -x))


def sigmoid_grad(x: np.ndarray) -> np.ndarray:
    s = sigmoid(x)
    return (s * (1 - s)).astype(x.dtype)


def total(f):
    return lambda x: np.sum(f(x), axis=-1)


# ---------------------------------------------------------------- 1. underflow to 0 in float32
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("points", [[-500.0], [500.0], [-500.0, 500.0, 0.3, -104.0]])
def test_float32_gradient_that_underflows_to_zero_or_a_subnormal_passes(points: list[float], mode: str) -> None:
    # sigmoid'(-500) = 7e-218: float32 holds 0; sigmoid'(-104) = 6.8e-46 is float32's smallest subnormal region.
    x = np.array(points, np.float32)
    report = gradcheck(total(sigmoid), x, sigmoid_grad, mode=mode)
    assert report.passed, report.to_text()


@pytest.mark.parametrize("mode", MODES)
def test_symdl_sigmoid_vjp_passes_its_own_checker_at_500_in_float32(mode: str) -> None:
    x = np.array([-500.0, 500.0], np.float32)
    assert gradcheck(kernels.sigmoid, x, kernels.sigmoid_vjp, mode=mode).passed


@pytest.mark.parametrize("mode", MODES)
def test_elu_second_derivative_at_minus_500_in_float32_passes_and_a_wrong_one_fails(mode: str) -> None:
    alpha = 1.0
    x = np.array([-500.0], np.float32)

    def grad(x):
        return np.where(x > 0, 1.0, alpha * np.exp(x)).astype(x.dtype)

    def hvp(v, x):
        return (v * np.where(x > 0, 0.0, alpha * np.exp(x))).astype(x.dtype)

    assert gradgradcheck(grad, hvp, x, mode=mode).passed
    # A value float32 can hold but that is not the truth (7e-218 rounds to 0) fails: the floor is the
    # subnormal spacing, not the truth's size.
    assert not gradgradcheck(grad, lambda v, x: (v * 0 + np.float32(1e-40)).astype(x.dtype), x, mode=mode).passed


# ---------------------------------------------------------------- 2. a kink next to the point
def selu(x):
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def selu_grad(x):
    return (SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0)))).astype(x.dtype)


def elu_half(x):
    return np.where(x > 0, x, 0.5 * (np.exp(np.minimum(x, 0)) - 1))  # exp(x) - 1, as course code writes it


def elu_half_grad(x):
    return np.where(x > 0, 1.0, 0.5 * np.exp(np.minimum(x, 0))).astype(x.dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("point", [-3e-6, -1e-6, -3e-7, 3e-7, 1e-6])
@pytest.mark.parametrize(("f", "grad"), [(selu, selu_grad), (elu_half, elu_half_grad)], ids=["selu", "elu"])
def test_correct_gradient_next_to_a_kink_passes(f, grad, point: float, dtype: type, mode: str) -> None:
    for x in (np.array([point], dtype), np.array([point, 0.5, -1.5, 2.0], dtype)):
        report = gradcheck(total(f), x, grad, mode=mode)
        assert report.passed, report.to_text()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", [-3e-6, -3e-7])
def test_the_other_sides_derivative_next_to_a_kink_fails(point: float, mode: str) -> None:
    # At x < 0 the derivative is 0.5 exp(x) ~ 0.5: the right-hand branch's 1 is wrong there.
    x = np.array([point])
    report = gradcheck(total(elu_half), x, lambda x: np.ones_like(x), mode=mode)
    assert not report.passed


# ---------------------------------------------------------------- 3. a quantised numeric side
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("points", [[30.0], [-30.0], [30.0, -30.0]])
def test_sigmoid_second_derivative_at_30_passes_where_the_differences_are_quantised(points: list[float],
                                                                                    mode: str) -> None:
    # sigmoid'' = s (1 - s)(1 - 2 s) ~ -9.4e-14 at 30; s (1 - s) moves in steps of eps there, so every
    # difference at the usual step is exactly 0.
    x = np.array(points)

    def hvp(v, x):
        s = sigmoid(x)
        return v * s * (1 - s) * (1 - 2 * s)

    report = gradgradcheck(sigmoid_grad, hvp, x, mode=mode)
    assert report.passed, report.to_text()


# ---------------------------------------------------------------- 4. a miss in float32
TANH_C = np.sqrt(2 / np.pi)


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(TANH_C * (x + 0.044715 * x**3)))


def gelu_tanh_grad(x):
    t = np.tanh(TANH_C * (x + 0.044715 * x**3))
    return (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * TANH_C * (1 + 3 * 0.044715 * x * x)).astype(x.dtype)


def gelu_tanh_grad_mixed(x):
    # The bug: the tanh form's first term with the exact GELU's density term x phi(x).
    t = np.tanh(TANH_C * (x + 0.044715 * x**3))
    return (0.5 * (1 + t) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)).astype(x.dtype)


def test_float32_gradient_off_by_2e_4_is_caught_when_f_runs_in_float64() -> None:
    x = np.array([-1.0, -0.5, 0.5, 1.0], np.float32)
    truth, wrong = gelu_tanh_grad(x.astype(np.float64)), gelu_tanh_grad_mixed(x.astype(np.float64))
    error = np.max(np.abs(wrong - truth)) / np.max(np.abs(truth))
    assert 1e-4 < error < 3.5e-4  # inside the old float32 tolerance, sqrt(eps) = 3.5e-4
    for mode in MODES:
        assert gradcheck(total(gelu_tanh), x, gelu_tanh_grad, mode=mode).passed
        assert not gradcheck(total(gelu_tanh), x, gelu_tanh_grad_mixed, mode=mode).passed, mode


@pytest.mark.parametrize("seed", range(12))
def test_fast_mode_catches_the_mixed_gelu_derivative_on_typical_inputs(seed: int) -> None:
    # Observation 4 in fast mode, on inputs drawn as a layer's are: with the entrywise tolerance summed along a
    # random direction as a worst case (sum_j |u_j| t_j, which grows like n), 3 of these 12 draws passed.
    x = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    truth, wrong = gelu_tanh_grad(x.astype(np.float64)), gelu_tanh_grad_mixed(x.astype(np.float64))
    assert np.max(np.abs(wrong - truth)) / np.max(np.abs(truth)) > 1e-4  # an error the checker promises to catch
    assert gradcheck(total(gelu_tanh), x, gelu_tanh_grad, mode="fast").passed
    report = gradcheck(total(gelu_tanh), x, gelu_tanh_grad_mixed, mode="fast")
    assert not report.passed, report.to_text()


# ---------------------------------------------------------------- 5. jumps
def hardshrink(x, lambd=0.5):
    return np.where(np.abs(x) > lambd, x, 0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [0.0, 1.0, 1000.0, -1e4])
def test_any_gradient_where_f_jumps_is_reported_not_differentiable(value: float, mode: str) -> None:
    x = np.array([0.5, 1.0, -2.0])

    def grad(x):
        return np.where(x == 0.5, value, (np.abs(x) > 0.5).astype(x.dtype))

    report = gradcheck(total(hardshrink), x, grad, mode=mode, names=["x"])
    assert not report.passed
    assert "not differentiable at x[0]: f jumps by 0.5" in report.to_text()


@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
@pytest.mark.parametrize("mode", MODES)
def test_a_wrong_gradient_next_to_a_jump_is_still_caught(scale: float, mode: str) -> None:
    # x[0] = 0.49 lies 0.01 from hardshrink's jump; with large neighbours the coarse steps of the sweep reach
    # across it: the jump must not be taken for rounding noise.
    x = np.array([0.49, 0.2 * scale, -0.3 * scale, scale])

    def grad(value: float):
        return lambda x: np.where(x == 0.49, value, (np.abs(x) > 0.5).astype(x.dtype))

    assert gradcheck(total(hardshrink), x, grad(0.0), mode=mode).passed
    assert not gradcheck(total(hardshrink), x, grad(1.0), mode=mode).passed


@pytest.mark.parametrize("mode", MODES)
def test_second_order_check_at_the_jump_of_leaky_relus_gradient(mode: str) -> None:
    x = np.array([0.0, 1.5])

    def grad(x):
        return np.where(x > 0, 1.0, 0.01)

    for value in (0.0, 1.0, 1000.0):
        report = gradgradcheck(grad, lambda v, x: v * np.where(x == 0, value, 0.0), x, names=["x"], mode=mode)
        assert not report.passed and "not differentiable at x[0]" in report.inputs[0].detail


# ---------------------------------------------------------------- 6. dtype and values
@pytest.mark.parametrize("mode", MODES)
def test_dtype_mismatch_is_its_own_finding_and_the_values_are_still_checked(mode: str) -> None:
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    wide = gradcheck(total(np.tanh), x, lambda x: 1 - np.tanh(x.astype(np.float64)) ** 2, mode=mode)
    (row,) = wide.inputs
    assert not wide.passed and "dtype float64" in row.detail and "its values match" in row.detail
    assert row.max_abs_error < 1e-6  # compared after casting to float32
    wrong = gradcheck(total(np.tanh), x, lambda x: 2 * (1 - np.tanh(x.astype(np.float64)) ** 2), mode=mode)
    assert "do not match either" in wrong.inputs[0].detail


@pytest.mark.parametrize("mode", MODES)
def test_integer_gradient_is_flagged_and_checked_as_values(mode: str) -> None:
    x = np.array([-1.0, 2.0, 3.0])
    report = gradcheck(total(lambda x: np.maximum(x, 0)), x, lambda x: (x > 0).astype(np.int64), mode=mode)
    detail = report.inputs[0].detail
    assert not report.passed and "dtype int64" in detail and "its values match" in detail
    # A second-order check through an integer first derivative: its values (a 0/1 mask) are checked.
    second = gradgradcheck(lambda x: (x > 0).astype(np.int64), lambda v, x: np.zeros_like(v), x, mode=mode)
    assert second.passed and any("int64" in note for note in second.notes)
    # and its values are checked: a wrong second derivative through the mask fails
    assert not gradgradcheck(lambda x: (x > 0).astype(np.int64), lambda v, x: v * 1.0, x, mode=mode).passed


@pytest.mark.parametrize("mode", MODES)
def test_second_order_v_takes_the_inputs_dtype(mode: str) -> None:
    # The first derivative comes back in float64 for a float32 input; the HVP is right and stays in v's dtype.
    x = np.linspace(-1, 1, 5, dtype=np.float32)

    def grad(x):
        return 1 - np.tanh(x.astype(np.float64)) ** 2

    def hvp(v, x):
        assert v.dtype == np.float32  # the input's dtype, not the gradient's float64
        t = np.tanh(x)
        return v * (-2 * t * (1 - t * t))

    report = gradgradcheck(grad, hvp, x, mode=mode)
    assert report.passed, report.to_text()


# ---------------------------------------------------------------- 7. non-finite values first
@pytest.mark.parametrize("mode", MODES)
def test_nan_in_the_gradient_is_reported_directly_with_its_entries(mode: str) -> None:
    x = np.linspace(-1, 1, 4)
    report = gradcheck(total(np.tanh), x, lambda x: np.where(np.arange(4) == 2, np.nan, 1 - np.tanh(x) ** 2),
                       names=["x"], mode=mode)
    assert not report.passed and "x[2] = nan" in report.inputs[0].detail
    assert report.evaluations == 0  # no difference was taken


@pytest.mark.parametrize("mode", MODES)
def test_float32_forward_that_overflows_is_reported_even_where_float64_is_finite(mode: str) -> None:
    x = np.array([50.0, 1.0], np.float32)
    with pytest.raises(GradcheckInputError, match=r"not finite .* in float32: out = inf .*finite in float64"), \
            np.errstate(over="ignore"):
        gradcheck(lambda x: np.sum(np.exp(2 * x)), x, lambda x: 2 * np.exp(2 * x), mode=mode)


# ---------------------------------------------------------------- 8. names and scalars in reports
def test_a_scalar_input_prints_as_a_scalar_and_details_use_the_tables_names() -> None:
    report = gradcheck(lambda x, w: x * w, (np.array(2.0), np.array(3.0)), lambda x, w: (w, None), names=["x", "w"])
    text = report.to_text()
    assert "[]" not in text and "(scalar)" in text
    assert "no gradient returned for w" in report.inputs[1].detail
    kink = gradcheck(lambda x: np.maximum(x, 0), np.array(0.0), lambda x: np.array(0.0), names=["x"]).to_text()
    assert "kink at x:" in kink and "input 0" not in kink


# ---------------------------------------------------------------- issue 23, point 1: a target that changes its input
def test_a_target_that_modifies_its_input_is_caught_even_with_a_zero_gradient() -> None:
    def f(x):
        x += 1.0
        return np.sum(x)

    caller = np.ones((3, 4))
    with pytest.raises(GradcheckInputError, match="modified in place by f"):
        gradcheck(f, caller, lambda x: np.zeros_like(x))
    assert np.array_equal(caller, np.ones((3, 4)))  # the caller's array is never handed to f


def test_a_target_that_modifies_its_batch_of_perturbed_inputs_is_caught() -> None:
    calls = []

    def f(x):
        calls.append(x.ndim)
        if x.ndim == 2:  # only the batched evaluation changes its argument
            x *= 1.0001
        return np.sum(np.sin(x), axis=-1)

    with pytest.raises(GradcheckInputError, match="modified in place by f"):
        gradcheck(f, np.linspace(0, 1, 5), lambda x: np.cos(x))
    assert 2 in calls

"""``name_vjp(grad, x, *, result=y)``: the gradient from the saved forward output.

For every op whose catalog entry has an output form (:class:`symdl.catalog.spec.OutputForm`):
the VJP given ``result`` agrees with the mpmath reference of the definition within the bound the
entry states (units in the last place of ``max(|true|, |scale|)``), in float32 and float64, on
domain samples and at the extremes, at the default parameters and at drawn ones; it agrees with
the VJP from the input; it keeps the input's dtype; and a ``result`` of the wrong shape or dtype
is refused with a typed error naming the op and the argument.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.errors import OpInputError, OpTypeError
from symdl.sampling import draw_inputs, draw_params
from symdl.verify.ops import output_form_ulp
from symdl.verify.reference import ulp_error

WITH_RESULT = [name for name, op in ACTIVATIONS_AND_LOSSES.items() if any(f.from_output for f in op.formulas.values())]
DTYPES = (np.float32, np.float64)


def test_the_ops_the_issue_names_have_an_output_form() -> None:
    expected = {"sigmoid", "tanh", "softmax", "log_softmax", "softmin", "logsigmoid", "softplus", "elu", "selu",
                "celu", "relu", "relu6", "hardtanh"}
    assert expected <= set(WITH_RESULT)


@pytest.mark.parametrize("name", WITH_RESULT)
def test_vjp_signature_has_result_keyword(name: str) -> None:
    parameter = inspect.signature(getattr(kernels, f"{name}_vjp")).parameters["result"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("drawn", [False, True], ids=["defaults", "drawn_params"])
@pytest.mark.parametrize("name", WITH_RESULT)
def test_result_vjp_within_stated_bound_of_mpmath(name: str, drawn: bool, dtype: type) -> None:
    op = ACTIVATIONS_AND_LOSSES[name]
    bound = op.formula().from_output.grad_ulp
    error = output_form_ulp(op, "", dtype, seed=3, params=None if drawn else {})
    assert error <= bound, f"{name} {np.dtype(dtype).name}: {error} ulp > {bound}"


def _inputs_with_extremes(name: str, dtype: type, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    op = ACTIVATIONS_AND_LOSSES[name]
    params = draw_params(op, rng)
    if op.kind == "row":
        x = draw_inputs(op, rng, (6, 5), dtype)[0]
        extremes = [e for e in op.inputs[0].domain.extremes if np.isfinite(dtype(e))]
        x = np.concatenate([x, np.array([[e, 0.0, -e, 1.0, 2.0] for e in extremes], dtype=dtype)])
    else:
        x = draw_inputs(op, rng, (64,), dtype)[0]
        extremes = [e for e in op.inputs[0].domain.extremes if np.isfinite(dtype(e))]
        x = np.concatenate([x, np.array(extremes, dtype=dtype), np.zeros(1, dtype)])
    return params, x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", WITH_RESULT)
def test_with_and_without_result_agree(name: str, dtype: type) -> None:
    """The two paths agree within the sum of their bounds, at the extremes too, and keep the dtype."""
    op = ACTIVATIONS_AND_LOSSES[name]
    rng = np.random.default_rng(7)
    params, x = _inputs_with_extremes(name, dtype, rng)
    forward, vjp = getattr(kernels, name), getattr(kernels, f"{name}_vjp")
    y = forward(x, **params)
    g = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        (from_input,) = vjp(g, x, **params)
        (from_output,) = vjp(g, x, result=y, **params)
    assert from_output.dtype == x.dtype and from_output.shape == x.shape
    assert np.all(np.isfinite(from_output))
    form = op.formula().from_output
    bound = form.grad_ulp + op.tolerance_for().grad_ulp
    # Units in the last place of the largest gradient: output forms that cancel (1 - y^2 near |y| = 1)
    # promise absolute, not relative, accuracy (checked relative to mpmath in the test above).
    error = ulp_error(from_output, from_input.astype(np.float64), np.full(x.shape, np.max(np.abs(from_input))))
    assert error <= bound, f"{name}: result path differs from the input path by {error} ulp"


@pytest.mark.parametrize("name", WITH_RESULT)
def test_wrong_result_shape_is_refused(name: str) -> None:
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    y = getattr(kernels, name)(x)
    with pytest.raises(OpInputError, match=rf"^{name}: result has shape \(4, 3\), expected the input's shape"):
        getattr(kernels, f"{name}_vjp")(np.ones_like(x), x, result=y.reshape(4, 3))


@pytest.mark.parametrize("name", WITH_RESULT)
def test_wrong_result_dtype_is_refused(name: str) -> None:
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    y = getattr(kernels, name)(x)
    vjp = getattr(kernels, f"{name}_vjp")
    with pytest.raises(OpTypeError, match=rf"^{name}: result must be the forward's output.*float32, got float64"):
        vjp(np.ones_like(x), x, result=y.astype(np.float64))
    with pytest.raises(OpTypeError, match=rf"^{name}: result must be .* got list"):
        vjp(np.ones_like(x), x, result=y.tolist())


def test_sigmoid_result_loses_the_right_tail_as_documented() -> None:
    """The docstring's accuracy line is true: y (1 - y) is 0 once sigmoid(x) rounds to 1 (x > 17 in
    float32), where the gradient from the input is still e^-x."""
    x = np.array([18.0], np.float32)
    y = kernels.sigmoid(x)
    assert y[0] == 1.0
    assert kernels.sigmoid_vjp(np.ones_like(x), x, result=y)[0][0] == 0.0
    assert kernels.sigmoid_vjp(np.ones_like(x), x)[0][0] == pytest.approx(np.exp(-18.0), rel=1e-6)
    assert "x > 17 in float32" in " ".join(kernels.sigmoid_vjp.__doc__.split())


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softmax", "elu", "gelu"])
def test_nn_layer_keeps_the_output_in_training_only(name: str) -> None:
    """symdl.nn passes the saved output on in training (the gradient from ``result``) and keeps
    nothing in eval mode; both backward passes match the kernels called directly."""
    from symdl import nn

    layer = nn.ACTIVATIONS[name]()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((4, 6)).astype(np.float32)
    y = layer(x)
    assert layer.output is y
    vjp = getattr(kernels, f"{name}_vjp")
    np.testing.assert_array_equal(layer.backward(g), vjp(g, x, result=y)[0])
    layer.training = False
    layer(x)
    assert layer.output is None
    np.testing.assert_array_equal(layer.backward(g), vjp(g, x)[0])


def _gelu_slope(v: float) -> tuple[float, float]:
    """mpmath: GELU's derivative Phi(v) + v phi(v), and the size its error is measured against,
    (Phi(v) + |v| phi(v)) (1 + v^2) (the catalog's grad_scale)."""
    import mpmath

    with mpmath.workdps(50):
        t = mpmath.mpf(v)
        cdf, pdf = mpmath.ncdf(t), mpmath.npdf(t)
        return float(cdf + t * pdf), float((cdf + abs(t) * pdf) * (1 + t * t))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gelu_result_at_zero_tiny_and_far_left_tail(dtype: type) -> None:
    """gelu's output form (y + x^2 phi) / x where y = x Phi(x) loses bits (x = 0: 0/0; subnormal x and
    y; the left tail where y is subnormal or 0) stays within its bound of mpmath, as the input path does,
    with no floating-point warning."""
    info = np.finfo(dtype)
    eps8 = float(info.eps) / 8
    x = np.array([0.0, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.tiny, -info.tiny, 3 * info.tiny,
                  1e-30, -1e-30, 0.99 * eps8, -0.99 * eps8, 1.01 * eps8, -1.01 * eps8, 4 * eps8, 1e-5, -1e-5,
                  -0.7518, -5.0, -12.0, -13.1, -13.2, -13.3, -13.5, -14.0, -20.0, -37.4, -37.6, -38.5, -39.9,
                  -40.0, -45.0, 40.0, 1e30, -1e30], dtype)
    y = kernels.gelu(x)
    g = np.ones_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        (from_output,) = kernels.gelu_vjp(g, x, result=y)
        (from_input,) = kernels.gelu_vjp(g, x)
    exact, scale = np.array([_gelu_slope(float(v)) for v in x]).T
    size = np.maximum(np.abs(exact), np.minimum(scale, float(info.max)))
    bound = ACTIVATIONS_AND_LOSSES["gelu"].formula("none").from_output.grad_ulp
    assert ulp_error(from_output, exact, size) <= bound
    assert ulp_error(from_input, exact, size) <= bound
    assert np.all(from_output[:6] == 0.5)  # zero and subnormal x: Phi(0) = 1/2, not 0/0 or the subnormal grid


def test_gelu_result_ignores_a_nan_elsewhere() -> None:
    """A NaN input gives a NaN gradient there and hides no zero elsewhere (the guard's reduction skips NaN)."""
    x = np.array([np.nan, 0.0, 1.0, -0.0], np.float32)
    (from_output,) = kernels.gelu_vjp(np.ones_like(x), x, result=kernels.gelu(x))
    assert np.isnan(from_output[0])
    assert from_output[1] == 0.5 and from_output[3] == 0.5
    assert from_output[2] == pytest.approx(_gelu_slope(1.0)[0], rel=1e-6)


def test_gelu_tanh_accepts_result_and_recomputes() -> None:
    """Only approximate='none' has an output form: 'tanh' validates result and gives its usual gradient, bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000).astype(np.float32) * 3
    g = rng.standard_normal(1000).astype(np.float32)
    y = kernels.gelu(x, approximate="tanh")
    np.testing.assert_array_equal(kernels.gelu_vjp(g, x, approximate="tanh", result=y)[0],
                                  kernels.gelu_vjp(g, x, approximate="tanh")[0])
    with pytest.raises(OpInputError, match=r"^gelu: result has shape"):
        kernels.gelu_vjp(g, x, approximate="tanh", result=y[:10])
    doc = " ".join(kernels.gelu_vjp.__doc__.split())
    assert "only with ``approximate='none'``" in doc and "``'tanh'`` recomputes the forward" in doc


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_quotient_at_zero_divides_except_below_an_eighth_of_epsilon(dtype: type) -> None:
    """The runtime primitive: n / x bit for bit, limit + slope * x exactly where |x| < eps/8 (only there),
    into ``out`` (which may be n), on strided 2-D input and on an empty one."""
    from symdl.kernels import _runtime

    rng = np.random.default_rng(9)
    eps8 = float(np.finfo(dtype).eps) / 8
    x = rng.standard_normal((7, 40)).astype(dtype)[:, ::2]  # strided
    x[0, :6] = [0.0, -0.0, 0.5 * eps8, -0.999 * eps8, eps8, -1.5 * eps8]
    n = rng.standard_normal(x.shape).astype(dtype)
    near = np.abs(x) < eps8
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(near, 0.25 + 3.0 * x, n / x)
    np.testing.assert_array_equal(_runtime.quotient_at_zero(n, x, 0.25, 3.0), expected)
    assert near.sum() == 4 and expected[0, 2] != 0.25  # the slope term is applied (0.25 + 3 eps/16 is not 0.25)
    aliased = n.copy()
    assert _runtime.quotient_at_zero(aliased, x, 0.25, 3.0, out=aliased) is aliased
    np.testing.assert_array_equal(aliased, expected)
    empty = np.zeros((0, 3), dtype)
    assert _runtime.quotient_at_zero(empty, empty, 0.25, 3.0).shape == (0, 3)
    assert _runtime.quotient_at_zero(n, x, 0.25, 3.0).dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_quotient_at_zero_finds_a_tiny_x_of_either_sign(dtype: type) -> None:
    """The guard's smallest |x| (two integer minima over the bits, no abs pass) sees a tiny x whose sign differs
    from every other element's, skips NaN, and makes no mask when nothing is that small."""
    from symdl.kernels import _runtime

    eps8 = float(np.finfo(dtype).eps) / 8
    n = np.array([0.75, 0.75, 0.75, 0.0, 0.75, 0.75], dtype)  # 0 over the tiny x: no overflow in the division
    for tiny in (0.5 * eps8, -0.5 * eps8, float(np.finfo(dtype).smallest_subnormal), -0.0):
        others = 3.0 if np.signbit(tiny) else -3.0  # every other element of the opposite sign
        x = np.array([others, np.nan, others * 2, tiny, others * 7, np.inf], dtype)
        got = _runtime.quotient_at_zero(n, x, 0.25, 3.0)
        assert got[3] == dtype(0.25 + 3.0 * tiny) and np.isnan(got[1])  # not 0 / tiny = 0 (or 0 / 0)
        np.testing.assert_array_equal(got[[0, 2, 4, 5]], n[[0, 2, 4, 5]] / x[[0, 2, 4, 5]])
        assert _runtime._min_abs(x) == abs(tiny)
    assert _runtime._min_abs(np.array([np.nan, -np.inf], dtype)) == np.inf
    assert np.isnan(_runtime._min_abs(np.array([np.nan], dtype))) and _runtime._min_abs(np.zeros(0, dtype)) == np.inf


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gelu_gradient_where_it_is_subnormal_as_documented(dtype: type) -> None:
    """Where GELU's gradient is subnormal (float32: x < -13.34, float64: x < -37.71) both paths compute it
    through subnormal intermediates: within the stated bound in symdl's units (a subnormal result in units of
    the smallest normal number), and, as the docstring says, within 4e-6 (float32) and 7e-4 (float64) of that
    unit: about 31 units of the smallest subnormal number in float32 (PyTorch's float32 kernel is off by up to
    the smallest normal number there)."""
    info = np.finfo(dtype)
    x = np.linspace(-14.6, -13.3, 1301) if dtype == np.float32 else np.linspace(-38.7, -37.7, 1001)
    x = x.astype(dtype)
    exact, scale = np.array([_gelu_slope(float(v)) for v in x]).T
    subnormal = np.abs(exact) < float(info.tiny)
    assert np.all(subnormal[x < (-13.35 if dtype == np.float32 else -37.72)])
    g = np.ones_like(x)
    bound = ACTIVATIONS_AND_LOSSES["gelu"].formula("none").from_output.grad_ulp
    size = np.maximum(np.abs(exact), np.minimum(scale, float(info.max)))
    documented = {np.float32: 4e-6, np.float64: 7e-4}[dtype]
    for (computed,) in (kernels.gelu_vjp(g, x, result=kernels.gelu(x)), kernels.gelu_vjp(g, x)):
        assert ulp_error(computed, exact, size) <= bound
        error = np.abs(computed.astype(np.float64) - exact.astype(dtype).astype(np.float64))[subnormal]
        assert np.max(error) <= documented * float(info.tiny)
    note = " ".join(kernels.gelu.__doc__.split())
    assert "float32: x < -13.34; float64: x < -37.71" in note and "below 4e-6 (float32) and 7e-4 (float64)" in note

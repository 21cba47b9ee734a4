"""symdl.testing.assert_grad_close and the public hypothesis strategies, as a user would use them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from symdl.catalog.spec import Domain
from symdl.kernels import gelu, gelu_vjp, relu, relu_vjp
from symdl.strategies import off_kinks, shapes, well_conditioned_arrays
from symdl.testing import assert_grad_close


def test_passes_quietly_and_returns_the_report() -> None:
    x = np.linspace(-2.0, 2.0, 5)
    report = assert_grad_close(lambda x: np.sum(np.tanh(x)), lambda x: 1 - np.tanh(x) ** 2, x)
    assert report.passed and report.inputs[0].entries == 5


def test_failure_message_says_where_and_by_how_much() -> None:
    x, w = np.ones((2, 3)), np.eye(3)

    def f(x, w):
        return np.sum(np.tanh(x @ w))

    def wrong(x, w):
        g = 1 - np.tanh(x @ w) ** 2
        return g @ w.T, (x.T @ g) * 2  # the weight's gradient is twice too large

    with pytest.raises(AssertionError) as caught:
        assert_grad_close(f, wrong, x, w, names=["x", "w"])
    message = str(caught.value)
    assert message.startswith("gradient of w is wrong at w[")
    assert "analytic" in message and "numeric" in message and "off by" in message and "allowed" in message
    assert "gradient of x" not in message.splitlines()[0]


@settings(max_examples=15)
@given(well_conditioned_arrays(Domain(-6.0, 6.0), shape=shapes(max_dims=2), kinks=(0.0,)),
       st.sampled_from([np.float32, np.float64]))
@example(np.array([-1e-3, 1e-3, 6.0]), np.float64)
def test_catalog_relu_and_gelu_on_drawn_arrays(x: np.ndarray, dtype: type) -> None:
    x = off_kinks(x.astype(dtype), (0.0,), 1e-3)
    assert_grad_close(relu, lambda g, x: relu_vjp(g, x), x)
    assert_grad_close(lambda x: gelu(x, approximate="tanh"), lambda g, x: gelu_vjp(g, x, approximate="tanh"), x)


@settings(max_examples=20)
@given(well_conditioned_arrays(Domain(-1.0, 1.0), shape=(6,), dtype=np.float32, kinks=(0.0, 0.5), margin=1e-2))
def test_well_conditioned_arrays_keep_their_margin_and_dtype(x: np.ndarray) -> None:
    assert x.dtype == np.float32 and x.shape == (6,)
    for kink in (0.0, 0.5):
        assert np.all(np.abs(x.astype(np.float64) - kink) >= 1e-2 * 0.999)


@settings(max_examples=50)
@given(st.lists(st.floats(-0.01, 0.01), min_size=1, max_size=8), st.floats(0.0, 0.005),
       st.lists(st.floats(-0.01, 0.01), max_size=3))
@example([1.6e-5, 0.001, -0.001, 0.0], 0.001, [])  # hardshrink's kinks +-lambd: off one used to land on the other
@example([0.0, 1e-90], 1e-90, [])  # two kinks closer than a difference step: one span
def test_off_kinks_leaves_every_element_a_margin_from_every_kink(values: list[float], lambd: float,
                                                                  more: list[float]) -> None:
    kinks = (lambd, -lambd, *more)
    per_element = np.full(len(values), lambd)  # a kink may be an array, one per element
    moved = off_kinks(np.array(values), (per_element, -lambd, *more), 1e-3)
    for kink in kinks:
        assert np.all(np.abs(moved - kink) >= 1e-3), (values, kinks, moved)
    far = [all(abs(v - k) >= 4e-3 for k in kinks) for v in values]  # beyond any span of kinks
    assert np.array_equal(moved[far], np.array(values)[far])  # what was far from every kink stays


def test_failure_message_names_findings_and_prints_scalars_as_scalars() -> None:
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    with pytest.raises(AssertionError) as caught:
        assert_grad_close(lambda x: np.sum(np.tanh(x)), lambda x: 1 - np.tanh(x.astype(np.float64)) ** 2, x,
                          names=["x"])
    first = str(caught.value).splitlines()[0]
    assert first.startswith("gradient of x fails: gradient of x has dtype float64") and "its values match" in first
    with pytest.raises(AssertionError) as caught:
        assert_grad_close(lambda x: x**3, lambda x: 2 * x**2, np.array(0.5), names=["x"])
    first = str(caught.value).splitlines()[0]
    assert first.startswith("gradient of x is wrong at x: analytic 0.5 vs numeric 0.75") and "x[]" not in first

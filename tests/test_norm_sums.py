"""The normalisation layers' per-channel sums of products (``norm.sums``): BLAS dot products over
chunks of at most 256 elements must add up to NumPy's sum, to rounding, for every way the summed
axes and the chunk boundaries can fall, and lose no accuracy on long channels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from symdl.kernels._layers import norm

#: (shape, summed axes): batch norm's (0, 2, ...), layer norm's trailing axes, group norm's (2,),
#: and layer norm's weight gradient over the leading axes (no BLAS: its trailing block is 1 long).
LAYOUTS = st.sampled_from([
    (lambda n, c, l: (n, c, l), (0, 2)),
    (lambda n, c, l: (n, c, 1, l), (0, 2, 3)),
    (lambda n, c, l: (n, c, l, 1), (0, 2, 3)),
    (lambda n, c, l: (n, c, l), (1, 2)),
    (lambda n, c, l: (n * c, l), (1,)),
    (lambda n, c, l: (n, c, l), (2,)),
    (lambda n, c, l: (n, c, l), (0, 1)),
])


def _bound(x: np.ndarray, y: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """A worst-case rounding bound: (chunk length + the pairwise levels above it) units of
    roundoff times the sum of |terms|; a dropped or doubled element is far above it."""
    eps = np.finfo(x.dtype).eps
    terms = np.abs(x.astype(np.float64) * y.astype(np.float64)).sum(axis=axes, keepdims=True)
    return (norm._DOT_ELEMENTS + 64) * eps * terms


@given(layout=LAYOUTS, n=st.integers(0, 3), c=st.integers(1, 4), length=st.integers(1, 700),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@example(layout=(lambda n, c, l: (n, c, l), (0, 2)), n=2, c=3, length=255, dtype=np.float32, seed=0)
@example(layout=(lambda n, c, l: (n, c, l), (0, 2)), n=2, c=3, length=256, dtype=np.float32, seed=0)
@example(layout=(lambda n, c, l: (n, c, l), (0, 2)), n=2, c=3, length=257, dtype=np.float64, seed=0)
@example(layout=(lambda n, c, l: (n, c, l), (0, 2)), n=1, c=1, length=512, dtype=np.float64, seed=0)
@example(layout=(lambda n, c, l: (n, c, l), (0, 2)), n=0, c=2, length=300, dtype=np.float32, seed=0)
def test_sums_of_products_equal_numpys_to_rounding(layout, n, c, length, dtype, seed) -> None:
    shape_of, axes = layout
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape_of(n, c, length)).astype(dtype)
    y = rng.standard_normal(x.shape).astype(dtype)
    got = norm.sums(x, axes, y)
    exact = (x.astype(np.float64) * y.astype(np.float64)).sum(axis=axes, keepdims=True)
    assert got.dtype == dtype and got.shape == exact.shape
    assert np.all(np.abs(got - exact) <= _bound(x, y, axes))


def test_a_long_constant_channel_is_summed_as_accurately_as_numpys_pairwise_sum() -> None:
    """2^18 copies of 0.1f: one dot product over the whole channel accumulates its rounding error in
    a few SIMD lanes (3.9e-5 relative, measured); chunks of 256 keep it at NumPy's 1.5e-7."""
    x = np.full((1, 2, 2**18), 0.1, dtype=np.float32)
    ones = np.ones_like(x)
    exact = x.astype(np.float64).sum(axis=(0, 2), keepdims=True)
    numpy_error = np.max(np.abs(x.sum(axis=(0, 2), keepdims=True) - exact) / exact)
    error = np.max(np.abs(norm.sums(x, (0, 2), ones) - exact) / exact)
    assert error <= max(2 * numpy_error, 4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("case", ["strided", "object", "mixed dtypes", "plain sum"])
def test_other_arrays_are_summed_by_numpy_exactly(case: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 300))
    y = rng.standard_normal(x.shape)
    if case == "strided":
        x, y = x[:, :, ::2], y[:, :, ::2]
    elif case == "object":
        x, y = x.astype(object), y.astype(object)
    elif case == "mixed dtypes":
        y = y.astype(np.float32)
    else:
        assert np.array_equal(norm.sums(x, (0, 2)), x.sum(axis=(0, 2), keepdims=True))
        return
    assert np.array_equal(norm.sums(x, (0, 2), y), (x * y).sum(axis=(0, 2), keepdims=True))

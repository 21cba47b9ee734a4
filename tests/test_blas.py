"""symdl.optim._blas.axpy: every element rounded alike, wherever it sits in a call and however BLAS threads it."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from symdl.optim._blas import axpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_rounds_every_element_alike_wherever_it_sits(dtype: type) -> None:
    """One call over 100,003 elements (on three BLAS threads), the same on one thread, and calls over segments of
    random lengths (each with a tail of its own) give the same bits: OpenBLAS fuses the multiply and the add in
    its vector body but not in a call's last n mod 16 elements, and splits a call above 10,000 elements between
    threads, each part with such a tail."""
    rng = np.random.default_rng(0)
    n = 100_003
    x, y = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    a = -0.1234567
    with threadpool_limits(limits=3, user_api="blas"):  # a call split in 3 has parts of no multiple of 16
        whole = y.copy()
        axpy(a, x, whole)
    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = y.copy()
        axpy(a, x, one_thread)
    cuts = np.sort(rng.choice(np.arange(1, n), 60, replace=False))
    segments = y.copy()
    for start, stop in zip([0, *cuts], [*cuts, n]):
        axpy(a, x[start:stop], segments[start:stop])
    assert np.array_equal(whole, one_thread) and np.array_equal(whole, segments)
    assert whole.dtype == dtype and not np.array_equal(whole, y)
    # within rounding of a x + y (the scalar rounded to the dtype first, as BLAS takes it), computed in long
    # double: an ulp of the largest of the terms and the result, where they cancel
    product = np.longdouble(dtype(a)) * x.astype(np.longdouble)
    exact = product + y.astype(np.longdouble)
    scale = np.maximum(np.maximum(np.abs(exact), np.abs(product)), np.abs(y)).astype(dtype)
    assert np.all(np.abs(whole - exact) <= np.spacing(scale))

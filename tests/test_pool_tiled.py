"""Max pooling's tiled arg-max scan: windows that tile the planes (``PoolPlan.tiles``: stride =
kernel_size, no padding, no dilation, sizes multiples of the kernel, long enough rows) are scanned
in the (N, C, H, W) layout itself. It must give the planes-last scan's maxima and indices exactly:
the first maximum on ties (row-major, PyTorch's choice), the last NaN of a window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import symdl.kernels as K
from symdl.kernels._layers import pool
from tests import layer_reference as ref

#: Few distinct values, so that windows tie; infinities; NaN only where drawn.
VALUES = np.array([0.0, 1.0, -1.0, 2.0, np.inf, -np.inf])


def _pool(x: np.ndarray, kernel: tuple[int, int], one_d: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward maxima and indices, and the backward rescanned, as the 1-D or 2-D op."""
    forward, vjp = (K.max_pool1d, K.max_pool1d_vjp) if one_d else (K.max_pool2d, K.max_pool2d_vjp)
    size = kernel[1] if one_d else kernel
    y, index = forward(x, kernel_size=size, return_indices=True)
    grad = np.arange(1, y.size + 1, dtype=x.dtype).reshape(y.shape)
    (rescanned,) = vjp(grad, x, kernel_size=size)
    (from_indices,) = vjp(grad, x, kernel_size=size, indices=index)
    assert np.array_equal(rescanned, from_indices)
    return y, index, rescanned


@given(n=st.integers(1, 2), c=st.integers(1, 3), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       out_hw=st.tuples(st.integers(1, 3), st.integers(0, 3)), one_d=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), nan_rate=st.sampled_from([0.0, 0.0, 0.05]),
       seed=st.integers(0, 2**32 - 1))
@example(n=1, c=1, kernel=(2, 2), out_hw=(2, 0), one_d=False, dtype=np.float32, nan_rate=0.0, seed=0)
@example(n=2, c=2, kernel=(3, 2), out_hw=(1, 1), one_d=False, dtype=np.float64, nan_rate=0.05, seed=1)
@example(n=1, c=2, kernel=(1, 3), out_hw=(1, 2), one_d=True, dtype=np.float64, nan_rate=0.0, seed=2)
def test_the_tiled_scan_equals_the_planes_last_scan_and_the_loop(n, c, kernel, out_hw, one_d, dtype, nan_rate,
                                                                  seed) -> None:
    kh, kw = (1, kernel[1]) if one_d else kernel
    ho, wo = (1 if one_d else out_hw[0]), pool.TILED_MIN_ROW + out_hw[1]
    rng = np.random.default_rng(seed)
    x = rng.choice(VALUES, size=(n, c, ho * kh, wo * kw)).astype(dtype)
    x[rng.random(x.shape) < nan_rate] = np.nan
    if one_d:
        x = x[:, :, 0]
    calls = []
    real = pool._tiled_max_scan
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool, "_tiled_max_scan", lambda *args: calls.append(args) or real(*args))
        tiled = _pool(x, (kh, kw), one_d)
    assert calls, "the tiled scan was not used"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pool, "TILED_MIN_ROW", 10**9)
        planes_last = _pool(x, (kh, kw), one_d)
    for got, expected in zip(tiled, planes_last):
        assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True)
    if not (np.isnan(x) | np.isneginf(x)).any():  # the loop reference has neither PyTorch's NaN rule nor
        # its index for an all -inf window (the first tap; the reference's is -1)
        y, index = ref.max_pool2d(x.reshape(n, c, ho * kh, wo * kw), (kh, kw))
        assert np.array_equal(tiled[0].reshape(y.shape), y) and np.array_equal(tiled[1].reshape(index.shape), index)


@pytest.mark.parametrize(("shape", "options"), [
    ((2, 3, 16, 16), {"kernel_size": 2, "stride": 1}),
    ((2, 3, 16, 16), {"kernel_size": 2, "padding": 1}),
    ((2, 3, 17, 16), {"kernel_size": 2}),
    ((2, 3, 16, 16), {"kernel_size": 2, "dilation": 2}),
    ((2, 3, 8, 8), {"kernel_size": 2}),
])
def test_windows_that_do_not_tile_or_short_rows_take_the_planes_last_scan(shape, options) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    plan = pool.pool_plan("max_pool2d", (x,), spatial=2, **options)
    assert not plan.tiles
    y, index = K.max_pool2d(x, **options, return_indices=True)
    expected_y, expected_index = ref.max_pool2d(x, **options)
    assert np.array_equal(y, expected_y) and np.array_equal(index, expected_index)

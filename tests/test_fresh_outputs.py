"""Large kernel outputs start on a huge-page boundary with their huge pages advised (Linux); every output is a
new, writable, C-contiguous array, and the values do not depend on how it was allocated."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import symdl.kernels as K
import symdl.kernels._runtime as R

HUGE = 1 << 21
LINUX = sys.platform.startswith("linux") and R._madvise() is not None


@pytest.mark.parametrize(("shape", "dtype"), [((1000, 1000), np.float32), ((512, 512), np.float64), ((7,), np.float32),
                                              ((0, 3), np.float64), ((), np.float32)])
def test_fresh_is_a_new_writable_c_contiguous_array(shape: tuple[int, ...], dtype: type) -> None:
    a, b = R.fresh(shape, dtype), R.fresh(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    assert not np.shares_memory(a, b)
    a[...] = 1
    b[...] = 2
    assert np.all(a == 1)
    large = a.nbytes >= HUGE
    if LINUX and large:
        assert a.ctypes.data % HUGE == 0  # aligned: its whole huge pages can be backed as such
    if not large:
        assert a.base is None  # small arrays are NumPy's own


def test_without_madvise_a_large_output_is_numpys_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(R, "_madvise", lambda: None)
    a = R.fresh((1000, 1000), np.float32)
    assert a.base is None and a.shape == (1000, 1000)


@pytest.mark.parametrize("name", ["gelu", "sigmoid", "softplus"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_outputs_are_the_same_values_however_allocated(name: str, dtype: type,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    x = (4 * np.random.default_rng(0).standard_normal((1000, 600))).astype(dtype)  # 2.4 or 4.8 MB: past one page
    forward = getattr(K, name)
    y = forward(x)
    assert y.dtype == dtype and y.shape == x.shape and y.flags.c_contiguous and not np.shares_memory(x, y)
    monkeypatch.setattr(R, "_madvise", lambda: None)
    np.testing.assert_array_equal(forward(x), y)

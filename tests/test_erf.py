"""The runtime's erf, erfc and normal CDF (``symdl.kernels._runtime``) and their users (gelu).

Ground truth is mpmath at 40 digits, over arguments spanning the whole float range of each dtype
(log-uniform magnitudes from the smallest subnormal to the largest finite number, plus dense
arguments where the functions vary). Errors are in units in the last place of the dtype (a
subnormal true value in units of the smallest normal number).
"""

from __future__ import annotations

import ast
import subprocess
import sys

import mpmath
import numpy as np
import pytest

import symdl.kernels as kernels
from symdl.kernels import _runtime as rt

DTYPES = (np.float32, np.float64)
REFERENCES = {"erf": mpmath.erf, "erfc": mpmath.erfc, "normal_cdf": mpmath.ncdf}
BOUND = 4.0


def _points(dtype: type) -> np.ndarray:
    info = np.finfo(dtype)
    rng = np.random.default_rng(11)
    smallest = float(np.nextafter(dtype(0), dtype(1)))
    magnitudes = np.concatenate([10 ** rng.uniform(np.log10(smallest), np.log10(float(info.max)), 600),
                                 rng.uniform(0, 6, 900), rng.uniform(6, 40, 300)]).astype(dtype)
    return np.concatenate([magnitudes, -magnitudes])


def _ulp(computed: np.ndarray, exact: list, dtype: type) -> np.ndarray:
    rounded = np.array([float(v) for v in exact]).astype(dtype)
    unit = np.maximum(np.spacing(np.abs(rounded)), np.finfo(dtype).tiny).astype(np.float64)
    return np.abs(computed.astype(np.float64) - rounded.astype(np.float64)) / unit


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(REFERENCES))
def test_within_four_ulp_of_mpmath_over_the_float_range(name: str, dtype: type) -> None:
    x = _points(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        computed = getattr(rt, name)(x)
    assert computed.dtype == dtype and computed.shape == x.shape
    with mpmath.workdps(40):
        exact = [REFERENCES[name](mpmath.mpf(float(np.clip(v, -1e4, 1e4)))) for v in x]
    errors = _ulp(computed, exact, dtype)
    worst = int(np.argmax(errors))
    assert errors[worst] <= BOUND, f"{name}({x[worst]!r}): {errors[worst]} ulp"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_special_values(dtype: type) -> None:
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    np.testing.assert_array_equal(rt.erf(x)[:4], np.array([0.0, -0.0, 1.0, -1.0], dtype))
    np.testing.assert_array_equal(rt.erfc(x)[:4], np.array([1.0, 1.0, 0.0, 2.0], dtype))
    np.testing.assert_array_equal(rt.normal_cdf(x)[:4], np.array([0.5, 0.5, 1.0, 0.0], dtype))
    assert all(np.isnan(f(x)[4]) for f in (rt.erf, rt.erfc, rt.normal_cdf))


def test_shapes_and_integer_input() -> None:
    x = np.linspace(-3, 3, 2 * 3 * 70000).reshape(2, 3, 70000)  # more than one evaluation block
    np.testing.assert_array_equal(rt.erf(x)[1, 2], rt.erf(x[1, 2]))
    assert rt.erfc(np.arange(-3, 4)).dtype == np.float64
    assert rt.normal_cdf(np.float32(0.25)).shape == ()
    for dtype in DTYPES:  # empty input: an empty result of the same shape and dtype (was a ValueError)
        for f in (rt.erf, rt.erfc, rt.normal_cdf):
            empty = f(np.zeros((0, 3), dtype))
            assert empty.shape == (0, 3) and empty.dtype == dtype
    y = np.linspace(-3, 3, 2 * 3 * 70000, dtype=np.float32).reshape(2, 3, 70000)  # float32's own form
    np.testing.assert_array_equal(rt.normal_cdf(y)[1, 2], rt.normal_cdf(y[1, 2]))
    np.testing.assert_array_equal(rt.normal_cdf(y.T), rt.normal_cdf(y).T)  # strided input


def test_concurrent_calls_keep_their_own_scratch() -> None:
    """The blocks' scratch is kept between calls, per thread: calls running at once (NumPy releases the GIL
    inside each pass) return what the same calls return one at a time, in both dtypes and all three functions,
    with inputs large enough for several blocks and a smaller one after a larger (a reused, longer buffer)."""
    import threading

    rng = np.random.default_rng(7)
    inputs = [(f, (rng.standard_normal(n) * 4).astype(dtype)) for dtype in DTYPES for n in (200_000, 1000)
              for f in (rt.erf, rt.erfc, rt.normal_cdf)]
    expected = [f(x) for f, x in inputs]
    results: dict[int, list[np.ndarray]] = {}

    def run(worker: int) -> None:
        results[worker] = [f(x) for f, x in (inputs[worker:] + inputs[:worker]) * 3]

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, outputs in results.items():
        wanted = (expected[worker:] + expected[:worker]) * 3
        for got, want in zip(outputs, wanted, strict=True):
            np.testing.assert_array_equal(got, want)
    assert len(results) == len(threads)


def test_float32_normal_cdf_is_dense_within_one_ulp() -> None:
    """float32's whole-line form on a dense grid through both tails and the old switch at |x| = sqrt(2) / 2,
    against mpmath: the float64 evaluation rounded once to float32 is within 1 ulp (4 is the general bound)."""
    x = np.concatenate([np.linspace(-15, 15, 6001), np.linspace(-0.8, 0.8, 801)]).astype(np.float32)
    computed = rt.normal_cdf(x)
    with mpmath.workdps(40):
        exact = [mpmath.ncdf(mpmath.mpf(float(v))) for v in x]
    errors = _ulp(computed, exact, np.float32)
    worst = int(np.argmax(errors))
    assert errors[worst] <= 1.0, f"normal_cdf({x[worst]!r}): {errors[worst]} ulp"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gelu_forward_within_four_ulp_of_mpmath(dtype: type) -> None:
    """gelu(x) = x Phi(x), the erf user of the catalog, in plain ulp (no condition-number allowance)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-12, 6, 3001), rng.uniform(-40, 40, 500),
                        -(10 ** rng.uniform(-30, 1.5, 300)), 10 ** rng.uniform(-30, 1.5, 300)]).astype(dtype)
    computed = kernels.gelu(x)
    assert computed.dtype == dtype
    with mpmath.workdps(40):
        exact = [mpmath.mpf(float(v)) * mpmath.ncdf(mpmath.mpf(float(v))) for v in x]
    errors = _ulp(computed, exact, dtype)
    worst = int(np.argmax(errors))
    assert errors[worst] <= BOUND, f"gelu({x[worst]!r}): {errors[worst]} ulp"


def test_no_scipy_on_the_hot_path() -> None:
    code = ("import sys, numpy as np, symdl.kernels as k; x = np.linspace(-5, 5, 11);"
            "k.gelu(x); k.gelu_vjp(np.ones_like(x), x); print('scipy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_runtime_coefficients_are_the_fit_scripts_output() -> None:
    """The coefficients in _runtime.py are exactly what scripts/fit_erf.py prints (not edited by hand)."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "fit_erf.py"
    printed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                             timeout=300).stdout
    fitted = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(printed).body
              if isinstance(node, ast.Assign)}
    assert len(fitted) == 10
    for name, value in fitted.items():
        assert getattr(rt, name) == value, name

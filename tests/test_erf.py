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
    inside each pass) return what the same calls return one at a time, in both dtypes and all four functions,
    with inputs large enough for several blocks and a smaller one after a larger (a reused, longer buffer)."""
    import threading

    rng = np.random.default_rng(7)
    inputs = [(f, (rng.standard_normal(n) * 4).astype(dtype)) for dtype in DTYPES for n in (200_000, 1000)
              for f in (rt.erf, rt.erfc, rt.normal_cdf, rt.x_normal_cdf)]
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


def test_x_normal_cdf_float32_is_dense_within_four_ulp() -> None:
    """float32's fused x Phi(x) (W wholly in float32) on dense grids through both tails and around x = -0.3, where
    its float32 rounding is largest, against mpmath, in plain ulp (no condition-number allowance)."""
    x = np.concatenate([np.linspace(-16, 8, 12001), np.linspace(-1, 0.25, 12501)]).astype(np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        computed = rt.x_normal_cdf(x)
    assert computed.dtype == np.float32
    with mpmath.workdps(40):
        exact = [mpmath.mpf(float(v)) * mpmath.ncdf(mpmath.mpf(float(v))) for v in x]
    errors = _ulp(computed, exact, np.float32)
    worst = int(np.argmax(errors))
    assert errors[worst] <= BOUND, f"x_normal_cdf({x[worst]!r}): {errors[worst]} ulp"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_x_normal_cdf_special_values_shapes_and_float64(dtype: type) -> None:
    """x Phi(x) at the limits (x = -inf: 0, not inf * 0; +inf: inf; NaN stays NaN) with no floating-point flag,
    in x's dtype, on several blocks, strided and empty input; float64 is x * normal_cdf(x) bit for bit."""
    info = np.finfo(dtype)
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, float(info.max), -float(info.max), 1e30, -1e30,
                  float(info.smallest_subnormal), -float(info.smallest_subnormal), 15.5, -15.5, -40.0], dtype)
    with np.errstate(all="raise", under="ignore"):
        y = rt.x_normal_cdf(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[[0, 1, 3, 4, 5, 6, 7, 8, 11, 13]],
                                  np.array([0, np.inf, 0, 0, info.max, 0, 1e30, 0, 15.5, 0], dtype))
    assert np.isnan(y[2]) and y[9] == (0 if dtype == np.float64 else info.smallest_subnormal) and y[10] <= 0
    assert (y[12] == 0) if dtype == np.float32 else (-2.68e-53 > y[12] > -2.69e-53)  # -15.5 Phi(-15.5) = -2.688e-53
    big = (np.random.default_rng(2).standard_normal((3, 50000)) * 4).astype(dtype)  # several blocks
    np.testing.assert_array_equal(rt.x_normal_cdf(big)[2], rt.x_normal_cdf(big[2]))
    np.testing.assert_array_equal(rt.x_normal_cdf(big.T), rt.x_normal_cdf(big).T)  # strided input
    assert rt.x_normal_cdf(np.zeros((0, 3), dtype)).shape == (0, 3)
    if dtype == np.float64:
        np.testing.assert_array_equal(rt.x_normal_cdf(big), big * rt.normal_cdf(big))
        assert rt.x_normal_cdf(np.arange(-3, 4)).dtype == np.float64


def test_x_normal_cdf_primitive_prints_fused_only_in_the_numpy_kernels() -> None:
    """symdl.functions.x_normal_cdf is x Phi(x): its textbook form, value (mpmath), derivative and the two ways
    it prints (the NumPy kernel's fused runtime call; the product x * Phi(x) for PyTorch, JAX and lambdify)."""
    import sympy as sp

    from symdl.functions import normal_cdf, to_textbook, x_normal_cdf
    from symdl.printing.jax_printer import JaxPrinter
    from symdl.printing.numpy_printer import KernelPrinter
    from symdl.printing.torch_printer import TorchPrinter

    x = sp.Symbol("x", real=True)
    f = x_normal_cdf(x)
    assert sp.simplify(to_textbook(f) - x * (1 + sp.erf(x / sp.sqrt(2))) / 2) == 0
    assert x_normal_cdf(0) == 0
    with mpmath.workdps(30):
        assert abs(sp.N(x_normal_cdf(sp.Rational(-3, 2)), 25) - mpmath.mpf(-1.5) * mpmath.ncdf(-1.5)) < 1e-20
    assert sp.simplify(to_textbook(sp.diff(f, x)) - sp.diff(to_textbook(f), x)) == 0
    assert sp.diff(f, x).has(normal_cdf)
    assert KernelPrinter().doprint(f) == "_rt.x_normal_cdf(x)"
    for printer in (TorchPrinter(), JaxPrinter()):  # exactly the product's text: exported modules are unchanged
        assert printer.doprint(f) == printer.doprint(x * normal_cdf(x))
        assert f"{printer.table.function('normal_cdf')}(x)" in printer.doprint(f) and "x_normal" not in printer.doprint(f)
    assert sp.latex(f) == r"x \Phi\left(x\right)" and sp.latex(x_normal_cdf(x + 1)).startswith(r"\left(x + 1\right)")
    values = np.linspace(-30, 30, 601)
    lambdified = sp.lambdify(x, f, modules=[{"normal_cdf": rt.normal_cdf}, "numpy"])
    np.testing.assert_array_equal(lambdified(values), rt.x_normal_cdf(values))


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_verify_reports_every_special_function_and_catches_a_wrong_one(dtype: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from symdl.verify import ops

    row = ops.verify_special(dtype)
    assert row.passed and all(f"{name} " in row.proof for name in ("erf", "erfc", "normal_cdf", "x_normal_cdf"))
    good = rt.x_normal_cdf
    monkeypatch.setattr(rt, "x_normal_cdf", lambda x: good(x) * (1 - 16 * np.finfo(np.dtype(dtype)).eps))
    assert ops.special_function_errors(np.dtype(dtype).type, 200)["x_normal_cdf"] > BOUND

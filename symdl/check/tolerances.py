r"""Step sizes and tolerances, from the error analysis of central differences.

A central difference of ``f`` along element ``j`` with step ``h``,

.. math::

    D(h) = \frac{f(x + h e_j) - f(x - h e_j)}{2h}
         = f'(x) + \frac{h^2}{6} f'''(\xi) + \frac{\delta_+ - \delta_-}{2h},

has a truncation error :math:`h^2 |f'''| / 6` and a rounding error
:math:`\le \epsilon_f |f| / h`, where :math:`\epsilon_f` is the relative
accuracy of one evaluation of ``f``. The sum is smallest at
:math:`h \sim \epsilon^{1/3}` (relative to the scale of ``x``), where the
error is :math:`\sim \epsilon^{2/3}`: about 4e-11 in float64 and 2.4e-5 in
float32. Hence

* **step**: :math:`h_j = \epsilon^{1/3} \max(|x_j|, \bar x)`, where
  :math:`\bar x` is the mean magnitude of the input (1 when it is all zeros),
  so that tiny and huge inputs get proportionate steps and a zero element
  gets the input's typical scale. :math:`\epsilon` is the machine epsilon of
  the dtype ``f`` is *evaluated* in: float32 inputs are evaluated in float64
  whenever ``f`` returns float64 for float64 inputs (``precision="auto"``),
  so the numeric side is accurate to ~1e-10 even for float32 code.
* **rounding bound** of each difference: :math:`8 \epsilon_f
  \max(|f(x+h)|, |f(x-h)|) / (2h)`, added to the tolerance of that entry.
* **gradient tolerance**: an error model. An entry passes when

  .. math::

      |a_{ij} - n_{ij}| \le \mathrm{rtol}\,(|n_{ij}| + s) + r_{ij} + 4\,\mathrm{ulp}_d(n_{ij}),

  with :math:`s = \max_{ij} |n_{ij}|` the largest numeric entry for that
  input (small entries are judged against the largest one, as rounding in a
  correct gradient is relative to the terms that make it up), :math:`r_{ij}`
  the rounding bound, and :math:`\mathrm{ulp}_d(n)` the spacing of the
  gradient's dtype at the numeric value (the truth rounded to that dtype,
  0 where it underflows, always passes). ``rtol`` is the larger of the
  gradient's own rounding and the numeric side's (:func:`default_rtol`):
  1.5e-8 for float64, 3.1e-5 for float32 differenced in float64, 3.5e-4 for
  float32 differenced in float32, 3.1e-2 for float16.
* **truncation** is not bounded up front: an entry that fails the first pass
  is re-checked by a step-size sweep with Richardson's error estimate
  (:mod:`symdl.check.refine`), and only an entry that still disagrees with
  the best estimate by more than its estimated error fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Safety factor on the rounding error of one evaluation of ``f`` (in units of its epsilon).
ROUNDING_FACTOR = 8.0


#: Rounding of the gradient's own dtype, in units of its spacing at the truth (the truth rounded to that dtype,
#: and the user's last operations, which may underflow into subnormals).
DTYPE_ULPS = 4.0
#: A gradient computed in dtype ``d`` is allowed ``GRADIENT_ULPS * eps_d`` of its largest entry (at most half
#: its digits); measured: symdl's shipped float32 kernels stay below 6.3e-7 = 5.2 eps (tests/test_check_tolerance.py).
GRADIENT_ULPS = 256.0


@dataclass(frozen=True)
class Tolerance:
    """How closely the user's gradient must match: ``|a - n| <= rtol (|n| + s) + r + 4 ulp_d(n)``.

    ``dtype`` is the gradient's dtype: ``ulp_d(n)`` is the spacing of that dtype
    at the numeric value (the smallest subnormal where the truth underflows),
    so a gradient holding the truth rounded to its dtype always passes.
    """

    rtol: float
    dtype: np.dtype = np.dtype(np.float64)

    def bound(self, numeric: np.ndarray, scale: float, rounding: np.ndarray | float) -> np.ndarray:
        """The allowed absolute error of each entry."""
        # rtol |n| + rtol s, not rtol (|n| + s): the sum overflows for derivatives past half the largest float
        # (exp at 709.7), an infinite allowance that judges nothing
        relative = self.rtol * np.abs(numeric) + self.rtol * scale
        return relative + rounding + DTYPE_ULPS * dtype_spacing(numeric, self.dtype)


def dtype_spacing(values: np.ndarray | float, dtype: np.dtype | type) -> np.ndarray:
    """Spacing of ``dtype`` at each value (float64 out): what rounding the truth to that dtype may cost."""
    dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    with np.errstate(all="ignore"):
        rounded = np.abs(np.asarray(values, dtype=np.float64)).astype(dtype)
        spacing = np.spacing(np.where(np.isfinite(rounded), rounded, np.finfo(dtype).max)).astype(np.float64)
    return np.where(np.isnan(spacing), np.inf, spacing)


def machine_epsilon(dtype: np.dtype | type) -> float:
    """Machine epsilon of a floating or complex dtype (``finfo`` of its real part); float64's otherwise."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if dtype.kind in "fc" else float(np.finfo(np.float64).eps)


def _tiny(dtype: np.dtype | type) -> float:
    """Smallest normal number of a floating or complex dtype; float64's otherwise."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).tiny) if dtype.kind in "fc" else float(np.finfo(np.float64).tiny)


def default_rtol(dtype: np.dtype | type, eval_dtype: np.dtype | type = np.float64) -> float:
    r"""The relative tolerance of a gradient in ``dtype`` judged against differences evaluated in ``eval_dtype``.

    :math:`\max(\min(\sqrt{\epsilon_d}, 256\,\epsilon_d), \sqrt{\epsilon_e})`: the gradient's own rounding
    (256 units, at most half its digits) or the numeric side's (half the digits of the evaluation dtype),
    whichever is larger: 1.5e-8 for float64; 3.1e-5 for float32 evaluated in float64 (3.5e-4 when ``f``
    runs in float32 only); 3.1e-2 for float16.
    """
    eps = machine_epsilon(dtype)
    return float(max(min(np.sqrt(eps), GRADIENT_ULPS * eps), np.sqrt(machine_epsilon(eval_dtype))))


def default_tolerance(dtype: np.dtype | type, rtol: float | None = None,
                      eval_dtype: np.dtype | type = np.float64) -> Tolerance:
    """The tolerance of a gradient in ``dtype``: :func:`default_rtol` unless ``rtol`` is given."""
    grad_dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    return Tolerance(rtol if rtol is not None else default_rtol(grad_dtype, eval_dtype), grad_dtype)


def typical_scale(x: np.ndarray) -> float:
    """Mean magnitude of ``x`` (1 when it is all zeros or empty): the step of a zero element."""
    magnitude = float(np.mean(np.abs(x))) if x.size else 0.0
    return magnitude if magnitude > 0 and np.isfinite(magnitude) else 1.0


def element_steps(x: np.ndarray, eval_dtype: np.dtype | type, factor: float = 1.0) -> np.ndarray:
    """Per-element central-difference steps ``eps^(1/3) max(|x_j|, mean |x|)``, flattened."""
    base = machine_epsilon(eval_dtype) ** (1.0 / 3.0) * factor
    flat = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    # At least tiny/eps: a subnormal input's step must not underflow to 0 (x*x at 5e-324).
    return base * np.maximum(flat, max(typical_scale(flat), _tiny(eval_dtype) / machine_epsilon(eval_dtype)))


def rounding_bound(f_plus: np.ndarray, f_minus: np.ndarray, width: np.ndarray | float,
                   eval_dtype: np.dtype | type) -> np.ndarray:
    r"""Rounding error bound of ``(f_plus - f_minus) / width``: :math:`8 \epsilon \max|f_\pm| / w`."""
    # An evaluation's absolute error is at least eps * tiny (the subnormal spacing), even where f underflows.
    magnitude = np.maximum(np.maximum(np.abs(f_plus), np.abs(f_minus)), _tiny(eval_dtype))
    return ROUNDING_FACTOR * machine_epsilon(eval_dtype) * magnitude / width

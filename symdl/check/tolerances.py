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
* **analytic tolerance**: the user's gradient, computed in its own dtype, may
  lose half of its digits to conditioning before it is called wrong:
  ``rtol = sqrt(eps)`` of the input's dtype (1.5e-8 float64, 3.5e-4 float32,
  3.1e-2 float16). An entry passes when

  .. math::

      |a_{ij} - n_{ij}| \le \mathrm{rtol}\,(|n_{ij}| + s) + r_{ij},

  with :math:`s = \max_{ij} |n_{ij}|` the largest numeric entry for that
  input (small entries are judged against the largest one, as rounding in a
  correct gradient is relative to the terms that make it up) and
  :math:`r_{ij}` the rounding bound.
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


@dataclass(frozen=True)
class Tolerance:
    """How closely the user's gradient must match: ``|a - n| <= rtol (|n| + s) + r``."""

    rtol: float

    def bound(self, numeric: np.ndarray, scale: float, rounding: np.ndarray | float) -> np.ndarray:
        """The allowed absolute error of each entry."""
        return self.rtol * (np.abs(numeric) + scale) + rounding


def machine_epsilon(dtype: np.dtype | type) -> float:
    """Machine epsilon of a floating or complex dtype (``finfo`` of its real part); float64's otherwise."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) if dtype.kind in "fc" else float(np.finfo(np.float64).eps)


def default_tolerance(dtype: np.dtype | type, rtol: float | None = None) -> Tolerance:
    """``rtol = sqrt(eps)`` of the gradient's dtype unless given."""
    return Tolerance(rtol if rtol is not None else float(np.sqrt(machine_epsilon(dtype))))


def typical_scale(x: np.ndarray) -> float:
    """Mean magnitude of ``x`` (1 when it is all zeros or empty): the step of a zero element."""
    magnitude = float(np.mean(np.abs(x))) if x.size else 0.0
    return magnitude if magnitude > 0 and np.isfinite(magnitude) else 1.0


def element_steps(x: np.ndarray, eval_dtype: np.dtype | type, factor: float = 1.0) -> np.ndarray:
    """Per-element central-difference steps ``eps^(1/3) max(|x_j|, mean |x|)``, flattened."""
    base = machine_epsilon(eval_dtype) ** (1.0 / 3.0) * factor
    flat = np.abs(np.asarray(x, dtype=np.float64)).ravel()
    return base * np.maximum(flat, typical_scale(flat))


def rounding_bound(f_plus: np.ndarray, f_minus: np.ndarray, width: np.ndarray | float,
                   eval_dtype: np.dtype | type) -> np.ndarray:
    r"""Rounding error bound of ``(f_plus - f_minus) / width``: :math:`8 \epsilon \max|f_\pm| / w`."""
    magnitude = np.maximum(np.abs(f_plus), np.abs(f_minus))
    return ROUNDING_FACTOR * machine_epsilon(eval_dtype) * magnitude / width

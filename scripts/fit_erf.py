#!/usr/bin/env python
"""Fit the coefficients of symdl's NumPy erf, erfc and normal CDF (``symdl/kernels/_runtime.py``).

Two forms each, switched at z = 1/2 (erf, erfc; the normal CDF at the same z = x / sqrt 2):

* near 0, a polynomial in the exact x^2: erf(z) = z R(z^2) on |z| < 1/2, and
  Phi(x) - 1/2 = x N(x^2) on |x| < sqrt(2) / 2;
* in the tails, erfc(z) = e^{-z^2} P(v - 1) / (z + 3/4) with v = (3 + 2) / (2 + z) (z >= 1/2), and
  Q(u) = 1 - Phi(u) = 1/2 e^{-u^2/2} M(v - 1) / (u + 1) with v = (K + 4) / (4 + u), K = 4 + sqrt 2
  rounded to a double (u >= sqrt(2) / 2): the runtime computes e^{-u^2/2} from u itself, with no
  rounded u / sqrt 2.

v maps the half-line beyond the switch onto (0, 2], so w = v - 1 lies in (-1, 1]: in that centred
variable the polynomial's coefficients are small, and neither their rounding to the dtype nor
Horner's rule cancels (in t = c / (c + z) on (0, 4/5] the coefficients alternated up to 3 and cost
2-3 ulp). ``P`` and ``M`` are erfc(z) e^{z^2} (z + 3/4), resp. (u + 1), in w: smooth on the closed
interval, so one polynomial covers the half-line. The factor 1 / (z + 3/4) carries erfc(z) e^{z^2}'s
decay like 1/z, so that P and M are nearly flat (their relative change is about 0 per relative
change of u at both ends): the rounding of v, which near the switch moves v five times less than u,
then barely moves them (a polynomial times v instead cost 3 ulp there). Each polynomial is a
least-squares fit in the relative error on Chebyshev nodes, with mpmath at
60 digits; its largest relative error on a dense grid is printed. ``symdl verify`` measures the
resulting functions against mpmath over the whole float range.

float32's normal CDF has its own form on the whole half-line (``_NORMAL_WHOLE_32``, see ``WHOLE_C`` below):
Q(u) = e^{-u^2/2} v W(w), v = 8 / (4 + u), w = v - 1 = (4 - u) / (4 + u), so that the runtime evaluates one form
instead of two blended ones, and the 1 / u decay is the factor v it has already computed (no second division).

Usage: python scripts/fit_erf.py   (prints the coefficient tuples, highest degree first)
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import mpmath as mp

mp.mp.dps = 60

#: Degrees for float32 and float64 (the smallest whose fit error is far below the dtype's epsilon).
DEGREES = {"ERFC_TAIL": (11, 24), "NORMAL_TAIL": (11, 24), "ERF_SMALL": (4, 8), "NORMAL_SMALL": (4, 8)}
#: Where the forms switch: |z| = 1/2.
SWITCH = mp.mpf(1) / 2
#: The normal tail's v = (K + 4) / (4 + u) is 2 at the switch u = sqrt 2 / 2: K = 4 + 2 (sqrt 2 / 2), rounded
#: to a double as the runtime holds it (the fit uses the same map).
NORMAL_K = float(4 + mp.sqrt(2))


def _tail(c: mp.mpf, k: mp.mpf, to_z: mp.mpf, shift: mp.mpf) -> Callable[[mp.mpf], mp.mpf]:
    """erfc(z) e^{z^2} (u + shift) as a function of w = v - 1, where v = (k + c) / (c + u) and z = u * to_z."""
    def f(w: mp.mpf) -> mp.mpf:
        v = w + 1
        if v == 0:  # u -> infinity: erfc(z) e^{z^2} ~ 1 / (z sqrt(pi)) = 1 / (u to_z sqrt(pi))
            return 1 / (mp.sqrt(mp.pi) * to_z)
        u = (k + c) / v - c
        z = u * to_z
        return mp.erfc(z) * mp.exp(z * z) * (u + shift)

    return f


def _erf_small(s: mp.mpf) -> mp.mpf:
    z = mp.sqrt(s)
    return mp.erf(z) / z if z else 2 / mp.sqrt(mp.pi)


def _normal_small(s: mp.mpf) -> mp.mpf:
    x = mp.sqrt(s)
    return (mp.ncdf(x) - mp.mpf(1) / 2) / x if x else 1 / mp.sqrt(2 * mp.pi)


#: name -> (function, interval). The normal tail's t = 4 / (4 + u) is 2 sqrt 2 / (2 sqrt 2 + z).
FITS = {
    "ERFC_TAIL": (_tail(mp.mpf(2), mp.mpf(3), mp.mpf(1), mp.mpf(3) / 4), (mp.mpf(-1), mp.mpf(1))),
    "NORMAL_TAIL": (_tail(mp.mpf(4), mp.mpf(NORMAL_K), 1 / mp.sqrt(2), mp.mpf(1)), (mp.mpf(-1), mp.mpf(1))),
    "ERF_SMALL": (_erf_small, (mp.mpf(0), SWITCH**2)),
    "NORMAL_SMALL": (_normal_small, (mp.mpf(0), 2 * SWITCH**2)),
}
#: float32's normal CDF in one form over the whole half-line u >= 0 (no near-zero polynomial, no blend: about
#: 40% fewer array passes). Q(u) = e^{-u^2/2} v W(v - 1) with v = 2c / (c + u), c = 4, so w = v - 1 =
#: (4 - u) / (4 + u) runs over (-1, 1]; Phi = 1 - Q >= 1/2 for x >= 0 needs no relative accuracy near 0.
#: v carries Q e^{u^2/2}'s 1 / u decay (W = Q e^{u^2/2} (u + c) / 2c tends to 1 / (2c sqrt(2 pi)) as u grows),
#: and the runtime has it already: no division by u + shift. In this form degree 9 fits to about 4e-8 (11
#: would give 2e-9), two array passes per degree fewer than 11: the float32 result stays within 1 ulp of the
#: correctly rounded value (tests/test_erf.py and `symdl verify`, against mpmath) and within 1.23 ulp of the
#: exact one (6.8 million points against the float64 normal CDF).
WHOLE_C, WHOLE_DEGREE = mp.mpf(4), 9


def _normal_whole(w: mp.mpf) -> mp.mpf:
    """Q(u) e^{u^2/2} / v in w: half of erfc(u / sqrt 2) e^{u^2/2} (u + c), divided by 2c."""
    return _tail(WHOLE_C, WHOLE_C, 1 / mp.sqrt(2), WHOLE_C)(w) / (4 * WHOLE_C)


def fit(f: Callable[[mp.mpf], mp.mpf], low: mp.mpf, high: mp.mpf, degree: int) -> tuple[list[mp.mpf], mp.mpf]:
    """Least-squares polynomial in the relative error on Chebyshev nodes: (coefficients low to high, max error)."""
    n = 4 * degree + 40
    nodes = [(low + high) / 2 + (high - low) / 2 * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    values = [f(x) for x in nodes]
    a = mp.matrix([[x**j / v for j in range(degree + 1)] for x, v in zip(nodes, values)])
    coefficients = list(mp.qr_solve(a, mp.matrix([1] * n))[0])
    grid = [low + (high - low) * k / 4000 for k in range(4001)]
    error = max(abs(mp.polyval(coefficients[::-1], x) / f(x) - 1) for x in grid)
    return coefficients, error


def main() -> None:
    print(f"_NORMAL_K = {NORMAL_K!r}")
    for name, (f, (low, high)) in FITS.items():
        for bits, degree in zip((32, 64), DEGREES[name]):
            coefficients, error = fit(f, low, high, degree)
            print(f"# degree {degree}, largest relative error of the fit {mp.nstr(error, 3)}")
            values = ", ".join(repr(float(c)) for c in coefficients[::-1])
            print("\n".join(textwrap.wrap(f"_{name}_{bits} = ({values})", 116, subsequent_indent="    ")))
    coefficients, error = fit(_normal_whole, mp.mpf(-1), mp.mpf(1), WHOLE_DEGREE)
    print(f"# degree {WHOLE_DEGREE}, largest relative error of the fit {mp.nstr(error, 3)}")
    values = ", ".join(repr(float(c)) for c in coefficients[::-1])
    print("\n".join(textwrap.wrap(f"_NORMAL_WHOLE_32 = ({values})", 116, subsequent_indent="    ")))


if __name__ == "__main__":
    main()

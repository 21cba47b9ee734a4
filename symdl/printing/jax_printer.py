"""Print SymPy expressions as JAX code: the NumPy kernel printer's rules with ``jax.numpy``'s names.

``softplus`` is a helper, :math:`\\max(x, 0) + \\log(1 + e^{-|x|})`; so are ``log1p`` (XLA's is up to
128 ulp off in float64 on the CPU) and ``sinh`` (XLA's is up to 495 ulp off); ``sigmoid`` is
``jax.nn.sigmoid``; ``normal_cdf`` is ``jax.scipy.special.ndtr``; ``xlogy`` is
``jax.scipy.special.xlogy``.
"""

from __future__ import annotations

import math

from symdl.printing.framework_printer import SCALAR_HELPERS, FrameworkNames, FrameworkPrinter, exp_of_square_helper

def _horner(coefficients: list[float], variable: str) -> str:
    """c0 + v (c1 + v (c2 + ...)) as code."""
    head, *rest = coefficients
    return repr(head) if not rest else f"{head!r} + {variable} * ({_horner(rest, variable)})"


#: sinh's Taylor series past x, over x^3: 1/3! + s/5! + ... + s^8/19!, s = x^2.
_SINH_SERIES = _horner([1 / math.factorial(2 * k + 1) for k in range(1, 10)], "s")

#: Helpers a generated JAX module defines when its code calls them.
JAX_HELPERS: dict[str, str] = {
    "_log1p": (
        "def _log1p(u):\n"
        '    """log(1 + u) within 3 ulp. XLA\'s float64 log1p on the CPU is up to 128 ulp off for -0.5 < u < -0.2\n'
        "    (jax 0.10); there log(1 + u) is within 3 (1 + u rounds by half an ulp of 1 at most, and log\'s slope is\n"
        "    below 5). Goldberg\'s log(w) u / (w - 1), w = 1 + u, would not survive jit: XLA simplifies (1 + u) - 1\n"
        '    to u. Other dtypes: jnp.log1p, within 2.3 ulp in float32."""\n'
        "    if jnp.result_type(u) != jnp.float64:\n"
        "        return jnp.log1p(u)\n"
        "    return jnp.where((u > -0.5) & (u < -0.2), jnp.log(1 + u), jnp.log1p(u))\n"
    ),
    "_sinh": (
        "def _sinh(x):\n"
        '    """sinh x within 3 ulp. XLA\'s is up to 5 ulp off in float32 near 0, 24 ulp beyond 2, and 495 ulp in\n'
        "    float64 beyond 80 (jax 0.10, measured against mpmath). Below |x| = 1 its Taylor series to x^19 (the\n"
        "    first term left out is below float64's rounding there), beyond it (e - 1/e) / 2 with e^|x| as\n"
        "    (e^(|x|/2))^2: no cancellation (e^-|x| < 0.37), and no overflow before sinh's own.\"\"\"\n"
        "    near = jnp.abs(x) < 1\n"
        "    s = x * x\n"
        f"    series = {_SINH_SERIES}\n"
        "    half = jnp.exp(jnp.abs(jnp.where(near, 1, x)) / 2)\n"
        "    return jnp.where(near, x + x * (s * series), jnp.sign(x) * (half * (half / 2) - 0.5 / (half * half)))\n"
    ),
    "_exp_of_square": exp_of_square_helper(
        module="jnp", how="lax.reduce_precision (XLA would fold Veltkamp's a - (a - b) to b)",
        exact="jax.lax.optimization_barrier",
        widen=("narrow = jnp.result_type(u, plus, divisor)\n"
               "    wide = jnp.promote_types(narrow, jnp.float32)  # 16-bit: the halves of its square would overflow\n"
               "    u, plus = jnp.asarray(u, wide), jnp.asarray(plus, wide)\n"
               "    if divided:\n"
               "        divisor = jnp.asarray(divisor, wide)"),
        narrow="{}.astype(narrow)",
        clamp="jnp.clip(u, -bound, bound)", bits="jnp.finfo(wide).nmant + 1",
        split=("        high = jax.lax.reduce_precision(a, exponent_bits=jnp.finfo(a.dtype).nexp, mantissa_bits=half - 1)\n"
               "        return high, a - high\n")),
    "_softplus": (
        "def _softplus(x):\n"
        '    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): stable for every finite x."""\n'
        "    return jnp.clip(x, 0, None) + _log1p(jnp.exp(-jnp.abs(x)))\n"
    ),
    "_class_sum": (
        "def _class_sum(values, num_classes):\n"
        '    """The sum over the classes of per-class weights (num_classes times a scalar)."""\n'
        "    return values * num_classes if jnp.ndim(values) == 0 else jnp.sum(values)\n"
    ),
    "_clamped_log": (
        "def _clamped_log(u, floor):\n"
        '    """max(log u, floor): log 0 = -inf is clamped like any value below the floor."""\n'
        "    return jnp.clip(jnp.log(u), floor, None)\n"
    ),
    "_clamped_log1p": (
        "def _clamped_log1p(u, floor):\n"
        '    """max(log(1 + u), floor)."""\n'
        "    return jnp.clip(_log1p(u), floor, None)\n"
    ),
    "_quotient_at_zero": (
        "def _quotient_at_zero(n, x, limit, slope):\n"
        '    """n / x, and limit + slope * x where |x| < eps / 8 in x\'s dtype (symdl.functions.quotient_at_zero):\n'
        '    the value and, for a second derivative, the slope at 0. x is replaced by 1 there before dividing:\n'
        '    no 0 / 0, whose NaN the VJP of the division would carry."""\n'
        "    near = jnp.abs(x) < jnp.finfo(x.dtype).eps / 8\n"
        "    return jnp.where(near, limit + slope * x, n / jnp.where(near, 1, x))\n"
    ),
    **SCALAR_HELPERS,
}

JAX_NAMES = FrameworkNames(
    module="jnp",
    functions={
        "erf": "jax.scipy.special.erf", "erfc": "jax.scipy.special.erfc", "sigmoid": "jax.nn.sigmoid",
        "softplus": "_softplus", "xlogy": "jax.scipy.special.xlogy", "normal_cdf": "jax.scipy.special.ndtr",
        "clamped_log": "_clamped_log", "clamped_log1p": "_clamped_log1p", "asinh": "jnp.arcsinh", "atan": "jnp.arctan",
        "quotient_at_zero": "_quotient_at_zero", "log1p": "_log1p", "hypot": "jnp.hypot", "sinh": "_sinh",
        "exp_of_square": "_exp_of_square",
    },
    clamp="jnp.clip({x}, {low}, {high})",
    reduce_sum="jnp.sum({x}, axis={axis}, keepdims=True)",
    reduce_max="jnp.max({x}, axis={axis}, keepdims=True)",
    helpers=JAX_HELPERS,
)


class JaxPrinter(FrameworkPrinter):
    """Prints one expression of an exported op as JAX code."""

    table = JAX_NAMES

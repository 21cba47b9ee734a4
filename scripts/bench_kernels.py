#!/usr/bin/env python
"""Time symdl's generated NumPy kernels against the best hand-written NumPy.

What is compared
    For every op in :data:`CASES` (every activation and the main losses) and
    for float64 and float32, ``symdl.kernels.<op>`` (forward) and
    ``symdl.kernels.<op>_vjp`` (gradients) against the reference of the same
    name in this file. The references are written the way a careful person
    would write them by hand: numerically stable over the whole float range
    (no overflow, no NaN, no warning at +-1e30 or 1e4-apart logits),
    ``exp`` evaluated once, in-place updates and ``out=`` to avoid temporaries,
    masks multiplied instead of ``np.where``/``np.select``, no
    ``np.logaddexp``, and float32 kept float32 (NumPy 2 / NEP 50: only Python
    scalars are weak, so every constant here is a Python float). Each
    reference has PyTorch's semantics (torch.nn.functional names, defaults,
    and PyTorch's subgradient at kinks), i.e. exactly the contract the symdl
    kernel must meet, so a ratio compares equal work at equal accuracy.
    Where an intermediate overflows to an infinity that is itself the exact
    answer (-2|x| -> -inf before exp; log 0 -> -inf before the clamp at -100),
    that one floating-point flag is silenced locally instead of paying for a
    clipping pass.

Sizes
    1e6 elements for elementwise ops and losses, (1000, 1000) for the softmax
    family (along the last axis), (100000, 10) logits for cross_entropy;
    ``--quick`` divides them by 10 for a smoke test.

Method
    Inputs are built once per op and dtype with a fixed seed (activations
    ~ N(0, 3); probabilities in (0.01, 0.99); targets of binary_cross_entropy
    in [0, 1]). symdl and the reference are first checked against each other
    (a mismatch is reported in the table instead of a ratio, and that op is not
    timed). Then, for ``--repeats`` rounds, each round calls symdl forward,
    reference forward, symdl vjp and reference vjp once each, timed with
    ``time.perf_counter`` and with the garbage collector off; symdl runs first
    in half of the rounds, in a shuffled order (seeded), so neither always runs
    on a warm cache. Before every timed call, glibc's ``malloc_trim(0)`` returns
    freed heap memory to the system, so each call pays for the pages of its own
    fresh arrays whatever the call before it freed (without it, the same kernel
    measured 1.4x apart depending on its neighbour; times are therefore those of
    a cold allocator). The table shows medians, ratio = symdl / reference (below 1: symdl
    is faster), then the geometric mean of all ratios and the largest one.
    Targets: geometric mean <= 1.0 and no ratio above 1.25.

The vjp of a loss returns one gradient per input, None where symdl returns
None (the reference computes exactly the gradients symdl returns, so both do
the same work).

Usage::

    python scripts/bench_kernels.py [--repeats 15] [--ops relu,gelu,...]
                                    [--dtypes float64,float32] [--quick]
                                    [--markdown docs/benchmarks.md] [--check] [--result]

``--result`` times, instead, the forward then the VJP given the forward's output
(``name_vjp(g, x, result=y)``) against the reference forward then a hand-written VJP
reusing its output (:data:`RESULT_VJPS`), for the ops that take ``result=``, and
GELU's float32 forward + backward (its VJP given ``result=``) beside PyTorch's (1 thread) when torch is
installed, and by CPU time against symdl's VJP from the input.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import random
import statistics
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy  # type: ignore[import-untyped]
from numpy.typing import NDArray
from scipy import special

from timing import write_table  # scripts/timing.py, next to this file

Array = NDArray[Any]
Upstream = Array | float
Grads = tuple[Array | None, ...]
Inputs = tuple[Array, ...]
Forward = Callable[..., Any]
Vjp = Callable[..., Grads]

# --------------------------------------------------------------------------
# Constants: Python floats, so that they never promote float32 (NEP 50).
# --------------------------------------------------------------------------
INF = math.inf
LN2 = math.log(2.0)
SQRT1_2 = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
#: PyTorch's binary_cross_entropy clamps each log at -100 ...
BCE_LOG_FLOOR = -100.0
#: ... and its backward divides by max(p (1 - p), 1e-12).
BCE_EPS = 1e-12
#: Rows at most this wide are reduced column by column (np.max(axis=1) is
#: slow on narrow rows); wider rows use NumPy's own reduction.
NARROW_ROW = 32
#: Rows per block in the column-by-column reduction (keeps a block in L2).
ROW_BLOCK = 8192
REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------
def _relu(x: Array) -> Array:
    """max(x, 0). np.clip with an infinite bound is ~2x faster than np.maximum(x, 0.0) here."""
    return np.clip(x, 0.0, INF)


def _negpart(x: Array) -> Array:
    """min(x, 0), as a new array."""
    return np.clip(x, -INF, 0.0)


def _exp_neg_abs(x: Array) -> Array:
    """exp(-|x|) in (0, 1]: the one exponential every sigmoid-like op needs."""
    e = np.abs(x)
    np.negative(e, out=e)
    return np.exp(e, out=e)


def _exp_neg_twice(a: Array) -> Array:
    """exp(-2 a) for a >= 0, in place. -2 a may overflow to -inf for huge a; exp(-inf) = 0 is the
    exact answer, so that overflow alone is silenced (cheaper than a clipping pass)."""
    with np.errstate(over="ignore"):
        a *= -2.0
    return np.exp(a, out=a)


def _sigmoid_of(e: Array, positive: Array) -> Array:
    """sigmoid(z) from e = exp(-|z|) and the mask z >= 0, overwriting e.

    sigmoid(z) = n / (1 + e) with n = 1 where z >= 0 and n = e where z < 0;
    n = max(e, mask) since e <= 1 (exact, NaN-propagating).
    """
    d = e + 1.0
    np.maximum(e, positive, out=e)
    e /= d
    return e


def _sigmoid(x: Array) -> Array:
    return _sigmoid_of(_exp_neg_abs(x), x >= 0)


def _saturates(threshold: float, dtype: np.dtype[Any]) -> bool:
    """Whether softplus(z) == z and sigmoid(z) == 1 in ``dtype`` for every z > threshold.

    Holds when exp(-threshold) < eps / 4: then log1p(exp(-z)) is below half an
    ulp of z and 1 / (1 + exp(-z)) rounds to 1. The softplus threshold masks
    are then no-ops and are skipped (float32 with the default threshold 20).
    """
    return threshold >= 1.0 and math.exp(-threshold) < float(np.finfo(dtype).eps) / 4.0


def _mask_mul(a: Array, mask: Array) -> Array:
    """a * mask (bool), as a new array: ~1 ms per 1e6 against ~5 ms for np.where."""
    return np.multiply(a, mask)


def _rowmax(x: Array) -> Array:
    """Maximum along the last axis of a 2-D array, shape (rows,)."""
    rows, width = x.shape
    if width > NARROW_ROW:
        widest: Array = x.max(axis=1)
        return widest
    out = np.empty(rows, dtype=x.dtype)
    for start in range(0, rows, ROW_BLOCK):
        block = x[start : start + ROW_BLOCK]
        acc = out[start : start + ROW_BLOCK]
        np.copyto(acc, block[:, 0])
        for j in range(1, width):
            np.maximum(acc, block[:, j], out=acc)
    return out


def _rowsum(x: Array) -> Array:
    """Sum along the last axis of a 2-D array (a matrix-vector product: 5x np.sum(axis=1) on narrow rows)."""
    return x @ np.ones(x.shape[1], dtype=x.dtype)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(values: Array, reduction: str, count: int | None = None) -> Any:
    """Apply a loss reduction to elementwise values (summed pairwise by NumPy)."""
    _check_reduction(reduction)
    if reduction == "none":
        return values
    total = values.sum()
    return total / (values.size if count is None else count) if reduction == "mean" else total


def _grad_scale(g: Upstream, reduction: str, count: int, factor: float = 1.0) -> Any:
    """What each elementwise loss derivative is multiplied by: g / count ('mean'), g ('sum') or the g array."""
    _check_reduction(reduction)
    if reduction == "none":
        return np.multiply(g, factor) if factor != 1.0 else g
    c = factor * float(g)  # a Python float: stays weak against float32
    return c / count if reduction == "mean" else c


def _negated(d: Array, wanted: bool) -> Array | None:
    return np.negative(d) if wanted else None


def _unary(vjp: Callable[..., Array]) -> Vjp:
    """Adapt a one-input vjp ``(g, x, **params) -> array`` to the tuple convention."""

    def wrapped(g: Array, x: Array, *, need: Sequence[bool] = (True,), **params: Any) -> Grads:
        return (vjp(g, x, **params),)

    wrapped.__name__ = vjp.__name__
    wrapped.__doc__ = vjp.__doc__
    return wrapped


# --------------------------------------------------------------------------
# Activations (forward, vjp w.r.t. the input)
# --------------------------------------------------------------------------
def relu(x: Array) -> Array:
    return _relu(x)


def relu_vjp(g: Array, x: Array) -> Array:
    return _mask_mul(g, x > 0)  # relu'(0) = 0


def _open_interval(x: Array, low: float, high: float) -> Array:
    """The mask low < x < high (hardtanh_backward is 0 at both ends)."""
    m = np.greater(x, low)
    m &= np.less(x, high)
    return m


def relu6(x: Array) -> Array:
    return np.clip(x, 0.0, 6.0)


def relu6_vjp(g: Array, x: Array) -> Array:
    return _mask_mul(g, _open_interval(x, 0.0, 6.0))


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    if abs(negative_slope) <= 1.0:  # x if x > 0 else s x is max(x, s x) here (exact, cannot overflow)
        s = np.multiply(x, negative_slope)
        return np.maximum(s, x, out=s)
    s = _negpart(x)  # s x only where x <= 0: no overflow from the branch not taken
    s *= negative_slope
    s += _relu(x)
    return s


def leaky_relu_vjp(g: Array, x: Array, negative_slope: float = 0.01) -> Array:
    positive = x > 0
    if 0.0 <= negative_slope <= 1.0:  # [x > 0] clipped below at the slope: 1 or slope, exactly
        factor = positive.astype(x.dtype)
        np.clip(factor, negative_slope, INF, out=factor)
        factor *= g
        return factor
    return np.where(positive, g, np.multiply(g, negative_slope))


def elu(x: Array, alpha: float = 1.0) -> Array:
    e = _negpart(x)
    np.expm1(e, out=e)
    if alpha != 1.0:
        e *= alpha
    if alpha <= 1.0:  # alpha*expm1(x) >= x for x <= 0 and == 0 < x for x > 0: the max picks the branch
        return np.maximum(e, x, out=e)
    e += _relu(x)
    return e


def _one_where_positive(factor: Array, x: Array, below_one: bool) -> Array:
    """Set factor to 1 where x > 0, in place, without np.where (exact)."""
    positive = x > 0
    if below_one:  # factor <= 1 elsewhere: max(factor, [x > 0])
        return np.maximum(factor, positive, out=factor)
    factor *= ~positive
    factor += positive
    return factor


def elu_vjp(g: Array, x: Array, alpha: float = 1.0) -> Array:
    f = _negpart(x)
    np.exp(f, out=f)  # exp(min(x, 0)) is already 1 where x > 0
    if alpha != 1.0:
        f *= alpha
        _one_where_positive(f, x, below_one=alpha < 1.0)
    f *= g
    return f


def selu(x: Array) -> Array:
    e = _negpart(x)
    np.expm1(e, out=e)
    e *= SELU_SCALE * SELU_ALPHA
    r = _relu(x)
    r *= SELU_SCALE
    r += e
    return r


def selu_vjp(g: Array, x: Array) -> Array:
    f = _negpart(x)
    np.exp(f, out=f)
    f *= SELU_ALPHA
    _one_where_positive(f, x, below_one=False)
    f *= SELU_SCALE
    f *= g
    return f


def _celu_arg(x: Array, alpha: float) -> Array:
    """min(x, 0) / alpha, clipped at -1000 (where exp and expm1 have long saturated): x / alpha cannot overflow."""
    e = np.clip(x, -1000.0 * alpha, 0.0) if alpha < 1.0 else _negpart(x)
    if alpha != 1.0:
        e /= alpha
    return e


def celu(x: Array, alpha: float = 1.0) -> Array:
    e = _celu_arg(x, alpha)
    np.expm1(e, out=e)
    if alpha != 1.0:
        e *= alpha
    # alpha*expm1(x/alpha) >= x for x <= 0 for every alpha > 0: the max picks the branch.
    return np.maximum(e, x, out=e)


def celu_vjp(g: Array, x: Array, alpha: float = 1.0) -> Array:
    f = _celu_arg(x, alpha)
    np.exp(f, out=f)  # 1 where x > 0
    f *= g
    return f


def _gelu_erf(x: Array) -> Array:
    y = np.multiply(x, -SQRT1_2)
    special.erfc(y, out=y)  # erfc(-x/sqrt2): no cancellation for x << 0
    y *= 0.5  # Phi(x) <= 1 before the product: x * 2 could overflow
    y *= x
    return y


def _gelu_erf_vjp(g: Array, x: Array) -> Array:
    cdf = np.multiply(x, -SQRT1_2)
    special.erfc(cdf, out=cdf)
    cdf *= 0.5
    p = np.clip(x, -40.0, 40.0)  # exp(-800) is 0 already; keeps x*x finite
    np.square(p, out=p)
    p *= -0.5
    np.exp(p, out=p)
    p *= x
    p *= INV_SQRT_2PI
    p += cdf
    p *= g
    return p


def _gelu_tanh_inner(x: Array) -> tuple[Array, Array]:
    """(u, e) with u = clip(x, -30, 30) and e = exp(-2 |v|), v = K (u + C u^3): beyond |x| = 30,
    e underflows to 0 (sigmoid(2 v) is 0 or 1 in every format) and the cube cannot overflow.

    0.5 (1 + tanh v) = sigmoid(2 v) is evaluated from e (:func:`_sigmoid_of`): 1 + tanh(v)
    cancels for x < 0 (all digits lost by x = -8), and v has the sign of x."""
    u = np.clip(x, -30.0, 30.0)
    e = np.square(u)
    e *= GELU_C
    e += 1.0
    e *= u
    np.abs(e, out=e)
    e *= -2.0 * GELU_K
    np.exp(e, out=e)
    return u, e


def _gelu_tanh(x: Array) -> Array:
    _, e = _gelu_tanh_inner(x)
    s = _sigmoid_of(e, x >= 0)
    s *= x
    return s


def _gelu_tanh_vjp(g: Array, x: Array) -> Array:
    # sigmoid(2 v) + 2 x sigmoid'(2 v) v'(x) = r (max(e, [x >= 0]) + x e r 2 K (1 + 3 C u^2)), r = 1 / (1 + e)
    u, e = _gelu_tanh_inner(x)
    r = np.add(e, 1.0)
    np.divide(1.0, r, out=r)
    np.square(u, out=u)
    u *= 6.0 * GELU_K * GELU_C
    u += 2.0 * GELU_K  # 2 K (1 + 3 C u^2)
    u *= x
    u *= e
    u *= r
    np.maximum(e, x >= 0, out=e)
    u += e
    u *= r
    u *= g
    return u


_GELU: dict[str, tuple[Callable[[Array], Array], Callable[[Array, Array], Array]]] = {
    "none": (_gelu_erf, _gelu_erf_vjp),
    "tanh": (_gelu_tanh, _gelu_tanh_vjp),
}


def _gelu_variant(approximate: str) -> tuple[Callable[[Array], Array], Callable[[Array, Array], Array]]:
    if approximate not in _GELU:
        raise ValueError(f"approximate must be one of {tuple(_GELU)}, got {approximate!r}")
    return _GELU[approximate]


def gelu(x: Array, approximate: str = "none") -> Array:
    return _gelu_variant(approximate)[0](x)


def gelu_vjp(g: Array, x: Array, approximate: str = "none") -> Array:
    return _gelu_variant(approximate)[1](g, x)


def silu(x: Array) -> Array:
    s = _sigmoid(x)
    s *= x
    return s


def silu_vjp(g: Array, x: Array) -> Array:
    # s (1 + x (1 - s)) = r (n + x e r) with e = exp(-|x|), r = 1 / (1 + e), n = 1 (x >= 0)
    # or e (x < 0): s = n r and s (1 - s) = e r^2, so 1 - s is never formed by cancellation.
    e = _exp_neg_abs(x)
    r = e + 1.0
    np.reciprocal(r, out=r)
    t = np.multiply(e, r)
    t *= x
    np.maximum(e, x >= 0, out=e)  # n
    t += e
    t *= r
    t *= g
    return t


def _mish_high(dtype: np.dtype[Any]) -> float:
    """Clip point above which mish(x) == x and mish'(x) == 1 in ``dtype`` (and nothing overflows)."""
    return 20.0 if np.dtype(dtype).itemsize <= 4 else 40.0


def mish(x: Array) -> Array:
    # tanh(softplus(x)) = n / (n + 2) with n = w (w + 2), w = exp(x): one exp.
    w = np.clip(x, -INF, _mish_high(x.dtype))
    np.exp(w, out=w)
    n = w + 2.0
    n *= w
    np.add(n, 2.0, out=w)
    n /= w
    n *= x
    return n


def mish_vjp(g: Array, x: Array) -> Array:
    # t + x sigmoid(x) (1 - t^2) = w ((w + 2) D + 4 x (1 + w)) / D^2, D = w (w + 2) + 2
    u = np.clip(x, -1000.0, _mish_high(x.dtype))  # exp(-1000) is 0: 4 u cannot overflow
    w = np.exp(u)
    b = w + 1.0
    b *= u
    b *= 4.0
    a: Array = w + 2.0
    np.multiply(a, w, out=u)
    u += 2.0  # D
    a *= u
    a += b
    a *= w
    np.square(u, out=u)
    a /= u
    a *= g
    return a


def _softplus_arg(x: Array, beta: float) -> Array:
    """beta x; for beta > 1, x is first clipped to +-1000/beta (exp(-1000) is 0), so beta x cannot overflow."""
    if beta == 1.0:
        return x
    if beta < 1.0:
        return np.multiply(x, beta)
    z = np.clip(x, -1000.0 / beta, 1000.0 / beta)
    z *= beta
    return z


def softplus(x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    z = _softplus_arg(x, beta)
    lg = _exp_neg_abs(z)
    np.log1p(lg, out=lg)
    if beta != 1.0:
        lg /= beta
    if threshold < 0.0:  # reverts to x also for negative x: needs the general form
        lg += _relu(x)
        return np.where(z > threshold, x, lg)
    if not _saturates(threshold, x.dtype):
        lg *= z <= threshold  # PyTorch returns exactly x where beta x > threshold
    lg += _relu(x)
    return lg


def softplus_vjp(g: Array, x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    z = _softplus_arg(x, beta)
    s = _sigmoid_of(_exp_neg_abs(z), z >= 0)
    if not _saturates(threshold, x.dtype):
        np.maximum(s, z > threshold, out=s)  # 1 where beta x > threshold
    s *= g
    return s


def softsign(x: Array) -> Array:
    d = np.abs(x)
    d += 1.0
    return np.divide(x, d, out=d)


def softsign_vjp(g: Array, x: Array) -> Array:
    r = np.abs(x)
    r += 1.0
    np.reciprocal(r, out=r)
    r *= r  # 1/(1+|x|)^2 underflows instead of (1+|x|)^2 overflowing
    r *= g
    return r


def sigmoid(x: Array) -> Array:
    return _sigmoid(x)


def sigmoid_vjp(g: Array, x: Array) -> Array:
    # s (1 - s) = e / (1 + e)^2 with e = exp(-|x|): symmetric, no cancellation
    e = _exp_neg_abs(x)
    d = e + 1.0
    d *= d
    e /= d
    e *= g
    return e


def logsigmoid(x: Array) -> Array:
    lg = _exp_neg_abs(x)
    np.log1p(lg, out=lg)
    y = _negpart(x)
    y -= lg
    return y


def logsigmoid_vjp(g: Array, x: Array) -> Array:
    s = _sigmoid_of(_exp_neg_abs(x), x <= 0)  # sigmoid(-x)
    s *= g
    return s


def tanh(x: Array) -> Array:
    return np.tanh(x)


def tanh_vjp(g: Array, x: Array) -> Array:
    # 1 - tanh(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|): accurate where tanh(x) rounds to +-1
    e = _exp_neg_twice(np.abs(x))
    d = e + 1.0
    np.divide(2.0, d, out=d)
    np.square(d, out=d)
    d *= e
    d *= g
    return d


def hardtanh(x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return np.clip(x, min_val, max_val)


def hardtanh_vjp(g: Array, x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return _mask_mul(g, _open_interval(x, min_val, max_val))


def hardsigmoid(x: Array) -> Array:
    y = np.add(x, 3.0)
    np.clip(y, 0.0, 6.0, out=y)
    y /= 6.0  # relu6(x + 3) / 6, rounded as PyTorch does
    return y


def hardsigmoid_vjp(g: Array, x: Array) -> Array:
    d = _mask_mul(g, _open_interval(x, -3.0, 3.0))
    d /= 6.0
    return d


def hardswish(x: Array) -> Array:
    y = hardsigmoid(x)  # in [0, 1] before the product (x * 6 could overflow); exactly x for x >= 3
    y *= x
    return y


def hardswish_vjp(g: Array, x: Array) -> Array:
    # PyTorch's hardswish_backward: 0 for x <= -3, x/3 + 1/2 on (-3, 3), 1 for x >= 3
    # (checked against torch 2.13: 0 at -3 and 1 at 3, the open interval).
    f = np.divide(x, 3.0)
    f += 0.5
    a = np.abs(x)
    f *= a < 3.0
    f += x >= 3.0
    f *= g
    return f


def tanhshrink(x: Array) -> Array:
    t = np.tanh(x)
    return np.subtract(x, t, out=t)


def tanhshrink_vjp(g: Array, x: Array) -> Array:
    t = np.tanh(x)
    t *= t
    t *= g
    return t


def softshrink(x: Array, lambd: float = 0.5) -> Array:
    c: Array = np.clip(x, -lambd, lambd)
    return np.subtract(x, c, out=c)  # x - lambd, x + lambd, or exactly 0


def _outside(x: Array, lambd: float) -> Array:
    """The mask |x| > lambd (shrink backward is 0 where |x| <= lambd)."""
    a = np.abs(x)
    return np.greater(a, lambd)


def softshrink_vjp(g: Array, x: Array, lambd: float = 0.5) -> Array:
    return _mask_mul(g, _outside(x, lambd))


def hardshrink(x: Array, lambd: float = 0.5) -> Array:
    return _mask_mul(x, _outside(x, lambd))


def hardshrink_vjp(g: Array, x: Array, lambd: float = 0.5) -> Array:
    return _mask_mul(g, _outside(x, lambd))


# --------------------------------------------------------------------------
# Softmax family (along ``dim``)
# --------------------------------------------------------------------------
def _softmax_along(z: Array, dim: int) -> Array:
    """softmax of the shifted values z (max already 0 along dim), overwriting z."""
    np.exp(z, out=z)
    s = z.sum(axis=dim, keepdims=True)
    np.reciprocal(s, out=s)
    z *= s
    return z


def softmax(x: Array, dim: int = -1) -> Array:
    z = np.subtract(x, x.max(axis=dim, keepdims=True))
    return _softmax_along(z, dim)


def _softmax_vjp_of(y: Array, g: Array, dim: int) -> Array:
    """y * (g - sum(g y)), overwriting y."""
    gy = np.multiply(g, y)
    y *= gy.sum(axis=dim, keepdims=True)
    np.subtract(gy, y, out=y)
    return y


def softmax_vjp(g: Array, x: Array, dim: int = -1) -> Array:
    return _softmax_vjp_of(softmax(x, dim), g, dim)


def log_softmax(x: Array, dim: int = -1) -> Array:
    z: Array = np.subtract(x, x.max(axis=dim, keepdims=True))
    e = np.exp(z)
    s = e.sum(axis=dim, keepdims=True)
    np.log(s, out=s)
    z -= s
    return z


def log_softmax_vjp(g: Array, x: Array, dim: int = -1) -> Array:
    # g - softmax(x) sum(g)
    y = softmax(x, dim)
    y *= g.sum(axis=dim, keepdims=True)
    return np.subtract(g, y, out=y)


def softmin(x: Array, dim: int = -1) -> Array:
    z = np.subtract(x.min(axis=dim, keepdims=True), x)  # -x - max(-x)
    return _softmax_along(z, dim)


def softmin_vjp(g: Array, x: Array, dim: int = -1) -> Array:
    # -y (g - sum(g y))
    y = _softmax_vjp_of(softmin(x, dim), g, dim)
    return np.negative(y, out=y)


# --------------------------------------------------------------------------
# Losses (forward, vjp -> one gradient per input; ``need`` says which)
# --------------------------------------------------------------------------
def mse_loss(input: Array, target: Array, reduction: str = "mean") -> Any:
    d = np.subtract(input, target)
    d *= d
    return _reduce(d, reduction)


def mse_loss_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    d = np.subtract(input, target)
    d *= _grad_scale(g, reduction, d.size, 2.0)
    return d, _negated(d, need[1])


def l1_loss(input: Array, target: Array, reduction: str = "mean") -> Any:
    d = np.subtract(input, target)
    np.abs(d, out=d)
    return _reduce(d, reduction)


def l1_loss_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    d = np.subtract(input, target)
    np.sign(d, out=d)  # sign(0) = 0, as PyTorch
    d *= _grad_scale(g, reduction, d.size)
    return d, _negated(d, need[1])


def _quadratic_then_linear(input: Array, target: Array, width: float) -> Array:
    """m (2|d| - m) with m = min(|d|, width): d^2 inside, width (2|d| - width) outside."""
    a = np.subtract(input, target)
    np.abs(a, out=a)
    m = np.clip(a, 0.0, width)
    a *= 2.0
    a -= m
    a *= m
    return a


def _scaled(values: Array, reduction: str, factor: float) -> Any:
    if reduction == "none":
        values *= factor
        return values
    return _reduce(values, reduction) * factor


def smooth_l1_loss(input: Array, target: Array, reduction: str = "mean", beta: float = 1.0) -> Any:
    if beta == 0.0:  # PyTorch: plain L1
        return l1_loss(input, target, reduction)
    return _scaled(_quadratic_then_linear(input, target, beta), reduction, 0.5 / beta)


def _clipped_difference(
    g: Upstream,
    input: Array,
    target: Array,
    need: Sequence[bool],
    reduction: str,
    width: float,
    factor: float,
) -> Grads:
    d = np.subtract(input, target)
    np.clip(d, -width, width, out=d)
    d *= _grad_scale(g, reduction, d.size, factor)
    return d, _negated(d, need[1])


def smooth_l1_loss_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
    beta: float = 1.0,
) -> Grads:
    if beta == 0.0:
        return l1_loss_vjp(g, input, target, need=need, reduction=reduction)
    return _clipped_difference(g, input, target, need, reduction, beta, 1.0 / beta)


def huber_loss(input: Array, target: Array, reduction: str = "mean", delta: float = 1.0) -> Any:
    return _scaled(_quadratic_then_linear(input, target, delta), reduction, 0.5)


def huber_loss_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
    delta: float = 1.0,
) -> Grads:
    return _clipped_difference(g, input, target, need, reduction, delta, 1.0)


def _clamped_logs(p: Array) -> tuple[Array, Array]:
    """(max(log p, -100), max(log1p(-p), -100)). log 0 = -inf is clamped like any other
    value below -100, so only that divide-by-zero is silenced (no extra pass)."""
    with np.errstate(divide="ignore"):
        lp = np.log(p)
        lq = np.negative(p)
        np.log1p(lq, out=lq)
    np.clip(lp, BCE_LOG_FLOOR, INF, out=lp)
    np.clip(lq, BCE_LOG_FLOOR, INF, out=lq)
    return lp, lq


def binary_cross_entropy(input: Array, target: Array, reduction: str = "mean") -> Any:
    # y log p + (1 - y) log(1 - p): both terms <= 0, so the sum cannot cancel
    # (y (log p - log(1 - p)) + log(1 - p), one product fewer, loses up to 20
    # float32 ulp where the loss is small; symdl's kernel is held to 4).
    lp, lq = _clamped_logs(input)
    lp *= target
    q = np.subtract(1.0, target, dtype=lq.dtype)
    lq *= q
    lp += lq
    if reduction == "none":
        return np.negative(lp, out=lp)
    return -_reduce(lp, reduction)


def binary_cross_entropy_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    c = _grad_scale(g, reduction, input.size)
    d = np.subtract(input, target)
    q = np.subtract(1.0, input)
    q *= input
    np.clip(q, BCE_EPS, INF, out=q)
    d /= q
    d *= c
    dt = None
    if need[1]:  # d/dy = log(1 - p) - log p, clamped as in the forward
        lp, dt = _clamped_logs(input)
        dt -= lp
        dt *= c
    return d, dt


def binary_cross_entropy_with_logits(input: Array, target: Array, reduction: str = "mean") -> Any:
    # (1 - y) x + softplus(-x) = log1p(exp(-|x|)) + x ([x > 0] - y)
    lg = _exp_neg_abs(input)
    np.log1p(lg, out=lg)
    t = np.subtract(input > 0, target, dtype=input.dtype)
    t *= input
    lg += t
    return _reduce(lg, reduction)


def binary_cross_entropy_with_logits_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    c = _grad_scale(g, reduction, input.size)
    d = _sigmoid(input)
    d -= target
    d *= c
    dt = None
    if need[1]:  # d/dy = -x
        dt = np.multiply(input, c)
        np.negative(dt, out=dt)
    return d, dt


def _valid_targets(target: Array, ignore_index: int) -> tuple[Array, Array | None, int]:
    """(indices safe to gather with, mask of counted rows or None when all count, count)."""
    valid = target != ignore_index
    if valid.all():
        return target, None, int(target.size)
    return np.where(valid, target, 0), valid, int(valid.sum())


def _picked(x: Array, index: Array) -> Array:
    """x[i, index[i]] for a 2-D C-contiguous x, by flat indexing."""
    rows, width = x.shape
    picked: Array = x.reshape(-1)[np.arange(rows) * width + index]
    return picked


def cross_entropy(input: Array, target: Array, reduction: str = "mean", ignore_index: int = -100) -> Any:
    _check_reduction(reduction)
    m = _rowmax(input)
    e = np.subtract(input, m[:, None])
    np.exp(e, out=e)
    lse = _rowsum(e)
    np.log(lse, out=lse)
    lse += m
    index, valid, count = _valid_targets(target, ignore_index)
    lse -= _picked(input, index)
    if valid is not None:
        lse *= valid
    return _reduce(lse, reduction, count)


def cross_entropy_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, False),
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Grads:
    # upstream * (softmax(x) - onehot(t)) per row; class indices get no gradient
    _check_reduction(reduction)
    rows, width = input.shape
    index, valid, count = _valid_targets(target, ignore_index)
    per_row = _grad_scale(g, reduction, count)  # a float, or the (rows,) upstream for 'none'
    if valid is not None:
        per_row = np.multiply(per_row, valid, dtype=input.dtype)
    m = _rowmax(input)
    e = np.subtract(input, m[:, None])
    np.exp(e, out=e)
    s = _rowsum(e)
    np.divide(per_row, s, out=s)
    e *= s[:, None]
    e.reshape(-1)[np.arange(rows) * width + index] -= per_row
    return e, None


def kl_div(input: Array, target: Array, reduction: str = "mean", log_target: bool = False) -> Any:
    if log_target:  # exp(t) (t - x)
        d = np.subtract(target, input)
        d *= np.exp(target)
        return _reduce(d, reduction)
    # xlogy(t, t) - t x = t (log t - x), with 0 log 0 = 0: log of t clamped to the
    # smallest subnormal (unchanged for every t > 0), then multiplied by t = 0.
    lt = np.clip(target, float(np.finfo(target.dtype).smallest_subnormal), INF)
    np.log(lt, out=lt)
    lt -= input
    lt *= target
    return _reduce(lt, reduction)


def kl_div_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
    log_target: bool = False,
) -> Grads:
    c = _grad_scale(g, reduction, input.size)
    w = np.exp(target) if log_target else None
    dx = np.multiply(target if w is None else w, c)
    np.negative(dx, out=dx)  # d/dx = -t (or -exp(t))
    dt = None
    if need[1]:  # d/dt = log t + 1 - x (or exp(t) (t - x + 1))
        if w is None:
            with np.errstate(divide="ignore"):  # -inf at t = 0, the limit of log t + 1 - x (PyTorch: 0/0 = NaN)
                dt = np.log(target)
        else:
            dt = np.array(target, copy=True)
        dt -= input
        dt += 1.0
        if w is not None:
            dt *= w
        dt *= c
    return dx, dt


def soft_margin_loss(input: Array, target: Array, reduction: str = "mean") -> Any:
    # softplus(-y x) = log1p(exp(-|z|)) - min(z, 0), z = y x
    z = np.multiply(input, target)
    lg = _exp_neg_abs(z)
    np.log1p(lg, out=lg)
    np.clip(z, -INF, 0.0, out=z)
    lg -= z
    return _reduce(lg, reduction)


def soft_margin_loss_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    # d/dx = -y sigmoid(-y x), d/dy = -x sigmoid(-y x)
    c = _grad_scale(g, reduction, input.size, -1.0)
    z = np.multiply(input, target)
    s = _sigmoid_of(_exp_neg_abs(z), z <= 0)
    s *= c
    dx = np.multiply(s, target, out=z)
    dy = np.multiply(s, input, out=s) if need[1] else None
    return dx, dy


def log_cosh(input: Array, target: Array, reduction: str = "mean") -> Any:
    # log cosh d, accurate on both sides of |d| = 3/4 (the catalog's stable form): |d| + log1p(exp(-2|d|)) - log 2
    # above (no overflow), log1p(2 sinh(|d|/2)^2) below (cosh d - 1 without rounding 1 + a small number: the
    # first form subtracts log 2 from about log 2 there); the second from |d| clamped, so it stays finite
    _check_reduction(reduction)
    a = np.subtract(input, target)
    np.abs(a, out=a)
    out = _exp_neg_twice(a.copy())
    np.log1p(out, out=out)
    out += a
    out -= LN2
    small = np.minimum(a, 0.75)
    small *= 0.5
    np.sinh(small, out=small)
    np.square(small, out=small)
    small *= 2
    np.log1p(small, out=small)
    np.copyto(out, small, where=a < 0.75)
    if reduction == "none":
        return out
    return out.sum() / a.size if reduction == "mean" else out.sum()


def log_cosh_vjp(
    g: Upstream,
    input: Array,
    target: Array,
    *,
    need: Sequence[bool] = (True, True),
    reduction: str = "mean",
) -> Grads:
    d = np.subtract(input, target)
    np.tanh(d, out=d)
    d *= _grad_scale(g, reduction, d.size)
    return d, _negated(d, need[1])


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Problem sizes: elementwise length, softmax (rows, cols), cross_entropy (rows, classes)."""

    n: int
    rows: tuple[int, int]
    classes: tuple[int, int]


FULL = Sizes(1_000_000, (1000, 1000), (100_000, 10))
QUICK = Sizes(100_000, (100, 1000), (10_000, 10))
#: The upstream gradient of a reduced ('mean') loss: a Python float, not 1.0 so
#: that no kernel can skip the multiplication.
LOSS_UPSTREAM = 0.75

Builder = Callable[[np.random.Generator, np.dtype[Any], Sizes], tuple[Inputs, Upstream]]


def _normal(rng: np.random.Generator, shape: int | tuple[int, ...], dtype: np.dtype[Any], scale: float = 3.0) -> Array:
    return rng.normal(0.0, scale, shape).astype(dtype)


def _uniform(rng: np.random.Generator, n: int, dtype: np.dtype[Any], low: float, high: float) -> Array:
    return rng.uniform(low, high, n).astype(dtype)


def activation_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    return (_normal(rng, sizes.n, dtype),), _normal(rng, sizes.n, dtype, 1.0)


def row_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    return (_normal(rng, sizes.rows, dtype),), _normal(rng, sizes.rows, dtype, 1.0)


def regression_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    return (_normal(rng, sizes.n, dtype), _normal(rng, sizes.n, dtype)), LOSS_UPSTREAM


def probability_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    """binary_cross_entropy: p in (0.01, 0.99), soft targets in [0, 1]."""
    return (_uniform(rng, sizes.n, dtype, 0.01, 0.99), _uniform(rng, sizes.n, dtype, 0.0, 1.0)), LOSS_UPSTREAM


def logit_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    """binary_cross_entropy_with_logits: logits ~ N(0, 3), soft targets in [0, 1]."""
    return (_normal(rng, sizes.n, dtype), _uniform(rng, sizes.n, dtype, 0.0, 1.0)), LOSS_UPSTREAM


def class_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    """cross_entropy: logits ~ N(0, 3) of shape (rows, classes), int64 class indices."""
    rows, classes = sizes.classes
    return (_normal(rng, sizes.classes, dtype), rng.integers(0, classes, rows, dtype=np.int64)), LOSS_UPSTREAM


def kl_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    """kl_div: input = log q, target = p, both q, p in (0.01, 0.99)."""
    q = np.log(rng.uniform(0.01, 0.99, sizes.n)).astype(dtype)
    return (q, _uniform(rng, sizes.n, dtype, 0.01, 0.99)), LOSS_UPSTREAM


def sign_inputs(rng: np.random.Generator, dtype: np.dtype[Any], sizes: Sizes) -> tuple[Inputs, Upstream]:
    """soft_margin_loss: input ~ N(0, 3), target in {-1, +1}."""
    y = np.where(rng.random(sizes.n) < 0.5, -1.0, 1.0).astype(dtype)
    return (_normal(rng, sizes.n, dtype), y), LOSS_UPSTREAM


# --------------------------------------------------------------------------
# The dispatch table
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One benchmarked row: a symdl kernel name, its references, inputs and parameters."""

    kernel: str
    forward: Forward
    vjp: Vjp
    build: Builder
    params: Mapping[str, Any] = field(default_factory=dict)


def _act(
    kernel: str,
    fwd: Forward,
    vjp: Callable[..., Array],
    build: Builder = activation_inputs,
    **params: Any,
) -> Case:
    return Case(kernel, fwd, _unary(vjp), build, params)


def _loss(kernel: str, fwd: Forward, vjp: Vjp, build: Builder, **params: Any) -> Case:
    return Case(kernel, fwd, vjp, build, {"reduction": "mean", **params})


CASES: dict[str, Case] = {
    "relu": _act("relu", relu, relu_vjp),
    "relu6": _act("relu6", relu6, relu6_vjp),
    "leaky_relu": _act("leaky_relu", leaky_relu, leaky_relu_vjp, negative_slope=0.01),
    "elu": _act("elu", elu, elu_vjp, alpha=1.0),
    "selu": _act("selu", selu, selu_vjp),
    "celu": _act("celu", celu, celu_vjp, alpha=1.0),
    "gelu": _act("gelu", gelu, gelu_vjp, approximate="none"),
    "gelu[tanh]": _act("gelu", gelu, gelu_vjp, approximate="tanh"),
    "silu": _act("silu", silu, silu_vjp),
    "mish": _act("mish", mish, mish_vjp),
    "softplus": _act("softplus", softplus, softplus_vjp, beta=1.0, threshold=20.0),
    "softsign": _act("softsign", softsign, softsign_vjp),
    "sigmoid": _act("sigmoid", sigmoid, sigmoid_vjp),
    "logsigmoid": _act("logsigmoid", logsigmoid, logsigmoid_vjp),
    "tanh": _act("tanh", tanh, tanh_vjp),
    "hardtanh": _act("hardtanh", hardtanh, hardtanh_vjp, min_val=-1.0, max_val=1.0),
    "hardsigmoid": _act("hardsigmoid", hardsigmoid, hardsigmoid_vjp),
    "hardswish": _act("hardswish", hardswish, hardswish_vjp),
    "tanhshrink": _act("tanhshrink", tanhshrink, tanhshrink_vjp),
    "softshrink": _act("softshrink", softshrink, softshrink_vjp, lambd=0.5),
    "hardshrink": _act("hardshrink", hardshrink, hardshrink_vjp, lambd=0.5),
    "softmax": _act("softmax", softmax, softmax_vjp, row_inputs, dim=-1),
    "log_softmax": _act("log_softmax", log_softmax, log_softmax_vjp, row_inputs, dim=-1),
    "softmin": _act("softmin", softmin, softmin_vjp, row_inputs, dim=-1),
    "mse_loss": _loss("mse_loss", mse_loss, mse_loss_vjp, regression_inputs),
    "l1_loss": _loss("l1_loss", l1_loss, l1_loss_vjp, regression_inputs),
    "smooth_l1_loss": _loss("smooth_l1_loss", smooth_l1_loss, smooth_l1_loss_vjp, regression_inputs, beta=1.0),
    "huber_loss": _loss("huber_loss", huber_loss, huber_loss_vjp, regression_inputs, delta=1.0),
    "binary_cross_entropy": _loss("binary_cross_entropy", binary_cross_entropy, binary_cross_entropy_vjp, probability_inputs),
    "binary_cross_entropy_with_logits": _loss(
        "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_vjp, logit_inputs
    ),
    "cross_entropy": _loss("cross_entropy", cross_entropy, cross_entropy_vjp, class_inputs),
    "kl_div": _loss("kl_div", kl_div, kl_div_vjp, kl_inputs),
    "soft_margin_loss": _loss("soft_margin_loss", soft_margin_loss, soft_margin_loss_vjp, sign_inputs),
    "log_cosh": _loss("log_cosh", log_cosh, log_cosh_vjp, regression_inputs),
}

#: Agreement between symdl and the reference: |a - b| <= rtol |b| + atol max|b|.
TOLERANCE: dict[str, tuple[float, float]] = {"float64": (1e-9, 1e-12), "float32": (1e-4, 1e-5)}
DTYPES = ("float64", "float32")
RATIO_GEOMEAN_TARGET = 1.0
RATIO_MAX_TARGET = 1.25


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------
def _disagreement(actual: Any, expected: Any, dtype: str) -> str | None:
    """Why ``actual`` (symdl) does not match ``expected`` (reference), or None."""
    if actual is None or expected is None:
        if actual is None and expected is None:
            return None
        return "symdl returns no gradient" if actual is None else "the reference has no gradient here"
    a, b = np.asarray(actual), np.asarray(expected)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} != {b.dtype}"
    rtol, atol = TOLERANCE[dtype]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = np.abs(b64[np.isfinite(b64)])
    scale = float(finite.max()) if finite.size else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a64 - b64)
        ok = (err <= rtol * np.abs(b64) + atol * scale) | (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    if ok.all():
        return None
    off = err[~ok]
    return f"{off.size} values off (max abs err {np.nanmax(off) if not np.isnan(off).all() else math.nan:.3g}, scale {scale:.3g})"


def _verify(
    case: Case,
    kernels: tuple[Forward, Vjp],
    inputs: Inputs,
    upstream: Upstream,
    dtype: str,
) -> tuple[str | None, tuple[bool, ...]]:
    """Compare symdl with the reference once; returns (problem or None, gradients wanted)."""
    sym_fwd, sym_vjp = kernels
    problem = _disagreement(sym_fwd(*inputs, **case.params), case.forward(*inputs, **case.params), dtype)
    if problem:
        return f"fwd: {problem}", ()
    sym_grads = tuple(sym_vjp(upstream, *inputs, **case.params))
    if len(sym_grads) != len(inputs):
        return f"vjp: {len(sym_grads)} gradients for {len(inputs)} inputs", ()
    need = tuple(grad is not None for grad in sym_grads)
    ref_grads = case.vjp(upstream, *inputs, need=need, **case.params)
    for i, (got, want) in enumerate(zip(sym_grads, ref_grads, strict=True)):
        problem = _disagreement(got, want, dtype)
        if problem:
            return f"vjp[{i}]: {problem}", need
    return None, need


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------
def _release_freed_memory() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)`` (a no-op elsewhere): hands freed heap memory back to the system."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return lambda *_: None


_TRIM = _release_freed_memory()


def _clock(fn: Callable[[], object]) -> float:
    # Every call starts from the same allocator state: without this, a call's fresh arrays were
    # free or page-faulted depending on what the previous call freed (up to 1.5x on one kernel).
    _TRIM(0)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternate(
    pairs: Sequence[tuple[Callable[[], object], Callable[[], object]]],
    repeats: int,
) -> list[tuple[float, float]]:
    """Median milliseconds of (symdl, reference) for each pair, alternating the two."""
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in pairs]
    # symdl first in half the rounds, in a shuffled order per pair: a fixed flip made each side's
    # forward always follow its own vjp of the round before, and so inherit the allocator state that
    # vjp left (1.4x on mish float32 from that alone).
    order = random.Random(repeats)
    firsts = [order.sample([r % 2 == 0 for r in range(repeats)], repeats) for _ in pairs]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for (sym, ref), (ts, tr), first in zip(pairs, samples, firsts, strict=True):
                if first[r]:
                    ts.append(_clock(sym))
                    tr.append(_clock(ref))
                else:
                    tr.append(_clock(ref))
                    ts.append(_clock(sym))
    finally:
        if enabled:
            gc.enable()
    return [(statistics.median(ts) * 1e3, statistics.median(tr) * 1e3) for ts, tr in samples]


@dataclass
class Row:
    """One line of the result table."""

    label: str
    dtype: str
    fwd: tuple[float, float] | None = None
    vjp: tuple[float, float] | None = None
    note: str = ""

    def ratios(self) -> list[tuple[str, float]]:
        return [(kind, t[0] / t[1]) for kind, t in (("fwd", self.fwd), ("vjp", self.vjp)) if t is not None and t[1] > 0]


def run_case(
    label: str,
    case: Case,
    kernels: tuple[Forward, Vjp],
    dtype: str,
    sizes: Sizes,
    repeats: int,
    seed: int,
) -> Row:
    """Build inputs, verify, then time forward and vjp of symdl and the reference."""
    inputs, upstream = case.build(np.random.default_rng(seed), np.dtype(dtype), sizes)
    row = Row(label, dtype)
    try:
        problem, need = _verify(case, kernels, inputs, upstream, dtype)
    except Exception as exc:  # a kernel that raises is reported, not fatal
        row.note = f"error: {type(exc).__name__}: {exc}"
        return row
    if problem:
        row.note = f"MISMATCH {problem}"
        return row
    sym_fwd, sym_vjp = kernels
    p = case.params
    pairs = [
        (lambda: sym_fwd(*inputs, **p), lambda: case.forward(*inputs, **p)),
        (lambda: sym_vjp(upstream, *inputs, **p), lambda: case.vjp(upstream, *inputs, need=need, **p)),
    ]
    row.fwd, row.vjp = _alternate(pairs, repeats)
    return row


# --------------------------------------------------------------------------
# Forward + VJP from the saved output (``--result``)
# --------------------------------------------------------------------------
# Hand-written VJPs from the forward's output y, as PyTorch's derivatives.yaml writes them with
# `result`: the reference forward runs, then its output is reused (no second exp or tanh).
SELU_LAMBDA, SELU_ALPHA_LAMBDA = 1.0507009873554805, 1.7580993408473766


def _sigmoid_from_y(g: Array, y: Array, x: Array) -> Array:
    d = 1.0 - y
    d *= y
    d *= g
    return d


def _tanh_from_y(g: Array, y: Array, x: Array) -> Array:
    d = np.square(y)
    np.subtract(1.0, d, out=d)
    d *= g
    return d


def _logsigmoid_from_y(g: Array, y: Array, x: Array) -> Array:
    d = np.expm1(y)  # sigma(-x) = 1 - e^y
    np.negative(d, out=d)
    d *= g
    return d


def _softplus_from_y(g: Array, y: Array, x: Array) -> Array:
    d = np.negative(y)  # sigma(x) = 1 - e^-y (beta = 1), 1 where x > threshold
    np.expm1(d, out=d)
    np.negative(d, out=d)
    above = x > 20.0
    if above.any():
        np.copyto(d, 1.0, where=above)
    d *= g
    return d


def _elu1_from_y(g: Array, y: Array, x: Array) -> Array:
    d = np.minimum(y, 0.0)  # alpha = 1: e^x = y + 1 for x <= 0, and 1 + min(y, 0) = 1 for x > 0
    d += 1.0
    d *= g
    return d


def _selu_from_y(g: Array, y: Array, x: Array) -> Array:
    d = np.minimum(y, 0.0)  # y + lambda alpha for y <= 0, lambda for y > 0
    d += SELU_ALPHA_LAMBDA - SELU_LAMBDA
    d *= y <= 0
    d += SELU_LAMBDA
    d *= g
    return d


def _relu_from_y(g: Array, y: Array, x: Array) -> Array:
    return np.multiply(g, y > 0)


def _open_from_y(low: float, high: float) -> Callable[[Array, Array, Array], Array]:
    def vjp(g: Array, y: Array, x: Array) -> Array:
        mask = y > low
        mask &= y < high
        return np.multiply(g, mask)

    return vjp


def _softmax_from_y(g: Array, y: Array, x: Array) -> Array:
    d = g * y
    s = _rowsum(d)
    np.subtract(g, s[:, None], out=d)
    d *= y
    return d


def _softmin_from_y(g: Array, y: Array, x: Array) -> Array:
    d = _softmax_from_y(g, y, x)
    np.negative(d, out=d)
    return d


def _log_softmax_from_y(g: Array, y: Array, x: Array) -> Array:
    e = np.exp(y)
    e *= _rowsum(g)[:, None]
    np.subtract(g, e, out=e)
    return e


#: Case label -> the hand-written VJP from the output (the forward is the case's reference forward).
RESULT_VJPS: dict[str, Callable[[Array, Array, Array], Array]] = {
    "relu": _relu_from_y, "relu6": _open_from_y(0.0, 6.0), "hardtanh": _open_from_y(-1.0, 1.0),
    "elu": _elu1_from_y, "selu": _selu_from_y, "celu": _elu1_from_y, "softplus": _softplus_from_y,
    "sigmoid": _sigmoid_from_y, "logsigmoid": _logsigmoid_from_y, "tanh": _tanh_from_y,
    "softmax": _softmax_from_y, "log_softmax": _log_softmax_from_y, "softmin": _softmin_from_y,
}


def run_result_case(label: str, case: Case, kernels: tuple[Forward, Vjp], dtype: str, sizes: Sizes, repeats: int,
                    seed: int) -> Row:
    """Forward then VJP given the forward's output: symdl (``result=``) against the reference reusing it.
    The timing is in ``Row.fwd`` (one fused column)."""
    inputs, upstream = case.build(np.random.default_rng(seed), np.dtype(dtype), sizes)
    (x,), p = inputs, case.params
    sym_fwd, sym_vjp = kernels
    ref_vjp = RESULT_VJPS[label]
    row = Row(label, dtype)
    problem = _disagreement(sym_vjp(upstream, x, result=sym_fwd(x, **p), **p)[0],
                            ref_vjp(upstream, case.forward(x, **p), x), dtype)
    if problem:
        row.note = f"MISMATCH {problem}"
        return row

    def symdl() -> object:
        return sym_vjp(upstream, x, result=sym_fwd(x, **p), **p)

    def reference() -> object:
        return ref_vjp(upstream, case.forward(x, **p), x)

    (row.fwd,) = _alternate([(symdl, reference)], repeats)
    return row


def gelu_times(sizes: Sizes, repeats: int, seed: int) -> list[str]:
    """GELU (erf form) float32 forward + backward per 1e6 values: symdl (the VJP given the forward's output,
    ``result=``), the SciPy reference above and PyTorch at 1 thread (autograd, when torch is installed),
    alternating; medians in ms. By CPU time also symdl's VJP from the input (the A/B of ``result=``)."""
    import symdl.kernels as kernels

    x = _normal(np.random.default_rng(seed), sizes.n, np.dtype("float32"))
    g = np.ones_like(x)

    def from_output() -> object:
        return kernels.gelu_vjp(g, x, result=kernels.gelu(x))

    def from_input() -> object:
        return kernels.gelu(x), kernels.gelu_vjp(g, x)

    pairs = [(from_output, lambda: (_gelu_erf(x), _gelu_erf_vjp(g, x)))]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        tx = torch.from_numpy(x).requires_grad_(True)
        tg = torch.from_numpy(g)

        def torch_step() -> None:
            torch.nn.functional.gelu(tx).backward(tg)
            tx.grad = None

        pairs.append((from_output, torch_step))
    times = _alternate(pairs, repeats)
    per_million = 1e6 / sizes.n
    lines = [f"GELU (approximate='none') float32 forward + backward (gelu_vjp given result=), per 1e6 values: symdl "
             f"{times[0][0] * per_million:.2f} ms, NumPy + SciPy erfc reference {times[0][1] * per_million:.2f} ms"]
    if torch is not None:
        lines[0] += (f", PyTorch {torch.__version__} (1 thread) {times[1][1] * per_million:.2f} ms "
                     f"(symdl in that pairing {times[1][0] * per_million:.2f} ms)")
    # On a shared machine the wall clock counts the time other processes hold the core; CPU time does not.
    cpu = _cpu_times(pairs[-1], repeats)
    other = "PyTorch" if torch is not None else "the SciPy reference"
    lines.append(f"By CPU time (time.process_time, same allocator state, alternating): symdl "
                 f"{cpu[0] * per_million:.2f} ms, {other} {cpu[1] * per_million:.2f} ms")
    ab = _cpu_times((from_output, from_input), repeats)
    lines.append(f"By CPU time, symdl's backward from the saved output against from the input (A/B, alternating): "
                 f"{ab[0] * per_million:.2f} ms against {ab[1] * per_million:.2f} ms")
    return lines


def _cpu_times(pair: tuple[Callable[[], object], Callable[[], object]], repeats: int) -> tuple[float, float]:
    """Median CPU milliseconds (``time.process_time``) of the two calls, alternating, each from a trimmed
    allocator as in :func:`_clock`."""
    samples: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            _TRIM(0)
            start = time.process_time()
            pair[side]()
            samples[side].append(time.process_time() - start)
    return statistics.median(samples[0]) * 1e3, statistics.median(samples[1]) * 1e3


RESULT_HEADERS = ("op", "dtype", "fwd+vjp(result) symdl ms", "fwd+vjp(result) ref ms", "ratio", "note")


def result_markdown(rows: Sequence[Row], summary: Summary | None, header: Sequence[str],
                    extra: Sequence[str] = ()) -> str:
    """The ``--result`` table as Markdown."""
    out = ["# symdl kernel benchmark: forward + VJP from the saved output", "", *(f"- {line}" for line in header), "",
           "| " + " | ".join(RESULT_HEADERS) + " |", "|---|---|---:|---:|---:|---|"]
    for row in rows:
        cells = [f"{row.fwd[0]:.3f}", f"{row.fwd[1]:.3f}", f"{row.fwd[0] / row.fwd[1]:.2f}"] if row.fwd else ["-"] * 3
        out.append("| " + " | ".join([row.label, row.dtype, *cells, row.note]) + " |")
    out += ["", *(summary.lines() if summary else ["No ratio was measured."])]
    out += ["", *extra] if extra else []
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------
HEADERS = ("op", "dtype", "fwd symdl ms", "fwd ref ms", "fwd ratio", "vjp symdl ms", "vjp ref ms", "vjp ratio", "note")


def _cells(row: Row) -> list[str]:
    def part(t: tuple[float, float] | None) -> list[str]:
        if t is None:
            return ["-", "-", "-"]
        return [f"{t[0]:.3f}", f"{t[1]:.3f}", f"{t[0] / t[1]:.2f}" if t[1] > 0 else "-"]

    return [row.label, row.dtype, *part(row.fwd), *part(row.vjp), row.note]


@dataclass(frozen=True)
class Summary:
    geomean: float
    worst: float
    worst_at: str
    count: int

    @property
    def geomean_ok(self) -> bool:
        return self.geomean <= RATIO_GEOMEAN_TARGET

    @property
    def worst_ok(self) -> bool:
        return self.worst <= RATIO_MAX_TARGET

    def lines(self) -> list[str]:
        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        return [
            f"Geometric mean of {self.count} ratios (symdl / reference): {self.geomean:.3f} "
            f"(target <= {RATIO_GEOMEAN_TARGET}: {verdict(self.geomean_ok)})",
            f"Largest ratio: {self.worst:.3f} ({self.worst_at}) (target <= {RATIO_MAX_TARGET}: {verdict(self.worst_ok)})",
        ]


def summarize(rows: Sequence[Row]) -> Summary | None:
    ratios = [(f"{row.label} {row.dtype} {kind}", r) for row in rows for kind, r in row.ratios()]
    if not ratios:
        return None
    geomean = math.exp(statistics.fmean(math.log(r) for _, r in ratios))
    worst_at, worst = max(ratios, key=lambda item: item[1])
    return Summary(geomean, worst, worst_at, len(ratios))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    u = platform.uname()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"CPU: {_cpu_model()} ({os.cpu_count()} logical CPUs, {affinity} usable)",
        f"OS: {u.system} {u.release} {u.machine}",
        f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}",
    ]


def print_table(rows: Sequence[Row]) -> None:
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(_cells(r)[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
        print("  ".join("-" * w for w in widths))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(_cells(row), widths, strict=True)))
        return
    table = Table(show_lines=False)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i in (0, 1, 8) else "right")
    for row in rows:
        cells = [escape(c) for c in _cells(row)]  # 'gelu[tanh]' is not markup
        for i in (4, 7):
            if cells[i] != "-" and float(cells[i]) > RATIO_MAX_TARGET:
                cells[i] = f"[bold red]{cells[i]}[/]"
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:  # piped or redirected: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


def markdown(rows: Sequence[Row], summary: Summary | None, header: Sequence[str], notes: Sequence[str]) -> str:
    out = ["# symdl kernel benchmark", "", *(f"- {line}" for line in header), ""]
    out += ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" if i in (0, 1, 8) else "---:" for i in range(len(HEADERS))) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |" for row in rows]
    out.append("")
    out += summary.lines() if summary else ["No ratio was measured."]
    if notes:
        out += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def select_cases(spec: str | None) -> list[str]:
    """Case labels for ``--ops``: labels ('gelu[tanh]') or kernel names ('gelu' selects both variants)."""
    if not spec:
        return list(CASES)
    chosen: list[str] = []
    for token in _csv(spec):
        labels = [token] if token in CASES else [lbl for lbl, c in CASES.items() if c.kernel == token]
        if not labels:
            raise SystemExit(f"unknown op {token!r}; known: {', '.join(CASES)}")
        chosen += [lbl for lbl in labels if lbl not in chosen]
    return chosen


def load_kernels() -> tuple[types.ModuleType | None, str]:
    """Import symdl.kernels (from the repo this script lives in, if not installed)."""
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import symdl.kernels as module
    except Exception as exc:  # not built yet, or broken: every op is skipped
        return None, f"symdl.kernels could not be imported ({type(exc).__name__}: {exc})"
    return module, ""


def kernel_pair(module: types.ModuleType | None, name: str) -> tuple[Forward, Vjp] | None:
    fwd = getattr(module, name, None)
    vjp = getattr(module, f"{name}_vjp", None)
    return (fwd, vjp) if callable(fwd) and callable(vjp) else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per op and dtype (default 15)")
    parser.add_argument("--ops", help="comma-separated ops to run (labels or kernel names); default all")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated dtypes (default float64,float32)")
    parser.add_argument("--quick", action="store_true", help="1e5 elements instead of 1e6 (smoke test)")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this path (atomically)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed for the inputs")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--result", action="store_true",
                        help="time forward + VJP given the forward's output (result=) against hand-written NumPy "
                             "reusing the output, for the ops that take result=")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    bad = [d for d in _csv(args.dtypes) if d not in DTYPES]
    if bad:
        parser.error(f"unsupported dtype(s) {bad}; choose from {DTYPES}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    labels = select_cases(args.ops)
    dtypes = _csv(args.dtypes)
    sizes = QUICK if args.quick else FULL
    header = [
        *machine_lines(),
        f"Sizes: {sizes.n:,} elements; softmax family {sizes.rows}; cross_entropy {sizes.classes}; "
        f"{args.repeats} alternating repeats, medians",
        f"Run: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC, `python scripts/bench_kernels.py "
        + " ".join(sys.argv[1:] if argv is None else argv)
        + "`",
    ]
    for line in header:
        print(line)
    print()

    module, why = load_kernels()
    notes: list[str] = [why] if why else []
    if module is not None:
        uncovered = sorted(set(getattr(module, "OPS", ())) - {c.kernel for c in CASES.values()})
        if uncovered:
            notes.append(f"symdl ops without a reference here (not timed): {', '.join(uncovered)}")

    if args.result:
        return _main_result(args, [label for label in labels if label in RESULT_VJPS], dtypes, sizes, header, module)

    rows: list[Row] = []
    for label in labels:
        case = CASES[label]
        kernels = kernel_pair(module, case.kernel)
        if kernels is None:
            if module is not None:
                notes.append(f"skipped {label}: symdl.kernels.{case.kernel} / {case.kernel}_vjp not present yet")
            continue
        for dtype in dtypes:
            row = run_case(label, case, kernels, dtype, sizes, args.repeats, args.seed)
            rows.append(row)
            ratios = ", ".join(f"{k} {r:.2f}" for k, r in row.ratios())
            print(f"  {label:<34} {dtype:<8} {ratios or row.note}", file=sys.stderr, flush=True)

    for note in notes:
        print(f"note: {note}")
    if rows:
        print()
        print_table(rows)
    summary = summarize(rows)
    print()
    for line in summary.lines() if summary else ["No ratio was measured."]:
        print(line)
    if args.markdown:
        write_table(args.markdown, markdown(rows, summary, header, notes))
        print(f"wrote {args.markdown}")

    failed = any(row.note.startswith(("MISMATCH", "error")) for row in rows)
    missed = summary is not None and not (summary.geomean_ok and summary.worst_ok)
    return 1 if failed or (args.check and missed) else 0


def _main_result(args: argparse.Namespace, labels: Sequence[str], dtypes: Sequence[str], sizes: Sizes,
                 header: Sequence[str], module: types.ModuleType | None) -> int:
    rows = []
    for label in labels:
        kernels = kernel_pair(module, CASES[label].kernel)
        if kernels is None:
            continue
        for dtype in dtypes:
            row = run_result_case(label, CASES[label], kernels, dtype, sizes, args.repeats, args.seed)
            rows.append(row)
            print(f"  {label:<14} {dtype:<8} {row.note or f'{row.fwd[0]:.3f} / {row.fwd[1]:.3f} ms'}",
                  file=sys.stderr, flush=True)
    summary = summarize(rows)
    extra = gelu_times(sizes, args.repeats, args.seed) if "float32" in dtypes else []
    text = result_markdown(rows, summary, header, extra)
    print(text)
    if args.markdown:
        write_table(args.markdown, text)
        print(f"wrote {args.markdown}")
    failed = any(row.note for row in rows)
    missed = summary is not None and not (summary.geomean_ok and summary.worst_ok)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

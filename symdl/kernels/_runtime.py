"""Hand-written support for the generated kernels (NumPy only).

Three jobs, nothing else:

* stable primitives the printer maps SymPy functions to (``sigmoid``,
  ``softplus``, ``erf``, ``erfc``, ``normal_cdf``, ``x_normal_cdf``, ``xlogy``, ``quotient_at_zero``, ``hypot``,
  ``exp_of_square``), each
  equal to its textbook formula (see ``symdl.functions``) and finite
  wherever that formula's true value is finite. ``sigmoid``, ``softplus`` and ``xlogy`` are NumPy
  compositions (the first two can write into ``out=``); ``erf``, ``erfc``
  and ``normal_cdf`` are polynomial fits in the input's dtype (coefficients
  from ``scripts/fit_erf.py``; their error against mpmath over the whole
  float range is measured by ``symdl verify``), several times faster than
  ``scipy.special``; ``x_normal_cdf`` (GELU) fuses x Phi(x) in float32;
* argument validation with errors that name the op, the argument and the
  rule broken;
* loss reductions and their adjoints.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError, OpTypeError

ArrayLike = Any


# --------------------------------------------------------------------------- fresh outputs
#: Transparent huge pages are 2 MiB on x86-64 and arm64 Linux; madvise's MADV_HUGEPAGE.
_HUGE_PAGE, _MADV_HUGEPAGE = 1 << 21, 14


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    """libc's ``madvise`` on Linux (None elsewhere, or where it cannot be loaded)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return function  # type: ignore[no-any-return]


def fresh(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A new uninitialised C-contiguous array for a kernel's output.

    From one huge page on (2 MiB), on Linux, its data starts on a huge-page boundary and its whole huge pages
    are advised as such (MADV_HUGEPAGE, which NumPy itself gives only from 4 MiB, and only to the aligned part):
    the first write then costs one page fault per 2 MiB instead of one per 4 KiB. Measured on a trimmed
    allocator (each call's memory fresh from the system), writing 1e6 float32 values: 1.59 ms into
    ``np.empty``, 0.88 ms with NumPy's advice on the aligned part, 0.23 ms aligned and advised. The array is a
    view of a buffer up to 2 MiB longer, whose slack is never touched (no physical memory).
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    madvise = _madvise() if nbytes >= _HUGE_PAGE else None
    if madvise is None:
        return np.empty(shape, dtype)
    buffer = np.empty(nbytes + _HUGE_PAGE, np.uint8)
    start = -buffer.ctypes.data % _HUGE_PAGE
    madvise(buffer.ctypes.data + start, nbytes // _HUGE_PAGE * _HUGE_PAGE, _MADV_HUGEPAGE)  # a hint: errors ignored
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def fresh_like(x: np.ndarray) -> np.ndarray:
    """:func:`fresh` with ``x``'s shape and dtype."""
    return fresh(x.shape, x.dtype)


# --------------------------------------------------------------------------- primitives
def _buffer(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``out``, or a new array shaped like ``x`` in its floating dtype (float64 for integers)."""
    if out is not None:
        return out
    return fresh(np.shape(x), np.result_type(x, 0.0))


def select(condition: np.ndarray, a: np.ndarray | float, b: np.ndarray | float,
           out: np.ndarray | None = None) -> np.ndarray:
    """``np.where(condition, a, b)``, into ``out`` (which may be ``a`` or ``b``) when given.

    Into one branch's own buffer, only the elements of the other branch are
    copied, and none at all when it is taken nowhere: a branch that is rarely
    taken (softplus's ``beta x > threshold``) then costs one ``any()`` instead
    of a full select (5 ms per 1e6 elements here). ``condition`` may be a
    Python bool (a condition on parameters).
    """
    if out is None:
        return np.where(condition, a, b)
    if out is a:  # a's buffer: fill in b where the condition fails
        a, b, condition = b, a, np.logical_not(condition)
    elif out is not b:
        np.copyto(out, b)
    if np.any(condition):
        np.copyto(out, a, where=condition)
    return out


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\sigma(x) = 1 / (1 + e^{-x})`, stable for every finite x.

    Evaluated as written, as ``scipy.special.expit`` does (2 ulp at most,
    and 2x faster in float64, 5x in float32, in one buffer): neither tail
    cancels, and where ``e^{-x}`` overflows (x < -709, float32: x < -88) the
    result 0 is within one unit of the smallest normal number of the true,
    subnormal value; that overflow alone is silenced. ``out`` (which may be
    ``x`` itself) receives the result.
    """
    out = _buffer(x, out)
    np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    np.divide(1.0, out, out=out)
    return out


def softplus(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\log(1 + e^{x}) = \max(x, 0) + \log(1 + e^{-|x|})`, stable for every finite x.

    Both terms are non-negative, so the sum cannot cancel; one exp, in place
    (three times faster than ``scipy.special.log_expit`` here). ``out``
    (which may be ``x`` itself) receives the result.
    """
    positive_part = np.clip(x, 0, math.inf)  # before out is written: out may be x
    out = _buffer(x, out)
    np.abs(x, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += positive_part
    return out


# --------------------------------------------------------------------------- erf, erfc, normal CDF
# Fitted by scripts/fit_erf.py (least squares in the relative error, mpmath at 60 digits; highest degree
# first; its docstring gives the forms). Near 0 (|z| < 1/2, z = x / sqrt 2 for the normal CDF):
# erf(z) = z R(z^2), Phi(x) = 1/2 + x N(x^2). Beyond: erfc(z) = e^{-z^2} P(v - 1) / (z + 3/4) with
# v = 5 / (2 + z), and Q(u) = 1 - Phi(u) = 1/2 e^{-u^2/2} M(v - 1) / (u + 1) with v = (K + 4) / (4 + u)
# (v - 1 runs over (-1, 1]). The measured error of erf, erfc and normal_cdf against mpmath over the
# whole float range is a row of `symdl verify`.
_NORMAL_K = 5.414213562373095
_ERFC_TAIL_32 = (1.707022300764762e-06, 1.303990113719745e-05, -2.2416504561546177e-05, -0.0001204421440153375,
    0.00018619225175408382, 0.0009957826507228245, -0.000882398896205848, -0.010620534561484643,
    -0.021045527218819977, 0.005379094035669005, 0.12447411684668849, 0.6712543180595605)
_ERFC_TAIL_64 = (1.6841644458922193e-10, 4.791259178102724e-11, -1.7587793991358045e-09, 6.900494641535892e-10,
    8.551270082812689e-09, -1.135776725111531e-08, -2.080670865811785e-08, 7.406645413732727e-08,
    -2.2788018584075315e-08, -3.001395527177804e-07, 5.55378344413924e-07, 7.296079521506826e-07,
    -3.8607231304868745e-06, 4.933398192187934e-07, 2.180813874262302e-05, -2.1069072465786997e-05,
    -0.00012932403421218796, 0.00018529489139772963, 0.0010001441683362734, -0.0008820799431647959,
    -0.010621523161090269, -0.021045578011475916, 0.005379176831074248, 0.12447411922754172, 0.6712543169302123)
_NORMAL_TAIL_32 = (-8.201237745309516e-06, -1.2554604436602402e-05, 8.38453133944585e-05, 0.0002659616684506833,
    -0.0002798449186221623, -0.003688514069614302, -0.011890977058159906, -0.021306660391665455,
    -0.01590479941133223, 0.03336043683535492, 0.1545822774769545, 0.9158481915213424)
_NORMAL_TAIL_64 = (3.2810576611150716e-11, -4.706427544519975e-11, -3.395931439914632e-10, 6.622187995240884e-10,
    1.848376281976382e-09, -5.496312044145097e-09, -7.198853951442759e-09, 3.758796556794034e-08,
    2.275759458678121e-08, -2.464963644554309e-07, -7.829744283584385e-08, 1.6860555061773297e-06,
    7.569250685464982e-07, -1.2350897934107947e-05, -1.451522479714891e-05, 8.849392564397082e-05,
    0.0002680701701018694, -0.0002824551767987048, -0.003689584304815703, -0.011890254939419944,
    -0.021306412741309906, -0.015904885093189897, 0.03336041580475102, 0.15458228035572785, 0.9158481918109541)
_ERF_SMALL_32 = (0.0047175674149314995, -0.026756971904511234, 0.11282819468820528, -0.3761260840405186,
    1.1283791655539255)
_ERF_SMALL_64 = (1.4722699274400109e-06, -1.4845531998644718e-05, 0.00012053322205509779, -0.0008548297479645846,
    0.005223977369799816, -0.026866170632682117, 0.11283791670924707, -0.37612638903183465, 1.1283791670955126)
_NORMAL_SMALL_32 = (0.00010424449718133609, -0.001182502267356114, 0.009972697696633245, -0.066490326151548,
    0.3989422798563993)
_NORMAL_SMALL_64 = (2.0333047840426916e-09, -4.100537635376391e-08, 6.658582708861217e-07, -9.444623617902267e-06,
    0.00011543468196720358, -0.0011873282149302753, 0.00997355701000893, -0.06649038006690494, 0.3989422804014327)
_NORMAL_WHOLE_32 = (1.959251443043419e-05, 1.6129927849445755e-05, -0.000195319008880909, -0.00043445098212901474,
    0.0009389218514294495, 0.007549369575527636, 0.023315865338550845, 0.048392203452124506, 0.07598704883617885,
    0.09441064065864445)
#: float32's whole-line form Q(u) = e^{-u^2/2} v W(w), v = 2c / (c + u), w = v - 1 = (c - u) / (c + u): c, and
#: the sign bit of a float32.
_WHOLE_C, _SIGN_32 = 4.0, np.uint32(0x80000000)
#: Coefficients of W (the lowest degrees) evaluated in float64; the rest in float32.
_WIDE_TERMS = 2
_FORMS = {  # kind -> (tail polynomial by itemsize, v = (K + c) / (c + u): c and K + c, the 1 / (u + shift)
    #                   factor's shift, exponent factor, small polynomial, switch)
    "erfc": ({4: _ERFC_TAIL_32, 8: _ERFC_TAIL_64}, (2.0, 5.0), 0.75, 1.0, {4: _ERF_SMALL_32, 8: _ERF_SMALL_64},
             0.5),
    "normal": ({4: _NORMAL_TAIL_32, 8: _NORMAL_TAIL_64}, (4.0, 4.0 + _NORMAL_K), 1.0, 0.5,
               {4: _NORMAL_SMALL_32, 8: _NORMAL_SMALL_64}, 0.7071067811865476),
}
#: Bits cleared from the significand so that hi * hi is exact (12 and 26 significant bits remain).
_SPLIT_MASKS = {4: np.uint32(0xFFFFF000), 8: np.uint64(0xFFFFFFFFF8000000)}
#: Where e^{-k u^2} reaches the smallest normal float64 (e^{-708}): beyond, the tails are below it and
#: returned as 0 (within one unit of the smallest normal number), and NumPy's exp leaves its fast path
#: (8 ms instead of 0.9 ms per 1e6 values) for results that underflow.
_TAIL_LIMITS = {"erfc": 26.6, "normal": 37.6}


def _floating(x: ArrayLike) -> np.ndarray:
    """``x`` as an array of float32 or float64 (float16 and integers are computed in float64)."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _horner(coefficients: tuple[float, ...], t: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``sum c_k t^k`` by Horner's rule in t's dtype (Python floats are weak scalars), into ``out`` (not t)."""
    np.multiply(t, coefficients[0], out=out)
    for c in coefficients[1:-1]:
        out += c
        out *= t
    out += coefficients[-1]
    return out


def _near_zero(x: np.ndarray, kind: str, out: np.ndarray, spare: np.ndarray, spare2: np.ndarray) -> np.ndarray:
    """``x P(x^2)`` (erf, or Phi - 1/2) at x clipped to the switch, into ``out`` (``spare``s are scratch)."""
    *_, polynomials, switch = _FORMS[kind]
    near = np.maximum(x, -switch, out=spare)  # two ufuncs: np.clip's Python wrapper costs more per block
    np.minimum(near, switch, out=near)
    square = np.square(near, out=spare2)
    _horner(polynomials[x.dtype.itemsize], square, out)
    out *= near
    return out


def _tail(u: np.ndarray, kind: str, out: np.ndarray, spare: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """``erfc(u)`` (kind "erfc") or ``Q(u) = 1 - Phi(u)`` (kind "normal") for u >= the switch, in u's dtype,
    into ``out``: ``e^{-k u^2} P(v - 1) / (u + shift)`` (times 1/2 for Q). ``u``, ``spare`` and ``wide``
    (float64) are overwritten. Arguments below the switch give finite values (unused); beyond the
    limit, 0.

    Where the error comes from, and what is done about it:

    * v = N / (c + u) is rounded, but P is nearly flat in it (the decay is in 1 / (u + shift));
    * ``e^{-k u^2}``: rounding ``u^2`` would cost up to ``u^2`` ulp. float32: u^2 is exact in float64,
      where one exp is evaluated and rounded once. float64: ``e^{-k hi^2} e^{-k lo (u + hi)}`` with
      ``u = hi + lo`` and ``hi`` holding half the significand, so that ``hi^2`` is exact.
    """
    polynomials, (c, numerator), shift, k, _, switch = _FORMS[kind]
    size = u.dtype.itemsize
    limit = _TAIL_LIMITS[kind]
    beyond = u >= limit
    np.maximum(u, switch, out=u)
    np.minimum(u, limit, out=u)  # inf would make lo = inf - inf
    v = np.add(u, c, out=spare)
    np.divide(numerator, v, out=v)
    v -= 1.0
    p = _horner(polynomials[size], v, out)
    np.add(u, shift, out=v)
    p /= v
    if beyond.any():
        p[beyond] = 0.0
    if kind == "normal":
        p *= 0.5
    if size == 4:  # one float64 exp of the exact -k u^2, rounded once with the product
        np.square(u, out=wide, dtype=np.float64)
        wide *= -k
        np.exp(wide, out=wide)
        wide *= p
        np.copyto(p, wide, casting="same_kind")
        return p
    hi = np.bitwise_and(u.view(np.uint64), _SPLIT_MASKS[8], out=spare.view(np.uint64)).view(np.float64)
    np.subtract(u, hi, out=u)  # lo, exact
    lo_term = np.add(u, hi, out=wide)
    lo_term += hi  # u + hi
    lo_term *= u
    lo_term *= -k
    np.exp(lo_term, out=lo_term)
    p *= lo_term
    np.square(hi, out=hi)
    hi *= -k
    np.exp(hi, out=hi)
    p *= hi
    return p


def _blend(inside: np.ndarray, near: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """``near`` where ``inside``, else ``outside`` (both finite), into ``near``: products with the mask are
    exact and one of the two terms is 0, so the sum is exact. Four cheap passes, against ~7 ms per 1e6 for
    ``copyto`` with ``where=`` on a random mask."""
    near *= inside
    np.logical_not(inside, out=inside)
    outside *= inside
    near += outside
    return near


#: Elements evaluated at a time: scratch for a block stays in cache and is reused, so a call touches
#: fresh memory only for its result (each fresh 4-8 MB temporary cost 1-2 ms of page faults here).
#: float32's normal CDF uses the same size for its float64 scratch: 2^15 cost 5% more per 1e6 values (the
#: ~33 ufunc calls per block), 2^14 7% more.
_BLOCK = 1 << 16
#: Each thread's scratch blocks, by dtype layout (see :func:`_scratch`).
_SCRATCH = threading.local()


def _scratch(layout: tuple[type, ...], size: int) -> list[np.ndarray]:
    """One buffer of ``size`` elements per dtype in ``layout``, kept per thread and reused by later calls.

    A fresh block is page-faulted in by every call once the allocator has returned it to the system (about
    0.4 ms per MB here; the float32 normal CDF's five buffers of 2^16 elements are 2 MB); kept, it costs
    nothing after the first call. Per thread, so that concurrent calls never share a buffer (the kernels
    call no user code while they hold one, so one thread never needs two). What a thread keeps is at most
    one set per layout: 2 MB for float32's normal CDF, 2 MB and 1.3 MB for float64's and float32's erf family.
    """
    buffers = getattr(_SCRATCH, "buffers", None)
    if buffers is None:
        buffers = _SCRATCH.buffers = {}
    kept = buffers.get(layout)
    if kept is None or kept[0].size < size:
        kept = buffers[layout] = [np.empty(size, dtype) for dtype in layout]
    return [buffer[:size] for buffer in kept]


def _special_function(x: ArrayLike, kind: str, near_form: Callable[[np.ndarray, np.ndarray], None],
                      tail_form: Callable[[np.ndarray, np.ndarray], None]) -> np.ndarray:
    """The near-zero polynomial where |x| < the switch, the tail form beyond, in x's dtype, block by block.
    ``near_form(x, near)`` and ``tail_form(x, tail)`` finish each form in place from the odd polynomial and
    from the tail at |x|."""
    x = _floating(x)
    result = fresh_like(x)
    flat_x, flat_out = np.ravel(x), result.reshape(-1)
    block = max(1, min(_BLOCK, flat_x.size))  # an empty array: no block, an empty result
    scratch = _scratch((x.dtype.type,) * 3 + (np.float64,), block)
    switch = _FORMS[kind][-1]
    for start in range(0, flat_x.size, block):
        xs = flat_x[start:start + block]
        n = xs.size
        near, a, b, spare, wide = flat_out[start:start + n], *(buffer[:n] for buffer in scratch)
        _near_zero(xs, kind, near, a, b)
        near_form(xs, near)
        u = np.abs(xs, out=a)
        inside = u < switch
        tail = _tail(u, kind, b, spare, wide)
        tail_form(xs, tail)
        _blend(inside, near, tail)
    return result


def _whole_line_blocks(x: np.ndarray, result: np.ndarray, extra: tuple[type, ...], *, limit: float | None = None,
                       times_abs: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    r"""float32's whole-line form, block by block: for each block of ``x``, the block itself and the part of
    ``result`` (a fresh C-contiguous array shaped like x) it fills, then, in kept per-thread scratch,
    ``a = |x|`` (float32), ``e = e^{-u^2/2} v`` (times u with ``times_abs``) and ``w = v - 1`` (float64) with
    u = |x| and v = 8 / (4 + u), ``w32`` (w rounded to float32) and one buffer per dtype in ``extra``. The caller
    evaluates W(w) and finishes the block in place. With a ``limit``, a and u are clamped there, so that u is
    finite (a float32 pass, only in blocks whose largest |x| is beyond the limit or NaN: one reduction).

    u = inf gives v = 0, w = -1 and e = 0; NaN stays NaN. u becomes v then w in its own buffer (in-place passes
    over two float64 buffers: 10% faster than three buffers and out-of-place steps). ``result`` is the only
    fresh memory a call touches (a fresh 4 MB temporary costs 1-2 ms of page faults with a trimmed allocator)."""
    flat_x, flat_out = np.ravel(x), result.reshape(-1)
    block = max(1, min(_BLOCK, flat_x.size))
    scratch = _scratch((np.float64, np.float64, np.float32, np.float32, *extra), block)
    for start in range(0, flat_x.size, block):
        xs = flat_x[start:start + block]
        n = xs.size
        u, e, a, w32, *more = (buffer[:n] for buffer in scratch)
        # |x| in float32 then widened by a copy: half the time of np.abs with a float64 output
        np.abs(xs, out=a)
        if limit is not None and not a.max() <= limit:  # NaN too: a NaN maximum may hide an inf
            np.clip(a, 0.0, limit, out=a)  # the clip ufunc: 2.4x faster than np.minimum with a scalar
        np.copyto(u, a)
        np.square(u, out=e)  # exact: u has 24 significant bits
        # e^{-u^2/2} = 2^(-u^2 / (2 ln 2)): NumPy's float64 exp2 is about 10% faster than exp; the scaling's
        # rounding moves the power by 1e-14 relative at most, far below float32's grain
        e *= -0.5 / math.log(2)
        np.exp2(e, out=e)
        if times_abs:
            e *= u
        u += _WHOLE_C
        v = np.divide(2 * _WHOLE_C, u, out=u)
        e *= v
        w = np.subtract(v, 1.0, out=v)  # (4 - u) / (4 + u)
        np.copyto(w32, w, casting="same_kind")
        yield (xs, flat_out[start:start + n], a, e, w, w32, *more)


def _normal_cdf_float32(x: np.ndarray) -> np.ndarray:
    r"""float32 :math:`\Phi(x)` in one form on the whole line, block by block: with u = |x|, v = 8 / (4 + u) in
    (0, 2], w = v - 1 in (-1, 1] and Q(u) = e^{-u^2/2} v W(w) (W from scripts/fit_erf.py), ``Q(u)`` for x < 0
    and ``1 - Q(u)`` (>= 1/2: no cancellation) for x >= 0.

    Q is computed in float64 (u^2 exact, so e^{-u^2/2} needs no split) and rounded once to float32; W's
    terms of degree 2 and more, small beside W, in float32 (Horner's rule wholly in float32 cost 2.35 ulp in
    a trial; this split stays within 1.23 ulp of the exact value, 1 ulp of the rounded one). v is both the
    variable (w = v - 1) and the factor that carries Q e^{u^2/2}'s 1 / u decay, so one division serves both.
    About 36 NumPy calls over a cache-sized block, against about 58 for the near-zero/tail blend that erf and
    erfc use."""
    result = fresh_like(x)
    for xs, q, _, e, w, w32, wide, high in _whole_line_blocks(x, result, (np.float64, np.float32)):
        # W's terms of degree >= 2 in float32 (together at most a tenth of W: their float32 rounding moves W by a
        # fraction of an ulp), the last two Horner steps in float64 (within 1 ulp of the rounded value in all:
        # tests/test_erf.py, `symdl verify`). The float32 part is widened by a copy: a mixed-dtype multiply costs
        # 3x a float64 one.
        _horner(_NORMAL_WHOLE_32[:-_WIDE_TERMS], w32, high)
        np.copyto(wide, high)
        wide *= w
        for c in _NORMAL_WHOLE_32[-_WIDE_TERMS:-1]:
            wide += c
            wide *= w
        wide += _NORMAL_WHOLE_32[-1]
        e *= wide
        np.copyto(q, e, casting="same_kind")  # Q(u) >= 0, rounded once to float32
        # x's sign bit onto Q (two integer passes: np.copysign is 3x slower), then 1 - Q where it is clear
        sign = np.bitwise_and(xs.view(np.uint32), _SIGN_32, out=w32.view(np.uint32))
        np.bitwise_or(q.view(np.uint32), sign, out=q.view(np.uint32))
        np.subtract(np.logical_not(np.signbit(xs)), q, out=q)
    return result


def normal_cdf(x: ArrayLike) -> np.ndarray:
    r"""Standard normal CDF :math:`\Phi(x) = \tfrac12 \operatorname{erfc}(-x/\sqrt2)`, in x's dtype, accurate
    in both tails: ``1/2 + x N(x^2)`` near 0, else ``Q(|x|)`` for x < 0 and ``1 - Q(x)`` for x > 0 (float32:
    one form on the whole line, ``_normal_cdf_float32``)."""
    x = _floating(x)
    if x.dtype == np.float32:
        return _normal_cdf_float32(x)

    def near_form(x: np.ndarray, near: np.ndarray) -> None:
        near += 0.5

    def tail_form(x: np.ndarray, q: np.ndarray) -> None:
        np.copysign(q, x, out=q)  # -Q for x > 0, Q for x < 0; then 1 - Q where the sign bit is clear
        np.subtract(np.logical_not(np.signbit(x)), q, out=q)

    return _special_function(x, "normal", near_form, tail_form)


#: Where float32's x Phi(x) stops being computed: for x < -15 it is below half the smallest subnormal (0), and
#: for x > 15 it is x; clamping |x| there keeps u (so |x| e^{-u^2/2}: no inf * 0) finite, and e^{-u^2/2} normal in
#: float64 (NumPy's exp leaves its fast path for results that underflow).
_X_NORMAL_LIMIT_32 = 20.0


def x_normal_cdf(x: ArrayLike) -> np.ndarray:
    r""":math:`x \Phi(x)` (GELU's exact form), in x's dtype: float32 in one fused pass over cache-sized blocks
    (``_x_normal_cdf_float32``), else ``x * normal_cdf(x)``; 0 at x = -inf (the limit; the product is inf * 0)."""
    x = _floating(x)
    if x.dtype == np.float32:
        return _x_normal_cdf_float32(x)
    result = normal_cdf(x)
    try:  # the flag is free; x = -inf is the only invalid product (quiet NaN inputs raise no flag)
        with np.errstate(invalid="raise"):
            result *= x  # written in full before NumPy checks the flag
    except FloatingPointError:
        result[np.isneginf(x)] = 0.0
    return result


def _x_normal_cdf_float32(x: np.ndarray) -> np.ndarray:
    r"""float32 :math:`x \Phi(x) = \max(x, 0) - |x| Q(|x|)` with Q(u) = 1 - Phi(u) in the whole-line form of
    :func:`_normal_cdf_float32`, block by block.

    Written this way the sign needs no passes of its own (x < 0: -|x| Q; x >= 0: x - x Q, at least x / 2, so
    the subtraction cannot cancel), and the product with x is made in cache instead of in a pass over the whole
    result. |x| e^{-u^2/2} v is computed in float64 and rounded once; W(w), between 0.05 and 0.25 with no
    cancellation, wholly in float32 by Horner's rule (the normal CDF keeps its last two terms in float64, two
    float64 passes and a widening copy more, for its 1-ulp bound). Error: at most 3.16 ulp of the exact x Phi(x)
    over 6 million float32 points against the float64 form (worst near x = -0.3, where W's float32 rounding
    adds up; 2.11 for the product of the 1-ulp CDF and x), within the bound of 4 (`tests/test_erf.py`,
    against mpmath). 34 NumPy calls per block, 11 over float64 data, against 36 (16) for normal_cdf then the
    product's pass: 0.76-0.84x the time of the earlier form (normal_cdf, then the product as a separate pass;
    CPU time, warm, same runs), 4.6 ms per 1e6 values on a quiet machine.
    """
    result = fresh_like(x)
    for xs, y, a, e, _, w32, high in _whole_line_blocks(x, result, (np.float32,), limit=_X_NORMAL_LIMIT_32,
                                                        times_abs=True):
        _horner(_NORMAL_WHOLE_32, w32, high)
        np.copyto(y, e, casting="same_kind")  # then a float32 product: a mixed-dtype one costs 2.4x both
        y *= high  # |x| Q(|x|)
        np.clip(xs, 0.0, math.inf, out=a)  # max(x, 0): x itself, not the clamped |x|
        np.subtract(a, y, out=y)
    return result


def quotient_at_zero(n: np.ndarray, x: np.ndarray, limit: float, slope: float,
                     out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`n / x`, and ``limit + slope * x`` (the quotient's value and slope at 0) where
    :math:`|x| < \epsilon / 8` in x's dtype (see ``symdl.functions.quotient_at_zero``).

    That keeps x = 0 (0/0) and subnormal x (whose ``n`` has lost bits) out of the division. Whether any
    element is that close to 0 is found by two integer reductions over x's bits (:func:`_min_abs`; no mask
    array: a fresh 1e6-element temporary costs as much as several passes here); the mask is made only when one
    is.
    """
    out = _buffer(n, out)
    threshold = np.finfo(out.dtype).eps / 8
    near = _min_abs(x) < threshold
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 at x = 0: replaced below
        np.divide(n, x, out=out)
    if near:
        mask = np.abs(x) < threshold
        out[mask] = limit + slope * x[mask]
    return out


def hypot(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    r""":math:`\sqrt{a^2 + b^2}` (``symdl.functions.hypot``), within about an ulp over the whole float range, in a
    new array.

    ``np.hypot`` scales every element (5.5 ms per 1e6 float32 values here, against 0.56 for the plain root),
    so the root is taken from the squares, and only where that root is inaccurate, because a square overflowed
    (the sum is inf) or both are below the normal range's square root (the root is under ``2^(p+1)`` times
    that threshold, p the mantissa's bits) or NaN, is it recomputed by ``np.hypot``: 0.66 ms for 1e6 float32
    values none of which needs it. inf and NaN come out as from ``np.hypot`` (hypot(inf, nan) = inf). The result is
    a new array, never an argument's buffer: the recomputation reads the arguments after the root is taken.
    """
    out = fresh(np.broadcast_shapes(np.shape(a), np.shape(b)), np.result_type(a, b, 0.0))
    with np.errstate(over="ignore", under="ignore"):
        np.multiply(a, a, out=out)
        out += np.multiply(b, b)
        np.sqrt(out, out=out)
    info = np.finfo(out.dtype)
    redo = ~(out >= math.sqrt(float(info.smallest_normal)) * 2.0 ** (info.nmant + 1))  # small, or NaN
    redo |= out == np.inf
    if redo.any():
        where = np.nonzero(redo)
        out[where] = np.hypot(np.broadcast_to(a, out.shape)[where], np.broadcast_to(b, out.shape)[where])
    return out


#: exp(-800) is 0 in float32 and float64: exp_of_square's exponent is clamped there (symdl.functions).
_EXP_ZERO = 800.0


def _split(a: np.ndarray | np.floating, splitter: np.floating) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split: ``a = high + low`` exactly, each with half the mantissa's bits, so that a product of two
    halves is exact."""
    scaled = a * splitter
    high = scaled - (scaled - a)
    return high, a - high


def exp_of_square(u: np.ndarray, c: float, c_low: float = 0.0, plus: np.ndarray | float | None = None,
                  divisor: np.ndarray | float | None = None) -> np.ndarray:
    r""":math:`e^{c ((u + \mathrm{plus}) / \mathrm{divisor})^2}` for :math:`c = c_h + c_l < 0`
    (``symdl.functions.exp_of_square``, which gives the two floats, splits a sum of two terms into ``u`` and
    ``plus`` and names a divisor) with the exponent kept exactly, in a new array: within about 2 ulp, where
    :math:`e^{-u^2}` from the rounded square is 22 ulp off at :math:`u = 6.6`, and hundreds in float64 further
    out; :math:`e^{-(x - y)^2}` from the rounded difference, and :math:`e^{-(x/s)^2/2}` from the rounded
    quotient, as much.

    A sum :math:`u + \mathrm{plus} = d + e` is split exactly (Knuth's two-sum), a quotient :math:`(d + e) / w =
    q + \delta` with :math:`\delta = ((d - p) - f + e) / w`, :math:`p + f = q w` exactly (Dekker's product); then
    :math:`2 c_h q \delta` joins the correction below (:math:`\delta^2` is below its rounding).

    :math:`|q|` is clamped to :math:`\sqrt{800/|c|}`, beyond which the value is 0 in float32 and float64 (no
    square overflows; the correction is not used there). Veltkamp's split gives :math:`q = h + l` with :math:`h`
    of half the mantissa's bits, so that :math:`t = ((h^2 - s) + 2hl) + l^2` is exactly the rounding error of
    :math:`s = q^2`, and likewise :math:`r` of :math:`p = c_h s` (none when :math:`c_h` is a power of two); then
    :math:`e^{c(s + t)} = e^{p} (1 + r + c_h t + c_l s)`, the correction below an ulp. NaN stays NaN.
    """
    if plus is not None and np.ndim(plus) == 0 and plus == 0:  # a quotient's form without a sum
        plus = None
    given = [a for a in (u, plus, divisor) if a is not None]
    narrow = np.result_type(*given, 0.0)
    # float16: computed in float32, whose halves of a square of up to 800 / |c| cannot overflow
    dtype = np.promote_types(narrow, np.float32)
    # Veltkamp's splitter 2^ceil(p/2) + 1 for p mantissa bits: 4097 for float32, 2^27 + 1 for float64
    splitter = dtype.type(2.0 ** ((np.finfo(dtype).nmant + 2) // 2) + 1)
    error = None
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf where the value is 0 anyway (clamped below)
        if plus is not None:
            total = np.add(u, plus, dtype=dtype)
            back = total - u
            error = np.subtract(u, total - back, dtype=dtype)  # Knuth's two-sum: u + plus = total + error exactly
            error += plus - back
            u = total
        if divisor is not None:
            w = np.asarray(divisor, dtype=dtype)
            quotient = np.divide(u, w, dtype=dtype)
            product = quotient * w  # + its error, exactly: Dekker's product
            q_high, q_low = _split(quotient, splitter)
            w_high, w_low = _split(w, splitter)
            delta = np.subtract(u, product, dtype=dtype)
            delta -= ((q_high * w_high - product) + q_high * w_low + q_low * w_high) + q_low * w_low
            if error is not None:
                delta += error
            delta /= w
            u, error = quotient, delta
    u = np.asarray(u)
    bound = math.sqrt(_EXP_ZERO / -c)
    v = np.clip(u, -bound, bound, out=fresh(u.shape, dtype), dtype=dtype)
    high_c = dtype.type(c)  # c in the dtype as two floats
    low_c = dtype.type((c - float(high_c)) + c_low)
    square = v * v
    high, low = _split(v, splitter)
    correction = high * high
    correction -= square
    high *= low
    high *= 2
    correction += high
    low *= low
    correction += low
    if error is not None:  # the sum's or quotient's rounding: (q + d)^2 = q^2 + 2 q d + d^2
        error *= v
        error *= 2
        correction += error
    correction *= high_c  # c_h (t + 2 q d)
    if low_c:
        correction += low_c * square
    exponent = square * high_c
    if math.frexp(float(high_c))[0] != -0.5:  # c_h s is rounded: add its error r
        c_high, c_low_half = _split(high_c, splitter)
        s_high, s_low = _split(square, splitter)
        error = c_high * s_high
        error -= exponent
        error += c_high * s_low
        error += c_low_half * s_high
        error += c_low_half * s_low
        correction += error
    correction += 1
    if plus is not None or divisor is not None:  # clamped: e^(-800) = 0, whatever the correction (inf - inf)
        np.copyto(correction, 1, where=np.abs(u) >= bound)
    np.exp(exponent, out=exponent)
    exponent *= correction
    return exponent.astype(narrow, copy=False)


#: A float dtype's bits as unsigned and as signed integers of its width.
_BIT_VIEWS = {np.dtype(np.float32): (np.uint32, np.int32), np.dtype(np.float64): (np.uint64, np.int64)}


def _min_abs(x: np.ndarray) -> float:
    """The smallest :math:`|x|` over the non-NaN elements (inf or NaN if there is none), by two integer minima.

    As unsigned integers, the floats with a clear sign bit come first, in the order of their magnitudes;
    as signed integers, those with the sign bit set come first, and among them the smallest magnitude
    first. The smaller of the two minima's magnitudes (sign bit cleared) is the smallest |x|: an infinity
    or a NaN has a larger magnitude than every finite number. Two reductions and no abs pass: 1.8x faster
    than the smallest of |x| block by block in scratch (other float dtypes: the smallest of |x|).
    """
    flat = np.ravel(x)
    if flat.size == 0:
        return math.inf
    views = _BIT_VIEWS.get(flat.dtype)
    if views is None:
        return float(np.fmin.reduce(np.abs(flat)))  # fmin: a NaN elsewhere hides no zero
    unsigned, signed = views
    magnitude = (1 << (8 * flat.dtype.itemsize - 1)) - 1  # all bits but the sign
    smallest = min(int(flat.view(unsigned).min()) & magnitude, int(flat.view(signed).min()) & magnitude)
    return float(np.array(smallest, unsigned).view(flat.dtype))


def erfc(x: ArrayLike) -> np.ndarray:
    r""":math:`1 - \operatorname{erf}(x)` without cancellation for large x, in x's dtype: ``1 - x R(x^2)``
    near 0, else ``erfc(|x|)`` from the fitted tail, ``2 - erfc(|x|)`` for x < 0."""
    def near_form(x: np.ndarray, near: np.ndarray) -> None:
        np.subtract(1.0, near, out=near)

    def tail_form(x: np.ndarray, q: np.ndarray) -> None:
        np.copysign(q, x, out=q)  # erfc(|x|) for x > 0, -erfc(|x|) for x < 0; then 2 + that there
        q += np.signbit(x) * np.array(2.0, x.dtype)

    return _special_function(x, "erfc", near_form, tail_form)


def erf(x: ArrayLike) -> np.ndarray:
    r"""Error function :math:`\frac{2}{\sqrt\pi}\int_0^x e^{-t^2} dt`, in x's dtype: ``x R(x^2)`` near 0,
    ``sign(x) (1 - erfc(|x|))`` beyond."""
    def tail_form(x: np.ndarray, q: np.ndarray) -> None:
        np.subtract(1.0, q, out=q)
        np.copysign(q, x, out=q)

    return _special_function(x, "erfc", lambda x, near: None, tail_form)


def _clamped(log: np.ufunc, u: np.ndarray, floor: float, out: np.ndarray | None) -> np.ndarray:
    """``max(log(u), floor)`` into ``out`` (which may be ``u`` itself). A log of 0 is -inf and is
    clamped like any value below the floor, so only that divide-by-zero warning is silenced (no
    clipping pass before the log)."""
    out = _buffer(u, out)
    with np.errstate(divide="ignore"):
        log(u, out=out)
    # np.clip with finite bounds is the clip ufunc, twice as fast as np.maximum with a scalar.
    return np.clip(out, floor, math.inf, out=out)


def clamped_log(u: np.ndarray, floor: float, out: np.ndarray | None = None) -> np.ndarray:
    """``max(log u, floor)`` (see :func:`_clamped`)."""
    return _clamped(np.log, u, floor, out)


def clamped_log1p(u: np.ndarray, floor: float, out: np.ndarray | None = None) -> np.ndarray:
    """``max(log(1 + u), floor)``, accurate for small ``u``; ``u = -1`` gives the floor."""
    return _clamped(np.log1p, u, floor, out)


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`x \log y`, 0 where x = 0 (as ``torch.xlogy``).

    ``x * log(y)``, as ``scipy.special.xlogy`` computes it, but with NumPy's
    ``log``, in place (about 3x faster): then +0 wherever x = 0 and y is not
    NaN (``0 * log 0`` would be NaN). As in SciPy, ``log`` of 0 or of a
    negative number raises no floating-point warning, and narrower floats are
    evaluated in float64 and rounded once (NumPy's float32 ``log`` is off by
    up to 3 ulp near 1).
    """
    dtype = np.result_type(x, y, 0.0)
    wide = np.result_type(dtype, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_wide = np.asarray(y, wide)
        out = np.log(y_wide, out=y_wide if y_wide is not y else None)  # one fresh array
        if not isinstance(out, np.ndarray) or np.broadcast_shapes(np.shape(x), out.shape) != out.shape:
            out = np.multiply(x, out)
        else:
            np.multiply(x, out, out=out)
    zero = np.equal(x, 0)
    if zero.any():
        out = np.where(zero & ~np.isnan(y), 0, out)
    return out if dtype == wide else out.astype(dtype)


# --------------------------------------------------------------------------- row reductions
#: Rows at most this wide are reduced specially: NumPy's reductions along a
#: short contiguous last axis are slow (about 4x, measured on (1e5, 10)).
NARROW_ROW = 32
#: Rows per block in the column-by-column maximum (a block stays in cache).
_ROW_BLOCK = 8192


#: From this many rows on, the maximum runs column by column (one ufunc call per
#: column); fewer rows are transposed first (one small copy, then NumPy's fast
#: reduction over the leading axis: 3-7x faster than ``np.max(axis=1)`` on (64, 10)).
_MANY_ROWS = 4096


def _narrow_rows(x: np.ndarray, axis: int) -> bool:
    return x.ndim == 2 and axis in (1, -1) and 1 < x.shape[1] <= NARROW_ROW and x.flags.c_contiguous


def unit_axis(values: np.ndarray, dim: int) -> np.ndarray:
    """``np.expand_dims(values, dim)`` as one reshape (several times cheaper per call)."""
    return values.reshape(values.shape[:dim] + (1,) + values.shape[dim:])


@functools.lru_cache(maxsize=None)
def _ones(width: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ``width`` ones (cached: it is the summing vector of every narrow row sum)."""
    ones = np.ones(width, dtype=dtype)
    ones.flags.writeable = False
    return ones


def rowsum(x: np.ndarray, axis: int, keepdims: bool = True) -> np.ndarray:
    r""":math:`\sum_j x_{ij}` along ``axis``, as ``np.sum(x, axis, keepdims=keepdims)``.

    Narrow 2-D rows are summed as the matrix-vector product ``x \cdot 1`` (2.5x
    faster than ``np.sum(axis=1)`` on (64, 10), 7x on (1e5, 10); the error bound of
    a length-C dot product, C <= 32, matches pairwise summation's at that length).
    """
    if not _narrow_rows(x, axis):
        return np.sum(x, axis=axis, keepdims=keepdims)
    out = np.dot(x, _ones(x.shape[1], x.dtype))
    return out[:, None] if keepdims else out


def rowmax(x: np.ndarray, axis: int, keepdims: bool = True) -> np.ndarray:
    r""":math:`\max_j x_{ij}` along ``axis``, as ``np.max(x, axis, keepdims=keepdims)``.

    Narrow 2-D rows are reduced column by column with ``np.maximum`` (which
    propagates NaN like ``np.max``), in cache-sized blocks of rows; a few rows are
    transposed and reduced along the leading axis instead.
    """
    if not _narrow_rows(x, axis):
        return np.max(x, axis=axis, keepdims=keepdims)
    rows, width = x.shape
    if rows < _MANY_ROWS:
        out = np.ascontiguousarray(x.T).max(axis=0)
    else:
        out = np.empty(rows, dtype=x.dtype)
        for start in range(0, rows, _ROW_BLOCK):
            block, acc = x[start:start + _ROW_BLOCK], out[start:start + _ROW_BLOCK]
            np.copyto(acc, block[:, 0])
            for j in range(1, width):
                np.maximum(acc, block[:, j], out=acc)
    return out[:, None] if keepdims else out


# --------------------------------------------------------------------------- arrays
_FLOAT_KINDS = frozenset("f")
_PROMOTED_KINDS = frozenset("iub")


def float_array(value: ArrayLike, op: str, name: str) -> np.ndarray:
    """``value`` as a floating array; integers and booleans become float64.

    Raises:
        OpTypeError: for complex, string, object or other non-numeric data.
    """
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind in _FLOAT_KINDS:
        return array
    if kind in _PROMOTED_KINDS:
        return array.astype(np.float64)
    raise OpTypeError(f"{op}: {name} must be a real floating-point array, got dtype {array.dtype}")


def in_range(index: np.ndarray, size: int) -> bool:
    """Whether every entry of an integer array lies in [0, size) (true when empty): one reduction,
    since a negative entry read as unsigned is larger than any size."""
    unsigned = index.view(np.dtype(f"u{index.itemsize}")) if index.dtype.kind == "i" else index
    return not index.size or bool(unsigned.max() < size)


def index_array(value: ArrayLike, op: str, name: str, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``value`` as an integer class-index array with every entry in range."""
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise OpTypeError(f"{op}: {name} must hold integer class indices, got dtype {array.dtype}")
    if in_range(array, num_classes):
        return array  # the usual case, without masking out ignore_index first (a copy)
    valid = array if ignore_index is None else array[array != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= num_classes):
        bad = valid[(valid < 0) | (valid >= num_classes)][0]
        raise OpInputError(f"{op}: {name} holds class index {int(bad)}, outside [0, {num_classes - 1}]")
    return array


def same_shape(op: str, arrays: dict[str, np.ndarray]) -> None:
    """Require all ``arrays`` to have one shape."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise OpInputError(f"{op}: shapes must match, got {listed}")


def grad_like(grad: ArrayLike, shape: tuple[int, ...], op: str) -> np.ndarray:
    """The upstream gradient, which must have the output's ``shape``."""
    array = float_array(grad, op, "grad")
    if array.shape != shape:
        raise OpInputError(f"{op}: grad has shape {array.shape}, expected the output shape {shape}")
    return array


def result_like(result: ArrayLike, input: np.ndarray, op: str) -> np.ndarray:
    """The saved forward output passed as ``result=``: the forward's array, so the input's shape and dtype.

    Raises:
        OpTypeError: when ``result`` is not an array of the input's floating dtype (an integer or
            float64 result of a float32 input was not produced by the forward).
        OpInputError: when its shape is not the input's.
    """
    if not isinstance(result, np.ndarray) or result.dtype != input.dtype:
        dtype = result.dtype if isinstance(result, np.ndarray) else type(result).__name__
        raise OpTypeError(f"{op}: result must be the forward's output, an array of the input's dtype "
                          f"{input.dtype}, got {dtype}")
    if result.shape != input.shape:
        raise OpInputError(f"{op}: result has shape {result.shape}, expected the input's shape {input.shape}")
    return result


def legacy_softmax_dim(ndim: int, dim: int | None, op: str) -> int:
    """PyTorch's axis choice: ``dim`` if given, else 0 for 0-, 1- and 3-D input, 1 otherwise."""
    if dim is None:
        dim = 0 if ndim in (0, 1, 3) else 1
    check_integer(op, "dim", dim)
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise OpParameterError(f"{op}: dim={dim} is out of range for an input with {ndim} dimensions")
    return dim


# --------------------------------------------------------------------------- parameters
def check_real(op: str, name: str, value: object) -> float:
    """A finite real number, returned as a Python float (a weak NumPy scalar)."""
    if type(value) is float and math.isfinite(value):  # the usual case, before the costlier ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise OpParameterError(f"{op}: {name} must be a finite real number, got {value!r}")
    return float(value)


def check_positive(op: str, name: str, value: object) -> float:
    """A real number > 0."""
    number = check_real(op, name, value)
    if number <= 0:
        raise OpParameterError(f"{op}: {name} must be > 0, got {value!r}")
    return number


def check_nonnegative(op: str, name: str, value: object) -> float:
    """A real number >= 0."""
    number = check_real(op, name, value)
    if number < 0:
        raise OpParameterError(f"{op}: {name} must be >= 0, got {value!r}")
    return number


def check_interval(op: str, name: str, value: object, low: float, high: float) -> float:
    """A real number in the closed interval [low, high]."""
    number = check_real(op, name, value)
    if not low <= number <= high:
        raise OpParameterError(f"{op}: {name} must be in [{low}, {high}], got {value!r}")
    return number


def check_at_least(op: str, name: str, value: object, other: str, other_value: float) -> float:
    """A real number >= the (already checked) parameter ``other`` (PyTorch refuses hardtanh's max_val < min_val)."""
    number = check_real(op, name, value)
    if number < other_value:
        raise OpParameterError(f"{op}: {name} must be >= {other} ({other_value!r}), got {value!r}")
    return number


def check_choice(op: str, name: str, value: object, choices: tuple[object, ...]) -> object:
    """One of ``choices``."""
    if value not in choices:
        raise OpParameterError(f"{op}: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_integer(op: str, name: str, value: object) -> int | None:
    """An integer (None passes: it means 'PyTorch's default choice')."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OpParameterError(f"{op}: {name} must be an integer, got {value!r}")
    return int(value)


def check_bool(op: str, name: str, value: object) -> bool:
    """True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise OpParameterError(f"{op}: {name} must be True or False, got {value!r}")
    return bool(value)


def reject_unknown(op: str, extra: dict[str, object]) -> None:
    """Raise for keyword arguments the op does not take."""
    if extra:
        raise OpParameterError(f"{op}: unknown parameter(s) {', '.join(sorted(extra))}")


# --------------------------------------------------------------------------- reductions
REDUCTIONS = ("none", "mean", "sum")


def _count(shape: tuple[int, ...], reduction: str, denominator: float | None) -> float:
    """What ``mean`` (element count) or ``batchmean`` (first axis) divides by."""
    if denominator is not None:
        return denominator
    if reduction == "batchmean":
        return shape[0] if shape else 1
    return math.prod(shape)


def reduce(loss: np.ndarray, reduction: str, denominator: float | None = None) -> np.ndarray:
    """Apply a loss reduction: ``none`` keeps the array, ``sum`` adds, ``mean``
    divides the sum by ``denominator`` (default: the element count) and
    ``batchmean`` by the size of the first axis (``kl_div``)."""
    if reduction == "none":
        return loss
    total = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return total
    count = _count(loss.shape, reduction, denominator)
    if count == 0:  # nothing counted (every target ignored, or an empty batch): NaN, as PyTorch
        return loss.dtype.type(math.nan)
    return total / loss.dtype.type(count)


def reduce_vjp(grad: ArrayLike, shape: tuple[int, ...], dtype: np.dtype, reduction: str, op: str,
               denominator: float | None = None, *, spread: bool = True) -> np.ndarray:
    """Adjoint of :func:`reduce`: the upstream gradient spread over ``shape``.

    With ``spread=False`` a reduced loss's gradient stays one 0-d value (it
    broadcasts where it is used: ``2 * g`` is then one multiply, not a pass);
    the kernel makes each gradient full-sized at the end (:func:`full_size`).
    """
    g = float_array(grad, op, "grad")
    if reduction == "none":
        if g.shape != shape:
            raise OpInputError(f"{op}: grad has shape {g.shape}, expected the unreduced loss shape {shape}")
        return g.astype(dtype, copy=False)
    if g.size != 1:
        raise OpInputError(f"{op}: grad must be a scalar for reduction={reduction!r}, got shape {g.shape}")
    scale = g.reshape(()).astype(dtype)
    if reduction in ("mean", "batchmean"):
        count = _count(shape, reduction, denominator)
        # Nothing counted: no element reaches the loss, so every gradient is 0 (as PyTorch).
        scale = scale / dtype.type(count) if count else np.zeros((), dtype)
    return _repeated(scale, shape) if spread else scale


def _repeated(value: np.ndarray | np.generic, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only view repeating one value over ``shape`` (what ``np.broadcast_to`` gives for a
    scalar, at a third of its cost: it runs on every loss's backward)."""
    view = np.ndarray(shape, dtype=value.dtype, buffer=np.ascontiguousarray(value), strides=(0,) * len(shape))
    view.flags.writeable = False
    return view


def full_size(gradient: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``gradient`` as a writable array of ``like``'s shape (copied only if it is smaller:
    a gradient computed from a reduced loss's 0-d upstream value and constants)."""
    if np.shape(gradient) == like.shape and isinstance(gradient, np.ndarray):
        return gradient
    return np.array(np.broadcast_to(gradient, like.shape), dtype=np.result_type(gradient, like.dtype))


def optional_array(value: ArrayLike | None, op: str, name: str, like: np.ndarray) -> np.ndarray | float:
    """An optional array parameter (``weight``, ``pos_weight``): 1.0 when None,
    else a float array in ``like``'s dtype that broadcasts against ``like``."""
    if value is None:
        return 1.0
    array = float_array(value, op, name).astype(like.dtype, copy=False)
    try:
        np.broadcast_shapes(array.shape, like.shape)
    except ValueError:
        raise OpInputError(f"{op}: {name} of shape {array.shape} does not broadcast to the input shape {like.shape}") from None
    return array


def broadcast_input(value: np.ndarray, op: str, name: str, like: np.ndarray) -> np.ndarray:
    """An input that may broadcast against ``like`` (gaussian_nll_loss's ``var``).

    As in PyTorch, an array with one dimension fewer than ``like`` gets a
    trailing axis of size 1.
    """
    if value.ndim == like.ndim - 1:
        value = value[..., None]
    try:
        if np.broadcast_shapes(value.shape, like.shape) != like.shape:
            raise ValueError
    except ValueError:
        raise OpInputError(f"{op}: {name} of shape {value.shape} does not broadcast to the input shape {like.shape}") from None
    return value


def sum_to(gradient: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient back to the shape of an input that :func:`broadcast_input` expanded
    (the adjoint of that broadcast): a missing trailing axis first, then size-1 axes."""
    if gradient.shape == shape:
        return gradient
    expanded = shape + (1,) if len(shape) == gradient.ndim - 1 else shape
    axes = tuple(i for i, n in enumerate(expanded) if n == 1 and gradient.shape[i] != 1)
    return gradient.sum(axis=axes, keepdims=True).reshape(shape)


# --------------------------------------------------------------------------- class losses
def class_axis(x: np.ndarray, op: str) -> int:
    """The class axis: 1 for (N, C, ...) input, 0 for a single (C,) row."""
    if x.ndim == 0:
        raise OpInputError(f"{op}: input must have a class axis, got a 0-d array")
    return 1 if x.ndim >= 2 else 0


def class_weight(weight: ArrayLike | None, op: str, x: np.ndarray, dim: int) -> np.ndarray | float:
    """Per-class weights of shape (C,), shaped to broadcast along the class axis (1.0 for None)."""
    if weight is None:
        return 1.0
    w = float_array(weight, op, "weight").astype(x.dtype, copy=False)
    if w.shape != (x.shape[dim],):
        raise OpInputError(f"{op}: weight must have shape ({x.shape[dim]},) (one per class), got {w.shape}")
    return w.reshape((-1,) + (1,) * (x.ndim - dim - 1))


#: :func:`class_targets`' mask when every row counts (nothing to mask, count or multiply by).
ALL_ROWS = True


def class_targets(target: ArrayLike, op: str, x: np.ndarray, dim: int, ignore_index: int | None,
                  allow_probabilities: bool) -> tuple[np.ndarray, np.ndarray | bool | None]:
    """Targets along the class axis, and the mask of rows that count.

    Integer targets are class indices, shaped like the input without its class
    axis: they come back as indices with a unit class axis (``ignore_index``
    rows replaced by class 0, for :func:`pick` and :func:`add_at_targets`)
    and the mask of the rows that count, or :data:`ALL_ROWS` when every row
    does. Float targets (where allowed) are probabilities of the input's
    shape, and the mask is None.
    """
    array = np.asarray(target)
    if array.dtype.kind in "iu":
        expected = x.shape[:dim] + x.shape[dim + 1:]
        if array.shape != expected:
            raise OpInputError(f"{op}: class-index target must have shape {expected} for input {x.shape}, "
                               f"got {array.shape}")
        num_classes = x.shape[dim]
        if in_range(array, num_classes) and (ignore_index is None or not 0 <= ignore_index < num_classes):
            return unit_axis(array, dim), ALL_ROWS  # no target can equal ignore_index: no search
        index_array(array, op, "target", num_classes, ignore_index)
        if ignore_index is None or not np.any(ignored := array == ignore_index):
            return unit_axis(array, dim), ALL_ROWS
        return unit_axis(np.where(ignored, 0, array), dim), ~ignored
    if not allow_probabilities:
        raise OpTypeError(f"{op}: target must hold integer class indices, got dtype {array.dtype}")
    probabilities = float_array(array, op, "target")
    if probabilities.shape != x.shape:
        raise OpInputError(f"{op}: probability target must have the input's shape {x.shape}, got {probabilities.shape}")
    return probabilities, None


def class_sum(values: np.ndarray | float, num_classes: int) -> np.ndarray | float:
    """Sum over the classes of a per-class weight expression (``num_classes`` times a scalar)."""
    if np.ndim(values) == 0:
        return values * num_classes
    return np.sum(values)


def one_hot(index: np.ndarray, x: np.ndarray, dim: int) -> np.ndarray:
    """One-hot rows of ``x``'s shape and dtype from indices with a unit class axis."""
    rows = np.zeros(x.shape, dtype=x.dtype)
    np.put_along_axis(rows, index, 1, axis=dim)
    return rows


@functools.lru_cache(maxsize=64)
def _row_starts(shape: tuple[int, ...], dim: int) -> np.ndarray:
    """Read-only flat position of each row's first class (and inner position), in a C-contiguous
    array of ``shape``: the part of :func:`_target_positions` that depends on the shape only
    (cached: a trainer calls every loss with one batch shape)."""
    classes, inner = shape[dim], math.prod(shape[dim + 1:])
    stride = classes * inner
    starts = np.arange(0, math.prod(shape[:dim]) * stride, stride).reshape(shape[:dim] + (1,) * (len(shape) - dim))
    if inner > 1:
        starts = starts + np.arange(inner).reshape(shape[dim + 1:])
    starts.flags.writeable = False
    return starts


def _target_positions(index: np.ndarray, dim: int, shape: tuple[int, ...]) -> np.ndarray:
    """Flat positions, in a C-contiguous array of ``shape``, of each row's target class.

    ``x.reshape(-1)[positions]`` is 3-4x faster than ``np.take_along_axis``.
    """
    inner = math.prod(shape[dim + 1:])
    return _row_starts(shape, dim) + (index if inner == 1 else index * inner)


def pick(values: np.ndarray | float, index: np.ndarray, dim: int) -> np.ndarray | float:
    """Each row's value at its target class, shaped like ``index``.

    ``values`` is an array of the input's shape, or a per-class weight shaped
    by :func:`class_weight` (or its 1.0 for None, returned as is).
    """
    if isinstance(values, float):
        return values
    if values.ndim != index.ndim:
        return values.reshape(-1)[index]  # (C, 1, ...) per-class weights
    if not values.flags.c_contiguous:
        return np.take_along_axis(values, index, axis=dim)
    return values.reshape(-1)[_target_positions(index, dim, values.shape)]


def add_at_targets(base: np.ndarray | float, index: np.ndarray, values: np.ndarray | float, dim: int,
                   like: np.ndarray, fresh: bool) -> np.ndarray:
    """``base`` (broadcast to ``like``) plus ``values`` added at each row's target class.

    ``fresh`` says ``base`` is a temporary of the kernel's own, which is then
    updated in place (no copy) when it already has ``like``'s shape and dtype.
    """
    if not (fresh and isinstance(base, np.ndarray) and base.shape == like.shape and base.dtype == like.dtype
            and base.flags.c_contiguous):
        base = np.array(np.broadcast_to(base, like.shape), dtype=like.dtype, order="C")
    flat = base.reshape(-1)  # a view, since base is C-contiguous
    flat[_target_positions(index, dim, base.shape)] += values
    return base


def row_target(target: ArrayLike, op: str, x: np.ndarray, dim: int) -> np.ndarray:
    """A per-row target (one value per row, e.g. +-1 labels), shaped to broadcast along the class axis."""
    array = float_array(target, op, "target")
    expected = x.shape[:dim] + x.shape[dim + 1:]
    if array.shape != expected:
        raise OpInputError(f"{op}: target must have shape {expected} (one per row) for input {x.shape}, got {array.shape}")
    return unit_axis(array, dim)


def class_mean_denominator(keep: np.ndarray | bool | None, weight: np.ndarray | float, index: np.ndarray,
                           dim: int, rows: int) -> float:
    """What PyTorch's 'mean' divides class losses by: the summed weight of the counted
    targets for class indices, else the number of rows."""
    if keep is None or (keep is ALL_ROWS and isinstance(weight, float)):
        return rows
    if isinstance(weight, float):
        return float(np.count_nonzero(keep))
    picked = np.squeeze(pick(weight, index, dim), axis=dim)
    if keep is ALL_ROWS:
        return float(np.sum(np.broadcast_to(picked, index.shape[:dim] + index.shape[dim + 1:])))
    return float(np.sum(np.broadcast_to(picked, keep.shape)[keep]))


def counted(values: np.ndarray, keep: np.ndarray | bool | None) -> np.ndarray:
    """``values`` (one per row) with the rows that do not count (``ignore_index`` targets) zeroed;
    ``keep`` as :func:`class_targets` returns it (None or :data:`ALL_ROWS`: every row counts)."""
    return values if keep is None or keep is ALL_ROWS else values * keep

"""Max, average and adaptive average pooling: window geometry, the arg-max scan and its scatter."""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels import _parallel
from symdl.kernels._layers.common import (ArrayLike, Arrays, Pads, _batch, _channel_step, _ints, _offsets, _pad,
                                        _scratch, _spatial_view, gather_last, remembered)
from symdl.kernels._runtime import check_bool, in_range


#: The shortest output row the tiled arg-max scan pays for: it merges each window's rows as
#: (planes * Ho, Wo) arrays, whose copies crawl when Wo is short. Measured on 2x2 max pools with
#: indices, float32 / float64, tiled against the planes-last scan in one process: 0.75-0.81x at
#: Wo = 16 ((32, 16, 32, 32)), 0.70-0.91x at Wo = 14 ((64, 8, 28, 28)), 0.90-0.96x at Wo = 8
#: ((64, 16, 16, 16)), 0.96-1.26x at Wo = 4 ((64, 16, 8, 8)), 1.0-1.2x at Wo = 2.
TILED_MIN_ROW = 8


@dataclass(frozen=True)
class PoolPlan:
    """A pooling window's geometry, in the 2-D batched form (1-D pools are viewed with H = 1, an
    unbatched input with N = 1; ``out_shape`` is the caller's, without N then)."""

    x_shape: tuple[int, int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads                     # (before, after); ``after`` includes ceil_mode's extra rows
    out_hw: tuple[int, int]
    out_shape: tuple[int, ...]     # also the shape of the indices
    divisor: Any = 1               # average pooling: int or (Ho, Wo) int array
    return_indices: bool = False
    indices: Any = None            # max-pool backward: the forward's arg-max indices, or None

    def nanoseconds(self, dtype: np.dtype) -> int:
        """A rough single-thread time of the forward in ``dtype``, to decide whether splitting the
        batch pays: about a nanosecond per 8 bytes of input per window tap, and two passes more
        (the layout changes)."""
        return math.prod(self.x_shape) * (self.kernel[0] * self.kernel[1] + 2) * dtype.itemsize // 8

    def scatter_nanoseconds(self, dtype: np.dtype) -> int:
        """The same for the backward from the forward's indices (zeroing the input's gradient, one
        scatter), counted as a nanosecond per 8 bytes of input, so that only inputs from about
        8 MB are split. Measured on 2 cores, split in two against one thread: 0.8-1.2x on a
        (32, 16, 32, 32) input (2-4 MB: too short for the hand-off), 1.3-1.6x on (64, 16, 64, 64)."""
        return math.prod(self.x_shape) * dtype.itemsize // 8

    def offsets(self) -> tuple[tuple[int, tuple[slice, slice]], ...]:
        """Each kernel offset and the slices of the padded input it meets."""
        return _offsets(self.kernel, self.dilation, self.stride, self.out_hw)

    @property
    def tiles(self) -> bool:
        """Whether the windows tile the planes exactly (stride = kernel_size, no padding, no
        dilation, sizes multiples of the kernel) in output rows of at least
        :data:`TILED_MIN_ROW`: then :func:`_tiled_max_scan` applies."""
        return (self.stride == self.kernel and self.dilation == (1, 1) and self.pads == ((0, 0), (0, 0))
                and self.x_shape[2:] == (self.out_hw[0] * self.kernel[0], self.out_hw[1] * self.kernel[1])
                and self.out_hw[1] >= TILED_MIN_ROW)


def _pool_size(op: str, size: int, pad: int, kernel: int, stride: int, dilation: int, ceil_mode: bool,
               shape: tuple[int, ...]) -> tuple[int, int]:
    """Output length and the extra padding after the input that ceil_mode needs (PyTorch's rule:
    rounding down, or up with ceil_mode, but the last window must start inside the input or the
    left padding; an empty output is an error)."""
    span = dilation * (kernel - 1) + 1
    top = size + 2 * pad - span
    out = (-(-top // stride) if ceil_mode else top // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    if out < 1:
        raise OpInputError(f"{op}: the window {span} (dilation * (kernel_size - 1) + 1) is larger than the "
                           f"padded input {size + 2 * pad} (input shape {shape}); the output would be empty")
    return out, max(0, (out - 1) * stride + span - size - 2 * pad)


def pool_plan(op: str, arrays: Arrays, *, indices: ArrayLike = None, **options: Any) -> PoolPlan:
    """Check and resolve a max/avg pool call on input (N, C, *S) or unbatched (C, *S); a max-pool
    VJP's ``indices`` (the forward's arg-max) are checked against the plan and attached to it."""
    plan = _pool_geometry(op, arrays, **options)
    if indices is None:
        return plan
    index = np.asarray(indices)
    if index.shape != plan.out_shape or index.dtype.kind not in "iu":
        raise OpInputError(f"{op}: indices must be an integer array of the output's shape {plan.out_shape}, "
                           f"got {index.dtype} {index.shape}")
    plane = plan.x_shape[2] * plan.x_shape[3]
    # -1 marks a window wholly in the padding, which only a dilated window can be; anywhere else
    # it would scatter into the previous plane's last element
    lowest = -1 if max(plan.dilation) > 1 else 0
    if index.size and (not in_range(index, plane) if lowest == 0 else index.min() < lowest or index.max() >= plane):
        raise OpInputError(f"{op}: indices must lie in [0, {plane}) (flat positions in each input plane"
                           + ("; -1 for a window wholly in the padding)" if lowest else ")"))
    return PoolPlan(**{**plan.__dict__, "indices": index})


@remembered
def _pool_geometry(op: str, arrays: Arrays, *, spatial: int, kernel_size: object, stride: object = None,
                   padding: object = 0, dilation: object = 1, ceil_mode: object = False,
                   count_include_pad: object = True, divisor_override: object = None, return_indices: object = False,
                   average: bool = False) -> PoolPlan:
    """The pool's geometry from the input's shape and the options (no array values)."""
    (x,) = arrays
    batch = _batch(op, x, spatial)
    kernel_t = _ints(op, "kernel_size", kernel_size, spatial, 1)
    stride_t = kernel_t if stride is None or stride == () else _ints(op, "stride", stride, spatial, 1)
    pad_t = _ints(op, "padding", padding, spatial, 0)
    dilation_t = _ints(op, "dilation", dilation, spatial, 1)
    if any(2 * p > k for p, k in zip(pad_t, kernel_t)):
        raise OpParameterError(f"{op}: padding {pad_t} must be at most half of kernel_size {kernel_t}")
    for name, flag in (("ceil_mode", ceil_mode), ("count_include_pad", count_include_pad),
                       ("return_indices", return_indices)):
        check_bool(op, name, flag)
    sizes = [_pool_size(op, batch.shape[2 + i], pad_t[i], kernel_t[i], stride_t[i], dilation_t[i], bool(ceil_mode),
                        x.shape) for i in range(spatial)]
    out_t = tuple(s for s, _ in sizes)
    pads = tuple((p, p + extra) for p, (_, extra) in zip(pad_t, sizes))
    x_shape = (*batch.shape[:2], *_spatial_view(spatial, batch.shape[2:], 1))
    plan = PoolPlan(
        x_shape=x_shape, kernel=_spatial_view(spatial, kernel_t, 1), stride=_spatial_view(spatial, stride_t, 1),
        dilation=_spatial_view(spatial, dilation_t, 1), pads=((0, 0), pads[0]) if spatial == 1 else pads,
        out_hw=_spatial_view(spatial, out_t, 1), out_shape=batch.caller_shape((*batch.shape[:2], *out_t)),
        return_indices=bool(return_indices),
    )
    if average:
        return _with_divisor(op, plan, pad_t, spatial, bool(count_include_pad), divisor_override)
    return plan


def _window_counts(size: int, pad: int, kernel: int, stride: int, out: int, include_pad: bool) -> np.ndarray:
    """Elements each window holds along one axis: inside the input, or inside input + padding
    (PyTorch's count_include_pad, where ceil_mode's extra windows are still clipped)."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad)
    if include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _with_divisor(op: str, plan: PoolPlan, pad_t: tuple[int, ...], spatial: int, include_pad: bool,
                  divisor_override: object) -> PoolPlan:
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral) \
                or divisor_override == 0:
            raise OpParameterError(f"{op}: divisor_override must be a non-zero int or None, got {divisor_override!r}")
        return PoolPlan(**{**plan.__dict__, "divisor": int(divisor_override)})
    pads = _spatial_view(spatial, pad_t, 0)
    counts = [_window_counts(plan.x_shape[2 + i], pads[i], plan.kernel[i], plan.stride[i], plan.out_hw[i],
                             include_pad) for i in range(2)]
    divisor = np.outer(counts[0], counts[1])
    uniform = divisor.min() == divisor.max()
    divisor.flags.writeable = False  # the plan is remembered and shared between calls
    return PoolPlan(**{**plan.__dict__, "divisor": int(divisor.flat[0]) if uniform else divisor})


def _divide(values: np.ndarray, divisor: Any) -> np.ndarray:
    """``values / divisor`` in ``values``' dtype (exact for object arrays)."""
    if isinstance(divisor, np.ndarray):
        divisor = divisor.astype(values.dtype)
    elif values.dtype == object:
        divisor = Fraction(divisor)
    return values / divisor


def avg_pool_forward(arrays: Arrays, plan: PoolPlan) -> np.ndarray:
    r""":math:`y_{n,c,p} = \frac{1}{D_p} \sum_{k} x_{n,c,s p + k - \text{pad}}` (zero padding; :math:`D_p`
    the window size, the count of real elements, or ``divisor_override``)."""
    (x,) = arrays
    xp = _pad(x.reshape(plan.x_shape), plan.pads)
    total = None
    for _, where in plan.offsets():
        total = xp[:, :, where[0], where[1]].copy() if total is None else np.add(total, xp[:, :, where[0], where[1]],
                                                                                  out=total)
    return _divide(total, plan.divisor).reshape(plan.out_shape)


def avg_pool_backward(grad: np.ndarray, arrays: Arrays, plan: PoolPlan) -> tuple[Any]:
    r""":math:`\bar x_{n,c,q} = \sum_{p, k:\, s p + k - \text{pad} = q} \bar y_{n,c,p} / D_p`: each window
    spreads its upstream gradient evenly (one strided add per kernel offset)."""
    (x,) = arrays
    share = _divide(grad.reshape(*plan.x_shape[:2], *plan.out_hw), plan.divisor)
    (top, bottom), (left, right) = plan.pads
    h, w = plan.x_shape[2:]
    full = np.zeros((*plan.x_shape[:2], h + top + bottom, w + left + right), dtype=share.dtype)
    for _, where in plan.offsets():
        full[:, :, where[0], where[1]] += share
    return (np.ascontiguousarray(full[:, :, top:top + h, left:left + w]).reshape(x.shape),)


def _planes_last(x4: np.ndarray, pads: Pads, fill: float) -> np.ndarray:
    """(N, C, H, W) as a ``fill``-padded (Hp, Wp, N*C) copy in a scratch buffer.

    Pooling windows are strided views; with the planes last, each view's inner axis is
    N*C contiguous elements instead of Wo strided ones, so NumPy's loops run long (a
    (64, 16, 8, 8) max-pool's index pass: 4x faster).
    """
    n, c, h, w = x4.shape
    (top, bottom), (left, right) = pads
    planes = n * c
    out = _scratch("planes", (h + top + bottom, w + left + right, planes), x4.dtype)
    if top or bottom or left or right:
        out.fill(fill)
    source = x4.reshape(planes, h, w).transpose(1, 2, 0)
    step = _channel_step(planes, h * w * x4.itemsize)
    for first in range(0, planes, step):
        gather_last(out[top:top + h, left:left + w, first:first + step], source[:, :, first:first + step])
    return out


def _planes_first(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(Ho, Wo, planes) written into ``out``, a C-contiguous (N, C, Ho, Wo) array (or a batch
    chunk's rows of one) with N * C = planes."""
    out.reshape(-1, *values.shape[:2])[...] = values.transpose(2, 0, 1)
    return out


def _set_where(tap: np.ndarray, k: Any, hit: np.ndarray, scratch: np.ndarray) -> None:
    """``tap[hit] = k`` (an int, or an array of ``tap``'s unsigned dtype) for an unsigned ``tap``, as
    ``tap += (k - tap) * hit`` modulo 2^bits: three ufunc passes, 5-20x faster than a masked copy
    of a scalar (np.copyto(where=), np.putmask)."""
    np.subtract(k if isinstance(k, np.ndarray) else tap.dtype.type(k), tap, out=scratch)
    scratch *= hit.view(np.uint8)
    tap += scratch


def _window_starts(pads: Pads, stride: tuple[int, int], out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The input row and column where each output row and column's window starts (negative in
    the padding)."""
    (top, _), (left, _) = pads
    return np.arange(out_hw[0]) * stride[0] - top, np.arange(out_hw[1]) * stride[1] - left


@functools.lru_cache(maxsize=64)
def _arg_max_tables(w: int, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int], pads: Pads,
                    out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read-only tables turning a window's tap k into a flat position in its (H, W) plane: the
    displacement of tap k from the window's start (one more entry, 0, for 'no tap'), and each
    window's start ``row * W + column``, shaped (Ho, Wo, 1) to broadcast over the planes."""
    kw, (dh, dw) = kernel[1], dilation
    taps = kernel[0] * kernel[1]
    displacement = np.array([(k // kw) * dh * w + (k % kw) * dw for k in range(taps)] + [0], dtype=np.int64)
    rows, columns = _window_starts(pads, stride, out_hw)
    starts = (rows[:, None] * w + columns[None, :])[:, :, None]
    for table in (displacement, starts):
        table.flags.writeable = False
    return displacement, starts


def _max_scan(xt: np.ndarray, plan: PoolPlan, want_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Window maxima of the planes-last, -inf padded input (:func:`_planes_last`), as
    (Ho, Wo, N*C), and, if asked, PyTorch's flat arg-max indices in the same layout.

    The arg-max records, per window, the offset k holding the maximum: in the scan itself
    (tap k replaces the best only when strictly greater, so the *first* maximum wins, PyTorch's
    choice on ties) when that is exact, i.e. when no window holds a NaN (the last NaN wins its
    window, as in PyTorch, but NaNs compare false) and, with padding, no maximum is -inf (a
    padded tap must not win a tie); otherwise by :func:`_exact_taps`. The flat position in the (H, W) plane is
    the window's start plus offset k's displacement, one table lookup. A window lying wholly
    in the padding (possible with dilation) has maximum -inf and index -1 (PyTorch leaves an
    arbitrary index there).
    """
    offsets = plan.offsets()
    first, rest = offsets[0], offsets[1:]
    best = xt[first[1]].copy()
    if not want_indices:
        for _, where in rest:
            np.maximum(best, xt[where], out=best)
        return best, None
    none = len(offsets)  # the offset of no tap: the window lies wholly in the padding
    kind = np.min_scalar_type(none)  # unsigned: _set_where wraps around harmlessly
    tap, scratch = np.zeros(best.shape, dtype=kind), np.empty(best.shape, dtype=kind)
    for k, where in rest:
        window = xt[where]
        _set_where(tap, k, window > best, scratch)
        np.maximum(best, window, out=best)
    padded = any(side for pair in plan.pads for side in pair)
    if np.isnan(best).any() or (padded and np.isneginf(best).any()):
        tap = _exact_taps(xt, plan, best, scratch)
    displacement, starts = _arg_max_tables(plan.x_shape[3], plan.kernel, plan.dilation, plan.stride, plan.pads,
                                           plan.out_hw)
    index = np.take(displacement, tap)
    index += starts
    if max(plan.dilation) > 1:  # only dilated windows can lie wholly in the padding
        index[tap == none] = -1
    return best, index


def _exact_taps(xt: np.ndarray, plan: PoolPlan, best: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Each window's first offset holding its maximum ``best``, or its last NaN (taps in the padding
    never count; ``len(offsets)`` where no tap does)."""
    offsets = plan.offsets()
    (h, w), kw, (dh, dw) = plan.x_shape[2:], plan.kernel[1], plan.dilation
    rows, columns = _window_starts(plan.pads, plan.stride, plan.out_hw)
    tap = np.full(best.shape, len(offsets), dtype=scratch.dtype)
    nan = bool(np.isnan(best).any())
    # reversed, so the first maximum is written last; then, forward, every NaN tap, so the
    # last NaN wins its window (PyTorch's loop takes a value when it is greater or NaN)
    passes = [(k, where, False) for k, where in reversed(offsets)] + [(k, where, True) for k, where in offsets if nan]
    for k, where, for_nan in passes:
        window = xt[where]
        hit = np.isnan(window) if for_nan else window == best
        row, column = rows + (k // kw) * dh, columns + (k % kw) * dw
        inside = ((row >= 0) & (row < h))[:, None] & ((column >= 0) & (column < w))[None, :]
        if not inside.all():
            hit &= inside[:, :, None]
        _set_where(tap, k, hit, scratch)
    return tap


def max_pool_forward(arrays: Arrays, plan: PoolPlan) -> Any:
    r""":math:`y_{n,c,p} = \max_k x_{n,c,s p + d k - \text{pad}}` (-inf padding); with
    ``return_indices`` also the flat position of the first maximum in each (H, W) plane. A large
    batch is split into chunks that run on :mod:`~symdl.kernels._parallel`'s threads."""
    (x,) = arrays
    x4 = x.reshape(plan.x_shape)
    n, c = plan.x_shape[:2]
    out = np.empty((n, c, *plan.out_hw), dtype=x.dtype)
    index = np.empty(out.shape, dtype=np.int64) if plan.return_indices else None
    _parallel.over_chunks(_parallel.chunks(n, plan.nanoseconds(x.dtype), x.dtype),
                          lambda start, stop: _max_pool_chunk(x4[start:stop], plan, out[start:stop],
                                                              None if index is None else index[start:stop]))
    out = out.reshape(plan.out_shape)
    return (out, index.reshape(plan.out_shape)) if index is not None else out


def _max_pool_chunk(x4: np.ndarray, plan: PoolPlan, out: np.ndarray | None, index: np.ndarray | None) -> None:
    """The maxima of the samples ``x4`` into ``out`` (their rows of the output; None: not wanted)
    and, into ``index`` when given, their positions."""
    if plan.tiles and x4.dtype.kind == "f" and x4.flags.c_contiguous:
        maxima = np.empty((*x4.shape[:2], *plan.out_hw), dtype=x4.dtype) if out is None else out
        if _tiled_max_scan(x4, plan, maxima, index):
            return
    best, found = _max_scan(_planes_last(x4, plan.pads, -np.inf), plan, index is not None)
    if out is not None:
        _planes_first(best, out)
    if index is not None:
        _planes_first(found, index)


def _first_maxima(candidates: list[np.ndarray], codes: list[Any] | None, best: np.ndarray,
                  code_kind: np.dtype) -> np.ndarray | None:
    """The elementwise maximum of ``candidates`` (same-shaped views) into ``best`` and, when
    ``codes`` is given, the code of the first candidate holding it (a later one wins only when
    strictly greater). Each candidate is first copied into a contiguous buffer: a strided copy
    costs a third of a strided comparison."""
    np.copyto(best, candidates[0])
    code = None if codes is None else np.empty(best.shape, dtype=code_kind)
    if code is not None:
        code[...] = codes[0]
    value, hit, scratch = np.empty_like(best), np.empty(best.shape, dtype=bool), np.empty(best.shape, code_kind)
    for k, candidate in enumerate(candidates[1:], 1):
        np.copyto(value, candidate)
        if code is not None:
            np.greater(value, best, out=hit)
            _set_where(code, codes[k], hit, scratch)
        np.maximum(best, value, out=best)
    return code


def _tiled_max_scan(x4: np.ndarray, plan: PoolPlan, out: np.ndarray, index: np.ndarray | None) -> bool:
    """:func:`_max_scan` for windows that tile the planes (:attr:`PoolPlan.tiles`), in the (N, C,
    H, W) layout itself: no transposing copies in or out (0.64-0.91x of the planes-last scan's time
    from Wo = 14, :data:`TILED_MIN_ROW`).

    A window's row is kw consecutive elements, so the first maximum of every row of every window
    comes from kw strided views of the whole input; the window's rows, kh views of those row
    maxima, are then merged in order, each row's code (its tap, ``b``) offset by ``a * kw``. Both
    merges keep the earlier candidate on ties, so the code is the window's first maximum in
    row-major order, PyTorch's choice. Returns False (``out`` and ``index`` unfinished) when a
    window holds a NaN, whose arg-max is its last NaN: strict comparisons cannot see it.
    """
    (kh, kw), (ho, wo) = plan.kernel, plan.out_hw
    planes = x4.shape[0] * x4.shape[1]
    kind = np.min_scalar_type(kh * kw)
    rows = x4.reshape(-1, kw)
    row_best = np.empty(rows.shape[0], dtype=x4.dtype)
    row_code = _first_maxima([rows[:, b] for b in range(kw)], None if index is None else list(range(kw)),
                             row_best, kind)
    best = out.reshape(planes * ho, wo)
    window_rows = row_best.reshape(planes * ho, kh, wo)
    row_codes = None if row_code is None else row_code.reshape(planes * ho, kh, wo)
    code = _first_maxima([window_rows[:, a] for a in range(kh)],
                         None if row_codes is None else [row_codes[:, a] + kind.type(a * kw) if a else row_codes[:, 0]
                                                         for a in range(kh)],
                         best, kind)
    if np.isnan(best).any():
        return False
    if index is not None:
        displacement, starts = _arg_max_tables(plan.x_shape[3], plan.kernel, plan.dilation, plan.stride, plan.pads,
                                               plan.out_hw)
        np.take(displacement, code, out=index.reshape(planes * ho, wo))
        index.reshape(planes, ho, wo)[...] += starts[:, :, 0]
    return True


def max_pool_backward(grad: np.ndarray, arrays: Arrays, plan: PoolPlan) -> tuple[np.ndarray]:
    r""":math:`\bar x_q = \sum_{p:\, \operatorname{argmax}_p = q} \bar y_p`: each window's upstream
    gradient goes to its (first) maximum. Uses ``plan.indices`` (from the forward's
    ``return_indices=True``) when given, else rescans the windows. A large batch is split into
    chunks, each scattering into its own samples.
    """
    (x,) = arrays
    n, c = plan.x_shape[:2]
    grad4 = grad.reshape(n, c, *plan.out_hw)
    index4 = None if plan.indices is None else plan.indices.reshape(n, c, *plan.out_hw)
    x4 = x.reshape(plan.x_shape)
    d_x = np.zeros(plan.x_shape, dtype=grad.dtype)
    work = plan.nanoseconds(grad.dtype) if index4 is None else plan.scatter_nanoseconds(grad.dtype)
    _parallel.over_chunks(_parallel.chunks(n, work, grad.dtype),
                          lambda start, stop: _max_pool_backward_chunk(
                              grad4[start:stop], x4[start:stop], None if index4 is None else index4[start:stop], plan,
                              d_x[start:stop]))
    return (d_x.reshape(x.shape),)


def _max_pool_backward_chunk(grad4: np.ndarray, x4: np.ndarray, index: np.ndarray | None, plan: PoolPlan,
                             d_x: np.ndarray) -> None:
    """The samples ``x4``'s input gradient into ``d_x`` (zeros, their rows of the result).

    When no two windows share an input element (stride >= the dilated window, the usual
    2x2/2), every input receives at most one gradient: a plain scatter, no ``np.add.at``."""
    if index is None:
        index = np.empty(grad4.shape, dtype=np.int64)
        _max_pool_chunk(x4, plan, None, index)
    n, c, h, w = x4.shape
    planes, plane, windows = n * c, h * w, plan.out_hw[0] * plan.out_hw[1]
    index, values = index.reshape(planes, windows).astype(np.int64, copy=False), grad4.reshape(planes, windows)
    # flat positions in a scratch buffer, not a fresh page-faulting array
    flat = np.add(index, (np.arange(planes, dtype=np.int64) * plane)[:, None],
                  out=_scratch("flat", (planes, windows), np.dtype(np.int64)))
    out = d_x.reshape(-1)  # a view: the chunk is C-contiguous
    if max(plan.dilation) > 1:  # only dilated windows can lie wholly in the padding (index -1): no gradient
        kept = index >= 0
        flat, values = flat[kept], values[kept]
    if all(s >= d * (k - 1) + 1 for s, d, k in zip(plan.stride, plan.dilation, plan.kernel)):
        out[flat.ravel()] = values.ravel()
    else:
        np.add.at(out, flat.ravel(), values.ravel())


@dataclass(frozen=True)
class AdaptivePlan:
    """Adaptive average pooling as two 0/1 window matrices and the window areas."""

    rows: np.ndarray      # (Ho, H): 1 where input row h is in output row i's window
    columns: np.ndarray   # (Wo, W)
    area: np.ndarray      # (Ho, Wo) int
    out_shape: tuple[int, ...]


def _adaptive_windows(size: int, out: int) -> np.ndarray:
    """PyTorch's windows: output i averages [floor(i H / Ho), ceil((i + 1) H / Ho))."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    h = np.arange(size)
    return ((h[None, :] >= start[:, None]) & (h[None, :] < end[:, None])).astype(np.int64)


@remembered
def adaptive_avg_pool_plan(op: str, arrays: Arrays, *, output_size: object) -> AdaptivePlan:
    """Check and resolve adaptive_avg_pool2d on input (N, C, H, W) or unbatched (C, H, W) (None in
    output_size keeps that size). The closed forms act on the last two axes, so they need no batched view."""
    (x,) = arrays
    batch = _batch(op, x, 2)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(batch.shape[2 + i] if v is None else v for i, v in enumerate(output_size))
    out_t = _ints(op, "output_size", output_size, 2, 1)
    rows, columns = (_adaptive_windows(batch.shape[2 + i], out_t[i]) for i in range(2))
    area = np.outer(rows.sum(1), columns.sum(1))
    for table in (rows, columns, area):
        table.flags.writeable = False  # the plan is remembered and shared between calls
    return AdaptivePlan(rows=rows, columns=columns, area=area,
                        out_shape=batch.caller_shape((*batch.shape[:2], *out_t)))


def adaptive_avg_pool_forward(arrays: Arrays, plan: AdaptivePlan) -> np.ndarray:
    r""":math:`y = (R\, x\, C^T) / A`: 0/1 window matrices R (Ho, H), C (Wo, W), areas A."""
    (x,) = arrays
    rows, columns = plan.rows.astype(x.dtype), plan.columns.astype(x.dtype)
    return _divide(np.matmul(rows, np.matmul(x, columns.T)), plan.area)


def adaptive_avg_pool_backward(grad: np.ndarray, arrays: Arrays, plan: AdaptivePlan) -> tuple[np.ndarray]:
    r""":math:`\bar x = R^T (\bar y / A)\, C`."""
    (x,) = arrays
    rows, columns = plan.rows.astype(x.dtype), plan.columns.astype(x.dtype)
    return (np.matmul(rows.T, np.matmul(_divide(grad, plan.area), columns)),)



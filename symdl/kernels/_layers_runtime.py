"""Hand-written support for the generated layer kernels (NumPy only).

Two halves:

* **plans** (``*_plan``): check the arrays and hyper-parameters of one call
  and resolve them (padding 'same', output sizes, groups) into a small frozen
  record. Every rule broken raises :class:`~symdl.errors.OpInputError` or
  :class:`~symdl.errors.OpParameterError` (both ``ValueError``) naming the op,
  the shapes and the rule.
* **closed forms** (``*_forward``, ``*_backward``): the array programs the
  kernels run, given a plan. They use only NumPy operations that are exact on
  object arrays too, so :mod:`symdl.derive_layers` runs *this code* on arrays
  of SymPy symbols and proves its output equal to SymPy's derivative of the
  layer's index-level definition.

Convolutions are im2col plus one matmul per group; col2im is a loop over the
``kh * kw`` kernel offsets (each a strided slice add over all pixels and
channels), which is faster than ``np.add.at`` and keeps the code exact on
object arrays.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels._runtime import check_bool, float_array

ArrayLike = Any
Pads = tuple[tuple[int, int], tuple[int, int]]
Arrays = tuple[Any, ...]


# --------------------------------------------------------------------------- plans, remembered
class _NotPlain(Exception):
    """An argument that cannot key the plan memo (a list, a float subclass, ...)."""


def _plain(value: object) -> tuple[type, object]:
    """``value`` with its type, as a memo key: True and 1, or 2 and 2.0, are equal and hash alike,
    but a plan checked for one must not be returned for the other (2.0 is a bad kernel_size)."""
    kind = type(value)
    if kind in (int, bool, float, str, type(None)) or (kind is tuple and all(type(v) is int for v in value)):
        return kind, value
    raise _NotPlain


#: Plans by (plan function, op, the arrays' shapes, the options with their types); cleared when full.
_PLANS: dict[tuple, Any] = {}
_PLANS_KEPT = 512


def remembered(build: Any) -> Any:
    """Memoise a plan function that depends only on its arrays' shapes and plain options.

    A layer is called with the same shapes and options every step; checking and resolving them
    again cost 20-70 us per call (a quarter of a small max-pool). Only calls that succeeded are
    remembered, so a bad call raises every time; options that are not plain (lists, NumPy
    scalars) are planned afresh each call.
    """
    def plan(op: str, arrays: Arrays, **options: object) -> Any:
        try:
            key = (build, op, tuple(None if a is None else a.shape for a in arrays),
                   tuple((name, _plain(value)) for name, value in options.items()))
        except _NotPlain:
            return build(op, arrays, **options)
        found = _PLANS.get(key)
        if found is None:
            found = build(op, arrays, **options)
            if len(_PLANS) >= _PLANS_KEPT:
                _PLANS.clear()
            _PLANS[key] = found
        return found

    plan.__name__, plan.__doc__, plan.__wrapped__ = build.__name__, build.__doc__, build  # type: ignore[attr-defined]
    return plan


# --------------------------------------------------------------------------- arrays
def floats(op: str, names: tuple[str, ...], values: tuple[ArrayLike, ...], required: tuple[str, ...]) -> Arrays:
    """Each value as a floating array (None stays None unless the name is required)."""
    out = []
    for name, value in zip(names, values):
        if value is None:
            if name in required:
                raise OpInputError(f"{op}: {name} is required, got None")
            out.append(None)
        else:
            out.append(float_array(value, op, name))
    return tuple(out)


def upstream(op: str, grad: ArrayLike, shape: tuple[int, ...], arrays: Arrays) -> np.ndarray:
    """The upstream gradient, shaped like the forward's output, in the dtype ``arrays`` promote to
    (the real inputs: the generated call leaves masks out)."""
    g = float_array(grad, op, "grad")
    if g.shape != tuple(shape):
        raise OpInputError(f"{op}: grad has shape {g.shape}, but the output has shape {tuple(shape)}")
    dtype = np.result_type(*(a for a in arrays if a is not None))
    return g.astype(dtype, copy=False)


def _rank(op: str, name: str, array: np.ndarray, ranks: tuple[int, ...]) -> None:
    if array.ndim not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise OpInputError(f"{op}: {name} must be {expected}, got shape {array.shape}")


@dataclass(frozen=True)
class Batch:
    """A conv or pool input's shape with its batch axis, and whether the caller left it out.

    As in torch.nn.functional, these ops take a batched (N, C, *S) or an unbatched (C, *S)
    input. The plans work on the batched shape (N = 1 for an unbatched input), so the closed
    forms only ever see batched arrays; the output (and so the upstream gradient and, with
    ``return_indices``, the max-pool indices) drops N again. The input gradient needs nothing:
    the backward programs return it in the input's own shape.
    """

    shape: tuple[int, ...]
    unbatched: bool

    def caller_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A batched result shape as the caller sees it (without N for an unbatched input)."""
        return shape[1:] if self.unbatched else shape


def _batch(op: str, x: np.ndarray, spatial: int) -> Batch:
    """Check that ``x`` is (C, *S) or (N, C, *S) with ``spatial`` dims in S (PyTorch's rule)."""
    rank = spatial + 2
    if x.ndim not in (rank - 1, rank):
        raise OpInputError(f"{op}: input must be {rank - 1}-D (unbatched) or {rank}-D (batched), "
                           f"got shape {x.shape}")
    unbatched = x.ndim == rank - 1
    return Batch(shape=(1, *x.shape) if unbatched else tuple(x.shape), unbatched=unbatched)


def _vector(op: str, name: str, array: np.ndarray | None, length: int, what: str) -> None:
    if array is not None and array.shape != (length,):
        raise OpInputError(f"{op}: {name} must have shape ({length},) ({what}), got {array.shape}")


def _ints(op: str, name: str, value: object, n: int, minimum: int) -> tuple[int, ...]:
    """An int or a length-``n`` tuple of ints, each >= ``minimum``, as a tuple."""
    if type(value) is int and value >= minimum:  # the usual call, without the ABC checks (every layer call)
        return (value,) * n
    items = (value,) * n if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if (not isinstance(items, (tuple, list)) or len(items) != n
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items)):
        raise OpParameterError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in items):
        raise OpParameterError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def _pad(x: np.ndarray, pads: Pads, value: float = 0) -> np.ndarray:
    """``x`` (N, C, H, W) with ``pads[0]`` rows before/after H and ``pads[1]`` columns around W."""
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


@functools.lru_cache(maxsize=256)
def _offsets(kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int]) -> tuple[tuple[int, tuple[slice, slice]], ...]:
    """For each kernel offset (row-major), its flat number and the slices of the padded
    input it meets: rows ``i*d + s*oh`` for every output row ``oh`` (likewise columns)."""
    return tuple((i * kernel[1] + j,
                  (slice(i * dilation[0], i * dilation[0] + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
                   slice(j * dilation[1], j * dilation[1] + stride[1] * (out_hw[1] - 1) + 1, stride[1])))
                 for i in range(kernel[0]) for j in range(kernel[1]))


def _out_size(op: str, size: int, pad: int, kernel: int, stride: int, dilation: int, shapes: str) -> int:
    span = dilation * (kernel - 1) + 1
    if size + pad < span:
        raise OpInputError(f"{op}: the dilated kernel {span} (dilation * (kernel_size - 1) + 1) is larger than the "
                           f"padded input {size + pad} ({shapes}); the kernel must fit in the padded input")
    return (size + pad - span) // stride + 1


# --------------------------------------------------------------------------- scratch buffers
#: Per-thread buffers for the convolutions' large intermediates (patch matrices, padded
#: copies): a fresh multi-megabyte array costs a page fault per 4 KiB page on every call,
#: often more than the copy itself. A buffer grows to the largest size asked for and is kept.
_SCRATCH = threading.local()


def _scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` in the reusable buffer ``slot`` (never returned to
    callers: every kernel result is a fresh array). Object arrays (the proofs) are not cached."""
    size = math.prod(shape)
    if dtype == object:
        return np.empty(shape, dtype=dtype)
    buffers = _SCRATCH.__dict__
    buffer = buffers.get(slot)
    if buffer is None or buffer.dtype != dtype or buffer.size < size:
        buffer = buffers[slot] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


# --------------------------------------------------------------------------- im2col / col2im
# Convolutions work in the (C, H, W, N) layout: batch innermost, so every strided window
# copy (im2col) and add (col2im) moves rows of Wo * N contiguous elements instead of Wo
# (measured 2-3x faster on the benchmark's 8x8 images than (N, C, H, W) windows).
#: Bytes of source one step of a layout change reads: the transposing copies move one
#: block of channels at a time, so the block stays in L2 while the strided reads come
#: back to each cache line (a whole-array transposed copy re-reads memory: 4x slower on
#: (32, 16, 32, 32), scripts/bench_layers.py).
TRANSPOSE_BLOCK_BYTES = 256 * 1024


def _channel_step(channels: int, channel_bytes: int) -> int:
    """Channels per block of a layout change (at least one)."""
    return max(1, min(channels, TRANSPOSE_BLOCK_BYTES // max(channel_bytes, 1)))


def _to_chwn(x: np.ndarray, pads: Pads, slot: str = "padded") -> np.ndarray:
    """(N, C, H, W) as a zero-padded (C, Hp, Wp, N) copy in a scratch buffer."""
    (top, bottom), (left, right) = pads
    n, c, h, w = x.shape
    out = _scratch(slot, (c, h + top + bottom, w + left + right, n), x.dtype)
    if top or bottom or left or right:
        out.fill(0)
    source = x.transpose(1, 2, 3, 0)
    step = _channel_step(c, h * w * n * x.itemsize)
    for start in range(0, c, step):
        out[start:start + step, top:top + h, left:left + w, :] = source[start:start + step]
    return out


def _from_chwn(y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """(C, H, W, N)-ordered data (a view is fine) as a fresh C-contiguous (N, C, H, W) array, plus a
    per-channel bias. Contiguous, as PyTorch's: the next layer's elementwise kernels would crawl
    through a (C, H, W, N)-strided array, mixing it with contiguous gradients."""
    c, h, w, n = y.shape
    out = np.empty((n, c, h, w), dtype=y.dtype if bias is None else np.result_type(y, bias))
    source = y.transpose(3, 0, 1, 2)
    step = _channel_step(c, h * w * n * y.itemsize)
    for start in range(0, c, step):
        block = slice(start, start + step)
        if bias is None:
            out[:, block] = source[:, block]
        else:
            np.add(source[:, block], bias[block].reshape(-1, 1, 1), out=out[:, block])
    return out


def _grouped_chwn(x: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, H, W) as (G, C/G, H * W * N): one transposing copy."""
    n, c, h, w = x.shape
    return _to_chwn(x, ((0, 0), (0, 0)), "grouped").reshape(groups, c // groups, h * w * n)


def im2col(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
           out_hw: tuple[int, int], groups: int) -> np.ndarray:
    r"""Patches of the padded ``xp`` (C, Hp, Wp, N) as (G, C/G * kh * kw, Ho * Wo * N).

    Row ``(c, i, j)``, column ``(oh, ow, n)`` holds :math:`x_{n, c, s_0 o_h + d_0 i, s_1 o_w + d_1 j}`:
    one strided view, one copy.
    """
    c, _, _, n = xp.shape
    s_c, s_h, s_w, s_n = xp.strides
    view = as_strided(xp, (c, kernel[0], kernel[1], out_hw[0], out_hw[1], n),
                      (s_c, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1], s_n),
                      writeable=False)
    cols = _scratch("cols", view.shape, xp.dtype)
    np.copyto(cols, view)
    return cols.reshape(groups, c // groups * kernel[0] * kernel[1], out_hw[0] * out_hw[1] * n)


def col2im(cols: np.ndarray, full_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
           dilation: tuple[int, int]) -> np.ndarray:
    """The adjoint of :func:`im2col`: (C, kh, kw, Ho, Wo, N) patches summed into (C, Hf, Wf, N)."""
    c, _, _, ho, wo, n = cols.shape
    out = _scratch("full", (c, *full_hw, n), cols.dtype)
    out.fill(0)
    for k, (rows, columns) in _offsets(kernel, dilation, stride, (ho, wo)):
        out[:, rows, columns] += cols[:, k // kernel[1], k % kernel[1]]
    return out


# --------------------------------------------------------------------------- convolution
@dataclass(frozen=True)
class ConvPlan:
    """A convolution's geometry, in the 2-D batched form (conv1d is viewed with H = 1, an unbatched
    input with N = 1; ``out_shape`` is the caller's, without N then)."""

    x_shape: tuple[int, int, int, int]       # (N, C, H, W)
    w_shape: tuple[int, int, int, int]       # conv: (O, C/G, kh, kw); transpose: (C, O/G, kh, kw)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads
    groups: int
    out_hw: tuple[int, int]                  # conv: output size; transpose: input size
    full_hw: tuple[int, int]                 # the padded (conv) or uncropped (transpose) plane
    out_shape: tuple[int, ...]               # the user-facing output shape
    input_grad: bool = True                  # False: the VJP skips the input's gradient (None)

    def view(self, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input and weight in their 2-D shapes."""
        return x.reshape(self.x_shape), w.reshape(self.w_shape)


def _conv_padding(op: str, padding: object, spatial: int, kernel: tuple[int, ...], dilation: tuple[int, ...],
                  stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Padding before/after each spatial dim: int, tuple, 'valid' or 'same' (PyTorch puts the
    odd extra element of an even kernel's 'same' padding after)."""
    if padding == "valid":
        return ((0, 0),) * spatial
    if padding == "same":
        if any(s != 1 for s in stride):
            raise OpParameterError(f"{op}: padding='same' is not supported for strided convolutions "
                                   f"(stride={stride}); PyTorch refuses it too")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, str):
        raise OpParameterError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    return tuple((p, p) for p in _ints(op, "padding", padding, spatial, 0))


def _spatial_view(spatial: int, values: tuple[int, ...], fill: int) -> tuple[int, int]:
    return (fill, values[0]) if spatial == 1 else (values[0], values[1])


def _check_groups(op: str, groups: object, channels: dict[str, int], shapes: str) -> int:
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise OpParameterError(f"{op}: groups must be a positive int, got {groups!r}")
    for what, count in channels.items():
        if count % groups:
            raise OpInputError(f"{op}: groups={groups} must divide {what} ({count}); {shapes}")
    return int(groups)


@remembered
def conv_plan(op: str, arrays: Arrays, *, spatial: int, stride: object = 1, padding: object = 0,
              dilation: object = 1, groups: object = 1, input_grad: object = True) -> ConvPlan:
    """Check and resolve a conv1d/conv2d call: input (N, C, *S) or unbatched (C, *S), weight (O, C/G, *K),
    bias (O,); ``input_grad`` (VJP only): False skips the input's gradient."""
    x, w, b = arrays
    batch = _batch(op, x, spatial)
    _rank(op, "weight", w, (spatial + 2,))
    shapes = f"input {x.shape}, weight {w.shape}"
    stride_t = _ints(op, "stride", stride, spatial, 1)
    dilation_t = _ints(op, "dilation", dilation, spatial, 1)
    n, c, spatial_in = batch.shape[0], batch.shape[1], batch.shape[2:]
    g = _check_groups(op, groups, {"in_channels": c, "out_channels": w.shape[0]}, shapes)
    if c != w.shape[1] * g:
        raise OpInputError(f"{op}: input has {c} channels but weight.shape[1] * groups = "
                           f"{w.shape[1]} * {g} = {w.shape[1] * g} ({shapes}); they must be equal")
    _vector(op, "bias", b, w.shape[0], "one per output channel")
    kernel_t = tuple(w.shape[2:])
    pads = _conv_padding(op, padding, spatial, kernel_t, dilation_t, stride_t)
    sizes = tuple(_out_size(op, spatial_in[i], sum(pads[i]), kernel_t[i], stride_t[i], dilation_t[i], shapes)
                  for i in range(spatial))
    pads2 = ((0, 0), pads[0]) if spatial == 1 else (pads[0], pads[1])
    x_shape = (n, c, *_spatial_view(spatial, spatial_in, 1))
    return ConvPlan(
        x_shape=x_shape, w_shape=(w.shape[0], w.shape[1], *_spatial_view(spatial, kernel_t, 1)),
        kernel=_spatial_view(spatial, kernel_t, 1), stride=_spatial_view(spatial, stride_t, 1),
        dilation=_spatial_view(spatial, dilation_t, 1), pads=pads2, groups=g,
        out_hw=_spatial_view(spatial, sizes, 1),
        full_hw=(x_shape[2] + sum(pads2[0]), x_shape[3] + sum(pads2[1])),
        out_shape=batch.caller_shape((n, w.shape[0], *sizes)), input_grad=check_bool(op, "input_grad", input_grad),
    )


def conv_forward(arrays: Arrays, plan: ConvPlan) -> np.ndarray:
    r""":math:`y_{n,o,p} = b_o + \sum_{c,k} x_{n, g(o) C_g + c, s p + d k - \text{pad}} w_{o,c,k}`
    as ``W_g @ im2col(x)`` for each group g."""
    x, w, b = arrays
    x4, w4 = plan.view(x, w)
    g, o = plan.groups, plan.w_shape[0]
    cols = im2col(_to_chwn(x4, plan.pads), plan.kernel, plan.stride, plan.dilation, plan.out_hw, g)
    out = np.matmul(w4.reshape(g, o // g, -1), cols, out=_scratch("product", (g, o // g, cols.shape[2]), cols.dtype))
    if b is not None and b.dtype == out.dtype:
        # the bias added while the product is still (O, pixels): contiguous rows, 2x cheaper than
        # adding it during the transposing copy (the same one addition per element)
        out += b.reshape(g, o // g, 1)
        b = None
    return _from_chwn(out.reshape(o, *plan.out_hw, plan.x_shape[0]), b).reshape(plan.out_shape)


def conv_backward(grad: np.ndarray, arrays: Arrays, plan: ConvPlan) -> tuple[Any, ...]:
    r"""Input gradient: col2im of :math:`W_g^T \bar y` (the transposed convolution of the upstream
    gradient with the flipped kernel); weight gradient: :math:`\bar y \cdot \text{im2col}(x)^T`
    (the correlation of input and upstream gradient); bias gradient: the sum of the upstream
    gradient over batch and positions."""
    x, w, b = arrays
    x4, w4 = plan.view(x, w)
    g, o = plan.groups, plan.w_shape[0]
    n, c, h, wd = plan.x_shape
    g2 = _grouped_chwn(grad.reshape(n, o, *plan.out_hw), g)
    cols = im2col(_to_chwn(x4, plan.pads), plan.kernel, plan.stride, plan.dilation, plan.out_hw, g)
    d_w = np.matmul(g2, cols.transpose(0, 2, 1)).reshape(w.shape)
    d_b = None if b is None else g2.sum(axis=-1).reshape(o)
    if not plan.input_grad:
        return None, d_w, d_b
    d_cols = np.matmul(w4.reshape(g, o // g, -1).transpose(0, 2, 1), g2,
                       out=_scratch("product", (g, cols.shape[1], g2.shape[2]), g2.dtype))
    full = col2im(d_cols.reshape(c, *plan.kernel, *plan.out_hw, n), plan.full_hw, plan.kernel, plan.stride,
                  plan.dilation)
    (top, _), (left, _) = plan.pads
    d_x = _from_chwn(full[:, top:top + h, left:left + wd], None).reshape(x.shape)
    return d_x, d_w, d_b


@remembered
def conv_transpose_plan(op: str, arrays: Arrays, *, spatial: int = 2, stride: object = 1, padding: object = 0,
                        output_padding: object = 0, groups: object = 1, dilation: object = 1) -> ConvPlan:
    """Check and resolve conv_transpose2d: input (N, C, H, W) or unbatched (C, H, W), weight (C, O/G, kh, kw),
    bias (O,)."""
    x, w, b = arrays
    batch = _batch(op, x, spatial)
    _rank(op, "weight", w, (spatial + 2,))
    shapes = f"input {x.shape}, weight {w.shape}"
    stride_t = _ints(op, "stride", stride, spatial, 1)
    dilation_t = _ints(op, "dilation", dilation, spatial, 1)
    if isinstance(padding, str):
        raise OpParameterError(f"{op}: padding must be an int or a tuple of ints, got {padding!r}")
    pad_t = _ints(op, "padding", padding, spatial, 0)
    extra = _ints(op, "output_padding", output_padding, spatial, 0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride_t, dilation_t)):
        raise OpParameterError(f"{op}: output_padding {extra} must be smaller than stride {stride_t} or "
                               f"dilation {dilation_t}")
    n, c, spatial_in = batch.shape[0], batch.shape[1], batch.shape[2:]
    g = _check_groups(op, groups, {"in_channels": c}, shapes)
    if c != w.shape[0]:
        raise OpInputError(f"{op}: input has {c} channels but weight.shape[0] is {w.shape[0]} "
                           f"({shapes}); they must be equal")
    o = w.shape[1] * g
    _vector(op, "bias", b, o, "one per output channel")
    kernel_t = tuple(w.shape[2:])
    full = tuple((spatial_in[i] - 1) * stride_t[i] + dilation_t[i] * (kernel_t[i] - 1) + 1 + extra[i]
                 for i in range(spatial))
    sizes = tuple(f - 2 * p for f, p in zip(full, pad_t))
    if any(s < 1 for s in sizes):
        raise OpInputError(f"{op}: padding {pad_t} leaves an empty output ({shapes}); the output size "
                           f"(H - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1 "
                           f"must be positive")
    return ConvPlan(
        x_shape=(n, c, *_spatial_view(spatial, spatial_in, 1)), w_shape=w.shape,
        kernel=_spatial_view(spatial, kernel_t, 1), stride=_spatial_view(spatial, stride_t, 1),
        dilation=_spatial_view(spatial, dilation_t, 1),
        pads=((pad_t[0], pad_t[0]), (pad_t[1], pad_t[1])), groups=g,
        out_hw=_spatial_view(spatial, spatial_in, 1), full_hw=_spatial_view(spatial, full, 1),
        out_shape=batch.caller_shape((n, o, *sizes)),
    )


def conv_transpose_forward(arrays: Arrays, plan: ConvPlan) -> np.ndarray:
    r"""The adjoint of conv2d's input map: :math:`y = \text{col2im}(W_g^T x)`, cropped by ``padding``."""
    x, w, b = arrays
    x4, _ = plan.view(x, w)
    g, (n, c, h, wd) = plan.groups, plan.x_shape
    o, (ho, wo) = w.shape[1] * g, plan.out_shape[-2:]
    cols = np.matmul(w.reshape(g, c // g, -1).transpose(0, 2, 1), _grouped_chwn(x4, g))
    full = col2im(cols.reshape(o, *plan.kernel, h, wd, n), plan.full_hw, plan.kernel, plan.stride, plan.dilation)
    (top, _), (left, _) = plan.pads
    return _from_chwn(full[:, top:top + ho, left:left + wo], b).reshape(plan.out_shape)


def conv_transpose_backward(grad: np.ndarray, arrays: Arrays, plan: ConvPlan) -> tuple[Any, ...]:
    r"""Input gradient: conv2d of the upstream gradient with the same weight; weight gradient:
    :math:`x_g \cdot \text{im2col}(\bar y)^T`; bias gradient: sum of the upstream gradient."""
    x, w, b = arrays
    x4, _ = plan.view(x, w)
    g, (n, c, h, wd) = plan.groups, plan.x_shape
    o, (ho, wo) = w.shape[1] * g, plan.out_shape[-2:]
    grad4 = grad.reshape(n, o, ho, wo)
    (top, _), (left, _) = plan.pads
    padded = ((top, plan.full_hw[0] - top - ho), (left, plan.full_hw[1] - left - wo))
    cols = im2col(_to_chwn(grad4, padded), plan.kernel, plan.stride, plan.dilation, (h, wd), g)
    w2 = w.reshape(g, c // g, -1)
    x2 = _grouped_chwn(x4, g)
    d_x = _from_chwn(np.matmul(w2, cols).reshape(c, h, wd, n), None).reshape(x.shape)
    d_w = np.matmul(x2, cols.transpose(0, 2, 1)).reshape(w.shape)
    d_b = None if b is None else grad4.sum(axis=(0, 2, 3))
    return d_x, d_w, d_b


# --------------------------------------------------------------------------- pooling
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

    def offsets(self) -> tuple[tuple[int, tuple[slice, slice]], ...]:
        """Each kernel offset and the slices of the padded input it meets."""
        return _offsets(self.kernel, self.dilation, self.stride, self.out_hw)


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
    if index.size and (index.min() < lowest or index.max() >= plane):
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
        out[top:top + h, left:left + w, first:first + step] = source[:, :, first:first + step]
    return out


def _planes_first(values: np.ndarray, plan: PoolPlan) -> np.ndarray:
    """(Ho, Wo, N*C) as a fresh C-contiguous array of the caller's output shape."""
    return np.ascontiguousarray(values.transpose(2, 0, 1)).reshape(plan.out_shape)


def _set_where(tap: np.ndarray, k: int, hit: np.ndarray, scratch: np.ndarray) -> None:
    """``tap[hit] = k`` for an unsigned ``tap``, as ``tap += (k - tap) * hit`` modulo 2^bits:
    three ufunc passes, 5-20x faster than a masked copy of a scalar (np.copyto(where=), np.putmask)."""
    np.subtract(tap.dtype.type(k), tap, out=scratch)
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
    ``return_indices`` also the flat position of the first maximum in each (H, W) plane."""
    (x,) = arrays
    best, index = _max_scan(_planes_last(x.reshape(plan.x_shape), plan.pads, -np.inf), plan, plan.return_indices)
    out = _planes_first(best, plan)
    return (out, _planes_first(index, plan)) if plan.return_indices else out


def max_pool_backward(grad: np.ndarray, arrays: Arrays, plan: PoolPlan) -> tuple[np.ndarray]:
    r""":math:`\bar x_q = \sum_{p:\, \operatorname{argmax}_p = q} \bar y_p`: each window's upstream
    gradient goes to its (first) maximum. Uses ``plan.indices`` (from the forward's
    ``return_indices=True``) when given, else rescans the windows.

    When no two windows share an input element (stride >= the dilated window, the usual
    2x2/2), every input receives at most one gradient: a plain scatter, no ``np.add.at``.
    """
    (x,) = arrays
    index = plan.indices
    if index is None:
        _, index = _max_scan(_planes_last(x.reshape(plan.x_shape), plan.pads, -np.inf), plan, True)
        index = _planes_first(index, plan)
    n, c, h, w = plan.x_shape
    planes, plane, windows = n * c, h * w, plan.out_hw[0] * plan.out_hw[1]
    index, values = index.reshape(planes, windows).astype(np.int64, copy=False), grad.reshape(planes, windows)
    # flat positions in a scratch buffer, not a fresh page-faulting array
    flat = np.add(index, (np.arange(planes, dtype=np.int64) * plane)[:, None],
                  out=_scratch("flat", (planes, windows), np.dtype(np.int64)))
    out = np.zeros(planes * plane, dtype=grad.dtype)
    if max(plan.dilation) > 1:  # only dilated windows can lie wholly in the padding (index -1): no gradient
        kept = index >= 0
        flat, values = flat[kept], values[kept]
    if all(s >= d * (k - 1) + 1 for s, d, k in zip(plan.stride, plan.dilation, plan.kernel)):
        out[flat.ravel()] = values.ravel()
    else:
        np.add.at(out, flat.ravel(), values.ravel())
    return (out.reshape(x.shape),)


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


# --------------------------------------------------------------------------- linear maps
@dataclass(frozen=True)
class LinearPlan:
    """Shapes of a linear or bilinear call; ``input_grad=False``: the VJP skips the input's gradient."""

    out_shape: tuple[int, ...]
    input_grad: bool = True


@remembered
def linear_plan(op: str, arrays: Arrays, *, input_grad: object = True) -> LinearPlan:
    """Check linear: input (..., in), weight (out, in), bias (out,)."""
    x, w, b = arrays
    _rank(op, "weight", w, (2,))
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise OpInputError(f"{op}: input's last dim must equal weight.shape[1] (in_features); got input "
                           f"{x.shape}, weight {w.shape}")
    _vector(op, "bias", b, w.shape[0], "out_features")
    return LinearPlan(out_shape=(*x.shape[:-1], w.shape[0]), input_grad=check_bool(op, "input_grad", input_grad))


def linear_forward(arrays: Arrays, plan: LinearPlan) -> np.ndarray:
    r""":math:`y = x W^T + b`."""
    x, w, b = arrays
    out = np.matmul(x, w.T)
    if b is not None:
        if out.dtype == np.result_type(out, b):
            out += b  # the product is fresh: add in place, no second output array
        else:
            out = out + b
    return out


def linear_backward(grad: np.ndarray, arrays: Arrays, plan: LinearPlan) -> tuple[Any, ...]:
    r""":math:`\bar x = \bar y W`, :math:`\bar W = \bar y^T x` (summed over leading dims), :math:`\bar b = \sum \bar y`."""
    x, w, b = arrays
    g2 = grad.reshape(-1, w.shape[0])
    d_w = np.matmul(g2.T, x.reshape(-1, w.shape[1]))
    return np.matmul(grad, w) if plan.input_grad else None, d_w, None if b is None else g2.sum(axis=0)


@remembered
def bilinear_plan(op: str, arrays: Arrays) -> LinearPlan:
    """Check bilinear: input1 (..., in1), input2 (..., in2), weight (out, in1, in2), bias (out,)."""
    x1, x2, w, b = arrays
    _rank(op, "weight", w, (3,))
    if x1.ndim < 1 or x1.shape[:-1] != x2.shape[:-1] or x1.shape[-1] != w.shape[1] or x2.shape[-1] != w.shape[2]:
        raise OpInputError(f"{op}: need input1 (..., in1), input2 (..., in2) with equal leading dims and weight "
                           f"(out, in1, in2); got input1 {x1.shape}, input2 {x2.shape}, weight {w.shape}")
    _vector(op, "bias", b, w.shape[0], "out_features")
    return LinearPlan(out_shape=(*x1.shape[:-1], w.shape[0]))


def bilinear_forward(arrays: Arrays, plan: LinearPlan) -> np.ndarray:
    r""":math:`y_k = x_1^T W_k x_2 + b_k`, as :math:`u = x_2 W^T` (all k, i at once) then a row dot with :math:`x_1`."""
    x1, x2, w, b = arrays
    o, i1, i2 = w.shape
    u = np.matmul(x2.reshape(-1, i2), w.reshape(o * i1, i2).T).reshape(-1, o, i1)
    out = np.matmul(u, x1.reshape(-1, i1, 1))[..., 0].reshape(plan.out_shape)
    return out if b is None else out + b


def bilinear_backward(grad: np.ndarray, arrays: Arrays, plan: LinearPlan) -> tuple[Any, ...]:
    r""":math:`\bar x_1 = \sum_k \bar y_k W_k x_2`, :math:`\bar x_2 = \sum_k \bar y_k W_k^T x_1`,
    :math:`\bar W_k = \sum \bar y_k x_1 x_2^T`, :math:`\bar b = \sum \bar y`."""
    x1, x2, w, b = arrays
    o, i1, i2 = w.shape
    g2 = grad.reshape(-1, o)
    a1, a2 = x1.reshape(-1, i1), x2.reshape(-1, i2)
    # v_{b,i,j} = sum_k g_{b,k} W_{k,i,j}: one matmul, then two batched row products
    v = np.matmul(g2, w.reshape(o, i1 * i2)).reshape(-1, i1, i2)
    d_x1 = np.matmul(v, a2[:, :, None])[..., 0].reshape(x1.shape)
    d_x2 = np.matmul(a1[:, None, :], v)[:, 0].reshape(x2.shape)
    outer = (g2[:, :, None] * a1[:, None, :]).reshape(-1, o * i1)
    d_w = np.matmul(outer.T, a2).reshape(w.shape)
    return d_x1, d_x2, d_w, None if b is None else g2.sum(axis=0)


# --------------------------------------------------------------------------- normalisation
def rsqrt(v: np.ndarray) -> np.ndarray:
    r""":math:`1 / \sqrt{v}` (an exact power on object arrays)."""
    return v ** Fraction(-1, 2) if v.dtype == object else 1.0 / np.sqrt(v)


def _centred(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, x - mean (a fresh array) and the biased variance over ``axes`` (kept)."""
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    return mean, centred, (centred * centred).mean(axis=axes, keepdims=True)


def standardize(x: np.ndarray, axes: tuple[int, ...], eps: Any) -> tuple[np.ndarray, ...]:
    r""":math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}` (a fresh array), the mean, the biased
    variance and :math:`1/\sqrt{\sigma^2 + \epsilon}` over ``axes`` (kept).

    Numerics: where the sums overflow (|x| near the dtype's maximum) the statistics are taken of
    :math:`x / m`, :math:`m = \max |x|`, and scaled back, so the mean and the normalised values
    stay finite whenever the true values are.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, centred, var = _centred(x, axes)
        if x.dtype == object or np.all(np.isfinite(var)) or not np.all(np.isfinite(x)):
            rstd = rsqrt(var + eps)
        else:
            scale = np.max(np.abs(x), axis=axes, keepdims=True)
            scale[scale == 0] = 1
            mean_s, _, var_s = _centred(x / scale, axes)
            mean, var = mean_s * scale, var_s * scale * scale
            rstd = 1 / (scale * np.sqrt(var_s + eps / scale / scale))
            centred = x - mean
    centred *= rstd
    return centred, mean, var, rstd


def normalize_vjp(d_xhat: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    r"""The three-term formula :math:`\bar x = \frac{1}{\sigma}\big(\bar{\hat x} - \overline{\bar{\hat x}}
    - \hat x\, \overline{\bar{\hat x} \hat x}\big)` (bars over a sum: means over ``axes``)."""
    return rstd * (d_xhat - d_xhat.mean(axis=axes, keepdims=True)
                   - xhat * (d_xhat * xhat).mean(axis=axes, keepdims=True))


def _affine(xhat: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, shape: tuple[int, ...]) -> Any:
    """``xhat * weight + bias``, in place in the fresh ``xhat`` unless the parameters widen the dtype."""
    out = xhat
    for param, operation in ((weight, np.multiply), (bias, np.add)):
        if param is not None:
            value = param.reshape(shape)
            out = operation(out, value, out=out) if np.result_type(out, value) == out.dtype else operation(out, value)
    return out


def _affine_vjp(grad: np.ndarray, xhat: np.ndarray, weight: Any, bias: Any, shape: tuple[int, ...],
                axes: tuple[int, ...]) -> tuple[Any, Any, Any]:
    """Gradient w.r.t. xhat, weight and bias of ``xhat * weight + bias`` (weight/bias broadcast over ``axes``)."""
    d_weight = None if weight is None else (grad * xhat).sum(axis=axes).reshape(weight.shape)
    d_bias = None if bias is None else grad.sum(axis=axes).reshape(bias.shape)
    return (grad if weight is None else grad * weight.reshape(shape)), d_weight, d_bias


@dataclass(frozen=True)
class NormPlan:
    """Where a normalisation takes its statistics and broadcasts its affine parameters."""

    out_shape: tuple[int, ...]
    axes: tuple[int, ...]              # statistics axes (of ``group_shape``'s view)
    param_shape: tuple[int, ...]       # weight/bias broadcast shape against the input
    param_axes: tuple[int, ...]        # axes the weight/bias gradients sum over
    group_shape: tuple[int, ...] | None = None   # group_norm's (N, G, -1) view
    eps: Any = 1e-5
    training: bool = True
    momentum: float = 0.1


def _check_eps(op: str, eps: object, x: np.ndarray) -> Any:
    """eps as a float (a Fraction stays exact on object arrays, for the proofs)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise OpParameterError(f"{op}: eps must be a real number >= 0, got {eps!r}")
    return eps if isinstance(eps, Fraction) and x.dtype == object else float(eps)


def batch_norm_plan(op: str, arrays: Arrays, *, training: object = False, momentum: object = 0.1,
                    eps: object = 1e-5) -> NormPlan:
    """Check batch_norm: input (N, C, *), running stats, weight and bias (C,)."""
    x, mean, var, w, b = arrays
    _rank(op, "input", x, tuple(range(2, 9)))
    check_bool(op, "training", training)
    if momentum is None or isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) \
            or not 0 <= momentum <= 1:
        raise OpParameterError(f"{op}: momentum must be a real number in [0, 1] (for PyTorch's cumulative "
                               f"average, momentum=None, pass 1/n at the n-th batch, as symdl.nn.BatchNorm2d "
                               f"does), got {momentum!r}")
    c = x.shape[1]
    for name, array in (("running_mean", mean), ("running_var", var), ("weight", w), ("bias", b)):
        _vector(op, name, array, c, f"one per channel of input {x.shape}")
    if not training and (mean is None or var is None):
        raise OpInputError(f"{op}: running_mean and running_var are required when training=False")
    if training and x.size // c <= 1:
        raise OpInputError(f"{op}: expected more than 1 value per channel when training, got input {x.shape}")
    axes = (0, *range(2, x.ndim))
    return NormPlan(out_shape=x.shape, axes=axes, param_shape=(1, c) + (1,) * (x.ndim - 2), param_axes=axes, eps=_check_eps(op, eps, x),
                    training=bool(training), momentum=float(momentum))


def _batch_statistics(x: np.ndarray, mean: Any, var: Any, plan: NormPlan) -> tuple[np.ndarray, ...]:
    """(xhat, mean, biased variance, rstd) from the batch (training) or the running statistics (eval)."""
    if plan.training:
        return standardize(x, plan.axes, plan.eps)
    shape = plan.param_shape
    rstd = rsqrt(var.reshape(shape) + plan.eps)
    return (x - mean.reshape(shape)) * rstd, mean.reshape(shape), var.reshape(shape), rstd


def batch_norm_forward(arrays: Arrays, plan: NormPlan) -> np.ndarray:
    r""":math:`y = \gamma \hat x + \beta`, :math:`\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}`, with the
    batch's :math:`\mu, \sigma^2` per channel (training: then, in place, running :math:`\leftarrow
    (1 - m)\,\text{running} + m\,\text{stat}` with the unbiased variance) or the running ones (eval)."""
    x, running_mean, running_var, w, b = arrays
    xhat, mean, var, _ = _batch_statistics(x, running_mean, running_var, plan)
    if plan.training:
        count = x.size // x.shape[1]
        for running, stat in ((running_mean, mean), (running_var, var * count / (count - 1))):
            if running is not None:
                running *= 1 - plan.momentum
                running += (plan.momentum * stat).reshape(running.shape).astype(running.dtype)
    return _affine(xhat, w, b, plan.param_shape)


def batch_norm_backward(grad: np.ndarray, arrays: Arrays, plan: NormPlan) -> tuple[Any, ...]:
    r"""Training: :math:`\bar x = \frac{\gamma}{\sigma}\big(\bar y - \text{mean}(\bar y) - \hat x\,
    \text{mean}(\bar y \hat x)\big)` (the three-term formula with :math:`\gamma` constant over each
    channel's statistics, so the two means are :math:`\bar\beta / M` and :math:`\bar\gamma / M`);
    eval: :math:`\bar x = \gamma \bar y / \sigma`; :math:`\bar\gamma = \sum \bar y \hat x`,
    :math:`\bar\beta = \sum \bar y`. Never touches the running stats."""
    x, running_mean, running_var, w, b = arrays
    xhat, _, _, rstd = _batch_statistics(x, running_mean, running_var, plan)
    shape, axes = plan.param_shape, plan.axes
    sum_g = grad.sum(axis=axes, keepdims=True) if b is not None or plan.training else None
    sum_gx = (grad * xhat).sum(axis=axes, keepdims=True) if w is not None or plan.training else None
    scale = rstd if w is None else rstd * w.reshape(shape)
    if plan.training:
        count = x.size // x.shape[1]
        d_x = grad - sum_g / count
        xhat *= sum_gx / count
        d_x -= xhat
        d_x *= scale
    else:
        d_x = grad * scale
    return (d_x, None, None, None if w is None else sum_gx.reshape(w.shape),
            None if b is None else sum_g.reshape(b.shape))


def layer_norm_plan(op: str, arrays: Arrays, *, normalized_shape: object, eps: object = 1e-5) -> NormPlan:
    """Check layer_norm: input (..., *normalized_shape), weight and bias normalized_shape."""
    x, w, b = arrays
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
    if not isinstance(shape, (tuple, list)) or not shape or any(
            isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in shape):
        raise OpParameterError(f"{op}: normalized_shape must be an int or a non-empty tuple of ints, "
                               f"got {normalized_shape!r}")
    shape = tuple(int(s) for s in shape)
    if x.shape[x.ndim - len(shape):] != shape or x.ndim < len(shape):
        raise OpInputError(f"{op}: input {x.shape} must end with normalized_shape {shape}")
    for name, array in (("weight", w), ("bias", b)):
        if array is not None and array.shape != shape:
            raise OpInputError(f"{op}: {name} must have normalized_shape {shape}, got {array.shape}")
    lead = x.ndim - len(shape)
    return NormPlan(out_shape=x.shape, axes=tuple(range(lead, x.ndim)), param_shape=shape, param_axes=tuple(range(lead)),
                    eps=_check_eps(op, eps, x))


def group_norm_plan(op: str, arrays: Arrays, *, num_groups: object, eps: object = 1e-5) -> NormPlan:
    """Check group_norm: input (N, C, *), num_groups dividing C, weight and bias (C,)."""
    x, w, b = arrays
    _rank(op, "input", x, tuple(range(2, 9)))
    c = x.shape[1]
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral) or num_groups < 1:
        raise OpParameterError(f"{op}: num_groups must be a positive int, got {num_groups!r}")
    if c % num_groups:
        raise OpInputError(f"{op}: num_groups={num_groups} must divide the {c} channels of input {x.shape}")
    for name, array in (("weight", w), ("bias", b)):
        _vector(op, name, array, c, "one per channel")
    return NormPlan(out_shape=x.shape, axes=(2,), param_shape=(1, c) + (1,) * (x.ndim - 2), param_axes=(0, *range(2, x.ndim)),
                    group_shape=(x.shape[0], int(num_groups), c // int(num_groups) * math.prod(x.shape[2:])),
                    eps=_check_eps(op, eps, x))


def _grouped(x: np.ndarray, plan: NormPlan) -> np.ndarray:
    return x if plan.group_shape is None else x.reshape(plan.group_shape)


def norm_forward(arrays: Arrays, plan: NormPlan) -> np.ndarray:
    r"""layer_norm / group_norm: :math:`y = \gamma \hat x + \beta` with the statistics of each sample
    (layer) or each sample's channel group (group)."""
    x, w, b = arrays
    xhat = standardize(_grouped(x, plan), plan.axes, plan.eps)[0]
    return _affine(xhat.reshape(x.shape), w, b, plan.param_shape)


def norm_backward(grad: np.ndarray, arrays: Arrays, plan: NormPlan) -> tuple[Any, ...]:
    r"""The three-term formula per normalised group; :math:`\bar\gamma = \sum \bar y \hat x`,
    :math:`\bar\beta = \sum \bar y` over the other axes."""
    x, w, b = arrays
    xhat, _, _, rstd = standardize(_grouped(x, plan), plan.axes, plan.eps)
    d_xhat, d_w, d_b = _affine_vjp(grad, xhat.reshape(x.shape), w, b, plan.param_shape, plan.param_axes)
    d_x = normalize_vjp(_grouped(d_xhat, plan), xhat, rstd, plan.axes)
    return d_x.reshape(x.shape), d_w, d_b


# --------------------------------------------------------------------------- reshapes and masks
@dataclass(frozen=True)
class ShapePlan:
    """Shapes and scalars of flatten and dropout."""

    out_shape: tuple[int, ...]
    scale: Any = 1                     # dropout: 1 / (1 - p), 0 when p = 1
    training: bool = True


def dropout_plan(op: str, arrays: Arrays, *, p: object = 0.5, training: object = True) -> ShapePlan:
    """Check dropout: a 0/1 mask broadcastable to the input, p in [0, 1]."""
    x, mask = arrays
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise OpParameterError(f"{op}: p must be a probability in [0, 1], got {p!r}")
    check_bool(op, "training", training)
    if np.broadcast_shapes(x.shape, mask.shape) != x.shape:
        raise OpInputError(f"{op}: mask {mask.shape} must broadcast to input {x.shape}")
    if mask.dtype != object and not np.all((mask == 0) | (mask == 1)):
        raise OpInputError(f"{op}: mask must hold only 0 and 1")
    # exact for object arrays (the proofs), a Python float otherwise (keeps float32)
    scale = 0 if p == 1 else 1 / (1 - Fraction(p)) if x.dtype == object else 1 / (1 - p)
    return ShapePlan(out_shape=x.shape, scale=scale, training=bool(training))


def dropout_forward(arrays: Arrays, plan: ShapePlan) -> np.ndarray:
    r""":math:`y = x \odot m / (1 - p)` in training (0 when p = 1), the input itself in eval."""
    x, mask = arrays
    return x * mask.astype(x.dtype) * plan.scale if plan.training else x.copy()


def dropout_backward(grad: np.ndarray, arrays: Arrays, plan: ShapePlan) -> tuple[Any, None]:
    r""":math:`\bar x = \bar y \odot m / (1 - p)` (training), :math:`\bar y` (eval); no gradient for the mask."""
    x, mask = arrays
    return (grad * mask.astype(grad.dtype) * plan.scale if plan.training else grad.copy()), None


@remembered
def flatten_plan(op: str, arrays: Arrays, *, start_dim: object = 1, end_dim: object = -1) -> ShapePlan:
    """Check flatten's dims against the input's rank (0-D inputs become 1-D, as in PyTorch)."""
    (x,) = arrays
    rank = max(x.ndim, 1)
    dims = []
    for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -rank <= dim < rank:
            raise OpParameterError(f"{op}: {name} must be an int in [{-rank}, {rank - 1}] for input {x.shape}, "
                                   f"got {dim!r}")
        dims.append(int(dim) % rank)
    start, end = dims
    if start > end:
        raise OpParameterError(f"{op}: start_dim {start_dim} must not come after end_dim {end_dim}")
    shape = x.shape or (1,)
    return ShapePlan(out_shape=(*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:]))


def flatten_forward(arrays: Arrays, plan: ShapePlan) -> np.ndarray:
    """A view of the input with dims start_dim..end_dim merged."""
    return arrays[0].reshape(plan.out_shape)


def flatten_backward(grad: np.ndarray, arrays: Arrays, plan: ShapePlan) -> tuple[np.ndarray]:
    """The upstream gradient in the input's shape."""
    return (grad.reshape(np.shape(arrays[0])),)

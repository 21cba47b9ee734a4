"""Convolution and transposed convolution: im2col plus one matmul per group; col2im, its adjoint,
as a loop over the ``kh * kw`` kernel offsets (each a strided slice add over all pixels and
channels), faster than ``np.add.at`` and exact on object arrays."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels import _parallel
from symdl.kernels._layers.common import (ArrayLike, Arrays, Batch, Pads, _batch, _from_chwn, _grouped_chwn, _ints,
                                        _offsets, _out_size, _rank, _scratch, _spatial_view, _to_chwn, _vector,
                                        remembered, strided_view)
from symdl.kernels._runtime import check_bool


def im2col(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
           out_hw: tuple[int, int], groups: int, fresh: bool = False) -> np.ndarray:
    r"""Patches of the padded ``xp`` (C, Hp, Wp, N) as (G, C/G * kh * kw, Ho * Wo * N), in a scratch
    buffer or, with ``fresh``, a new array (one a caller keeps: conv's ``return_columns``).

    Row ``(c, i, j)``, column ``(oh, ow, n)`` holds :math:`x_{n, c, s_0 o_h + d_0 i, s_1 o_w + d_1 j}`:
    one strided view, one copy.
    """
    c, _, _, n = xp.shape
    s_c, s_h, s_w, s_n = xp.strides
    view = strided_view(xp, (c, kernel[0], kernel[1], out_hw[0], out_hw[1], n),
                        (s_c, s_h * dilation[0], s_w * dilation[1], s_h * stride[0], s_w * stride[1], s_n))
    cols = np.empty(view.shape, xp.dtype) if fresh else _scratch("cols", view.shape, xp.dtype)
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


def times_columns_transposed(a: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r"""The weight gradient's product :math:`A_g \cdot \text{cols}_g^\top` for each group: (G, m, P) times
    (G, k, P) transposed, as a C-contiguous (G, m, k) array.

    OpenBLAS is slow on this form when k > m (more im2col rows than upstream channels), so that
    case computes :math:`(\text{cols}_g A_g^\top)^\top`, the same sums with the operands swapped.
    Measured, swapped against direct (float32 / float64): 0.61-0.67 / 0.85-0.96 of the time for
    (m, k) = (32, 144) at P = 1,024 to 32,768 (the benchmark's 16->32 convolutions), but 1.19 / 1.05
    for (16, 9) at P = 65,536 (its 1->16 one), which keeps the direct form.
    """
    if cols.shape[1] > a.shape[1]:  # (a small copy: the gradient is C-contiguous, as the other way's)
        return np.ascontiguousarray(np.matmul(cols, a.transpose(0, 2, 1)).transpose(0, 2, 1))
    return np.matmul(a, cols.transpose(0, 2, 1))


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
    return_columns: bool = False             # conv forward: also return the im2col columns
    columns: Any = None                      # conv backward: the forward's columns (one per chunk), or None
    column_bounds: tuple[tuple[int, int], ...] = ()  # the batch chunk of each of ``columns``

    @property
    def columns_shape(self) -> tuple[int, int, int]:
        """Shape of conv's im2col columns: (G, C/G * kh * kw, Ho * Wo * N)."""
        n, c = self.x_shape[:2]
        return (self.groups, c // self.groups * self.kernel[0] * self.kernel[1], self.out_hw[0] * self.out_hw[1] * n)

    def nanoseconds(self, dtype: np.dtype) -> int:
        """A rough single-thread time of the forward in ``dtype``, to decide whether splitting the
        batch pays: its multiply-adds (N * Ho * Wo * O * C/G * kh * kw) at about 64 bytes of
        operands per nanosecond (BLAS: 16 float32 or 8 float64), plus a nanosecond per 4 bytes
        of im2col copied."""
        g, per_output, positions = self.columns_shape
        return positions * per_output * (self.w_shape[0] + 16 * g) * dtype.itemsize // 64

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


def _check_groups(op: str, groups: object, channels: dict[str, int], shapes: str) -> int:
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise OpParameterError(f"{op}: groups must be a positive int, got {groups!r}")
    for what, count in channels.items():
        if count % groups:
            raise OpInputError(f"{op}: groups={groups} must divide {what} ({count}); {shapes}")
    return int(groups)


def _checked_geometry(op: str, arrays: Arrays, spatial: int, stride: object,
                      dilation: object) -> tuple[Batch, str, tuple[int, ...], tuple[int, ...]]:
    """What both convolution plans check first: the input's rank (batched or not), the weight's
    rank, stride and dilation; with the shapes as error messages name them."""
    x, w, _ = arrays
    batch = _batch(op, x, spatial)
    _rank(op, "weight", w, (spatial + 2,))
    shapes = f"input {x.shape}, weight {w.shape}"
    return batch, shapes, _ints(op, "stride", stride, spatial, 1), _ints(op, "dilation", dilation, spatial, 1)


def conv_plan(op: str, arrays: Arrays, *, columns: ArrayLike = None, **options: Any) -> ConvPlan:
    """Check and resolve a conv1d/conv2d call (:func:`_conv_geometry`); a VJP's ``columns`` (the
    forward's, from ``return_columns=True``: an array, or a tuple of one array per batch chunk
    when the forward split its batch) are checked against the plan and attached to it."""
    plan = _conv_geometry(op, arrays, **options)
    if columns is None:
        return plan
    parts = columns if type(columns) is tuple and columns else (columns,)
    return ConvPlan(**{**plan.__dict__, "columns": parts,
                       "column_bounds": _column_bounds(op, parts, plan, arrays[0].dtype)})


def _column_bounds(op: str, parts: tuple, plan: ConvPlan, dtype: np.dtype) -> tuple[tuple[int, int], ...]:
    """The batch chunk ``[start, stop)`` of each of the forward's column arrays. Each must be of the
    input's dtype and of shape (G, C/G * kh * kw, Ho * Wo * n) for its chunk's n samples, and the
    chunks must cover the batch (shape and dtype are checked, not content: as the indices)."""
    groups, rows, positions = plan.columns_shape
    pixels = plan.out_hw[0] * plan.out_hw[1]
    bounds, start = [], 0
    for part in parts:
        if type(part) is not np.ndarray or part.dtype != dtype or part.ndim != 3 or part.shape[:2] != (groups, rows) \
                or not part.shape[2] or part.shape[2] % pixels:
            break
        bounds.append((start, start + part.shape[2] // pixels))
        start = bounds[-1][1]
    if len(bounds) == len(parts) and start == plan.x_shape[0]:
        return tuple(bounds)
    got = ", ".join(f"{part.dtype} {part.shape}" if isinstance(part, np.ndarray) else type(part).__name__
                    for part in parts)
    raise OpInputError(f"{op}: columns must be the forward's return_columns: a {dtype} array of shape "
                       f"{plan.columns_shape} (groups, C/groups * kernel size, output positions), or a tuple of "
                       f"such arrays, one per batch chunk, whose positions add up to that; got {got}")


@remembered
def _conv_geometry(op: str, arrays: Arrays, *, spatial: int, stride: object = 1, padding: object = 0,
                   dilation: object = 1, groups: object = 1, input_grad: object = True,
                   return_columns: object = False) -> ConvPlan:
    """Check and resolve a conv1d/conv2d call: input (N, C, *S) or unbatched (C, *S), weight (O, C/G, *K),
    bias (O,); ``input_grad`` (VJP only): False skips the input's gradient; ``return_columns``
    (forward only): also return the im2col columns, for the VJP's ``columns``."""
    x, w, b = arrays
    batch, shapes, stride_t, dilation_t = _checked_geometry(op, arrays, spatial, stride, dilation)
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
        return_columns=check_bool(op, "return_columns", return_columns),
    )


def conv_forward(arrays: Arrays, plan: ConvPlan) -> Any:
    r""":math:`y_{n,o,p} = b_o + \sum_{c,k} x_{n, g(o) C_g + c, s p + d k - \text{pad}} w_{o,c,k}`
    as ``W_g @ im2col(x)`` for each group g; with ``return_columns``, ``(y, im2col(x))``.

    A large batch is split into chunks that run on :mod:`~symdl.kernels._parallel`'s threads,
    each writing its own samples of ``y``; the columns are then one array per chunk (a tuple)."""
    x, w, b = arrays
    x4, w4 = plan.view(x, w)
    n = plan.x_shape[0]
    dtype = x4.dtype if b is None or b.dtype == x4.dtype else np.result_type(x4.dtype, b.dtype)
    y = np.empty((n, plan.w_shape[0], *plan.out_hw), dtype=dtype)
    columns = _parallel.over_chunks(_parallel.chunks(n, plan.nanoseconds(x4.dtype), x4.dtype),
                                    lambda start, stop: _forward_chunk(x4[start:stop], w4, b, plan, y[start:stop]))
    y = y.reshape(plan.out_shape)
    if not plan.return_columns:
        return y
    return y, columns[0] if len(columns) == 1 else tuple(columns)


def _forward_chunk(x4: np.ndarray, w4: np.ndarray, b: np.ndarray | None, plan: ConvPlan,
                   y: np.ndarray) -> np.ndarray:
    """The forward of the samples ``x4`` (a slice of the batch) into ``y``, their rows of the
    output; returns their im2col columns."""
    g, o, n = plan.groups, plan.w_shape[0], x4.shape[0]
    cols = im2col(_to_chwn(x4, plan.pads), plan.kernel, plan.stride, plan.dilation, plan.out_hw, g,
                  fresh=plan.return_columns)
    out = np.matmul(w4.reshape(g, o // g, -1), cols, out=_scratch("product", (g, o // g, cols.shape[2]), cols.dtype))
    if b is not None and b.dtype == out.dtype:
        # the bias added while the product is still (O, pixels): contiguous rows, 2x cheaper than
        # adding it during the transposing copy (the same one addition per element)
        out += b.reshape(g, o // g, 1)
        b = None
    _from_chwn(out.reshape(o, *plan.out_hw, n), b, out=y)
    return cols


def conv_backward(grad: np.ndarray, arrays: Arrays, plan: ConvPlan) -> tuple[Any, ...]:
    r"""Input gradient: col2im of :math:`W_g^T \bar y` (the transposed convolution of the upstream
    gradient with the flipped kernel); weight gradient: :math:`\bar y \cdot \text{im2col}(x)^T`
    (the correlation of input and upstream gradient); bias gradient: the sum of the upstream
    gradient over batch and positions. The columns are the forward's when given (``columns``),
    else built again.

    The batch is split as the forward's columns are (or, without them, as
    :func:`~symdl.kernels._parallel.chunks` says); each chunk writes its samples of the input
    gradient, and the weight and bias gradients add the chunks' sums in chunk order."""
    x, w, b = arrays
    x4, w4 = plan.view(x, w)
    n, o = plan.x_shape[0], plan.w_shape[0]
    grad4 = grad.reshape(n, o, *plan.out_hw)
    d_x = np.empty(plan.x_shape, dtype=grad.dtype) if plan.input_grad else None
    bounds = plan.column_bounds or _parallel.chunks(n, plan.nanoseconds(grad.dtype), grad.dtype)
    columns = dict(zip(plan.column_bounds, plan.columns or ()))  # the forward's, by chunk

    def chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        return _backward_chunk(grad4[start:stop], x4[start:stop], w4, b, plan, columns.get((start, stop)),
                               None if d_x is None else d_x[start:stop])

    sums = _parallel.over_chunks(bounds, chunk)
    d_w, d_b = sums[0]
    for more_w, more_b in sums[1:]:
        d_w += more_w
        if d_b is not None:
            d_b += more_b
    return None if d_x is None else d_x.reshape(x.shape), d_w.reshape(w.shape), d_b


def _backward_chunk(grad4: np.ndarray, x4: np.ndarray, w4: np.ndarray, b: np.ndarray | None, plan: ConvPlan,
                    cols: np.ndarray | None, d_x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The backward of the samples ``x4`` (a slice of the batch): their input gradient into
    ``d_x`` (when not None); returns their sums for the weight and bias gradients."""
    g, o = plan.groups, plan.w_shape[0]
    n, c, h, wd = x4.shape
    g2 = _grouped_chwn(grad4, g)
    if cols is None:
        cols = im2col(_to_chwn(x4, plan.pads), plan.kernel, plan.stride, plan.dilation, plan.out_hw, g)
    d_w = times_columns_transposed(g2, cols)
    d_b = None if b is None else g2.sum(axis=-1).reshape(o)
    if d_x is None:
        return d_w, d_b
    d_cols = np.matmul(w4.reshape(g, o // g, -1).transpose(0, 2, 1), g2,
                       out=_scratch("product", (g, cols.shape[1], g2.shape[2]), g2.dtype))
    full = col2im(d_cols.reshape(c, *plan.kernel, *plan.out_hw, n), plan.full_hw, plan.kernel, plan.stride,
                  plan.dilation)
    (top, _), (left, _) = plan.pads
    _from_chwn(full[:, top:top + h, left:left + wd], None, out=d_x)
    return d_w, d_b


@remembered
def conv_transpose_plan(op: str, arrays: Arrays, *, spatial: int = 2, stride: object = 1, padding: object = 0,
                        output_padding: object = 0, groups: object = 1, dilation: object = 1) -> ConvPlan:
    """Check and resolve conv_transpose2d: input (N, C, H, W) or unbatched (C, H, W), weight (C, O/G, kh, kw),
    bias (O,)."""
    x, w, b = arrays
    batch, shapes, stride_t, dilation_t = _checked_geometry(op, arrays, spatial, stride, dilation)
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
    d_w = times_columns_transposed(x2, cols).reshape(w.shape)
    d_b = None if b is None else grad4.sum(axis=(0, 2, 3))
    return d_x, d_w, d_b



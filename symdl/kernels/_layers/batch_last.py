"""Convolution - ReLU - max-pool blocks run in the batch-last (C, H, W, N) layout, fused.

The convolutions already compute in (C, H, W, N) (:mod:`~symdl.kernels._layers.conv`), and a
max-pool whose windows tile the plane reads that layout with contiguous rows of N. A chain of
``Conv2d - ReLU - MaxPool2d`` blocks therefore needs no layout change between its layers: one
into (C, H, W, N) at the start, one back to (N, C, H, W) at the end (and the same two for the
gradient), where the layer-by-layer path converts before and after every convolution and every
pool. :class:`symdl.nn.Sequential` runs such chains through this module in training.

The block computes, with :math:`z = W \\star x + b` the convolution's output,

.. math::

    y = \\operatorname{relu}(\\operatorname{maxpool}(z)) = \\operatorname{maxpool}(\\operatorname{relu}(z))

(relu is non-decreasing, so it commutes with a maximum; it is applied to the pooled values, a
quarter of them), and the backward

.. math::

    \\bar z_q = [q = \\operatorname{argmax}_p]\\; \\bar y_p\\, [m_p > 0], \\qquad m_p = \\max_{q \\in p} z_q,

which is the layer-by-layer gradient: where the window's maximum is positive, the first maximum of
:math:`z` is the first maximum of :math:`\\operatorname{relu}(z)` (PyTorch's tie rule), and where it
is not, the ReLU's mask is 0 at every position of the window. The convolution's products, bias
sum and col2im are the layer path's own (:func:`~symdl.kernels._layers.conv.im2col`,
:func:`~symdl.kernels._layers.conv.times_columns_transposed`, ...) on the same arrays, so the
values are the same bit for bit.

Float arrays only (the layer kernels' proofs on object arrays run the layer-by-layer code).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from symdl.kernels._layers.common import _from_chwn, _scratch, _to_chwn, upstream
from symdl.kernels._layers.conv import (
    ConvPlan,
    col2im,
    conv_plan,
    im2col,
    times_columns_transposed,
)
from symdl.kernels._layers.pool import _first_maxima, pool_plan

Array = np.ndarray
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class BlockPlan:
    """One block's geometry: the convolution's plan (on the block's (N, C, H, W) input shape) and the
    pool's window, which tiles the convolution's output from its top-left corner (stride = window,
    no padding, no dilation; rows and columns past the last whole window are dropped, as PyTorch's
    floor rule does)."""

    conv: ConvPlan
    window: tuple[int, int]
    pooled_hw: tuple[int, int]

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """The block's output, (N, O, Ho, Wo)."""
        return (self.conv.x_shape[0], self.conv.w_shape[0], *self.pooled_hw)


def block_plan(x_shape: tuple[int, ...], dtype: np.dtype, weight: Array, bias: Array | None,
               conv_options: dict[str, Any], pool_options: dict[str, Any]) -> BlockPlan | None:
    """The plan of ``max_pool2d(relu(conv2d(x, weight, bias, **conv_options)), **pool_options)`` for a
    batched ``x`` of ``x_shape`` and ``dtype``, or None when this module does not cover the call
    (another rank or dtype, mixed dtypes, a pool that does not tile): the caller then runs the
    layers one by one, which also raise the errors of a bad call."""
    if len(x_shape) != 4 or dtype not in _FLOATS or weight.dtype != dtype or (bias is not None and bias.dtype != dtype):
        return None
    stand_in = np.broadcast_to(np.zeros((), dtype), x_shape)  # shapes are all the plans read
    try:
        conv = conv_plan("conv2d", (stand_in, weight, bias), spatial=2, **conv_options)
        out = np.broadcast_to(np.zeros((), dtype), conv.out_shape)
        pool = pool_plan("max_pool2d", (out,), spatial=2, **pool_options)
    except ValueError:  # (OpInputError, OpParameterError) the layer path raises them for the caller
        return None
    if pool.stride != pool.kernel or pool.dilation != (1, 1) or pool.pads != ((0, 0), (0, 0)):
        return None
    return BlockPlan(conv=conv, window=pool.kernel, pooled_hw=pool.out_hw)


@dataclass
class BlockSaved:
    """What a block's forward keeps for its backward: the im2col columns, each window's pooled
    maximum (before the ReLU, (O, Ho, Wo, N)) and the tap holding it (row-major in the window)."""

    columns: Array
    maxima: Array
    taps: Array


def to_batch_last(x: Array, plan: BlockPlan) -> Array:
    """A chain's (N, C, H, W) input as the first block's zero-padded (C, Hp, Wp, N) input (a scratch
    buffer, valid until the next layer kernel runs)."""
    return _to_chwn(x, plan.conv.pads)


def block_forward(xp: Array, weight: Array, bias: Array | None, plan: BlockPlan) -> BlockSaved:
    """The convolution of the padded (C, Hp, Wp, N) input ``xp`` and the pool's window maxima and
    taps (the ReLU is left to the caller: :func:`relu_into`)."""
    conv = plan.conv
    g, o = conv.groups, conv.w_shape[0]
    columns = im2col(xp, conv.kernel, conv.stride, conv.dilation, conv.out_hw, g, fresh=True)
    z = np.matmul(weight.reshape(g, o // g, -1), columns,
                  out=_scratch("product", (g, o // g, columns.shape[2]), columns.dtype))
    if bias is not None:
        z += bias.reshape(g, o // g, 1)
    maxima, taps = _window_maxima(z.reshape(o, *conv.out_hw, -1), plan)
    return BlockSaved(columns=columns, maxima=maxima, taps=taps)


def _window_views(z: Array, plan: BlockPlan) -> list[Array]:
    """The window taps of the (O, H, W, N) array ``z``, row-major: tap (a, b) is the (O, Ho, Wo, N)
    view of each window's element a rows and b columns from its corner (inner rows of N
    contiguous elements)."""
    (kh, kw), (ho, wo) = plan.window, plan.pooled_hw
    o, n = z.shape[0], z.shape[-1]
    tiles = z[:, :ho * kh, :wo * kw].reshape(o, ho, kh, wo, kw, n)
    return [tiles[:, :, a, :, b] for a in range(kh) for b in range(kw)]


def _window_maxima(z: Array, plan: BlockPlan) -> tuple[Array, Array]:
    """Each window's maximum and the tap of its first maximum (a later tap wins only when strictly
    greater: :func:`~symdl.kernels._layers.pool._first_maxima`). A window holding a NaN has maximum
    NaN (np.maximum propagates it) and some tap: its ReLU mask is 0, so no gradient reaches any of
    its positions, whichever tap is recorded."""
    views = _window_views(z, plan)
    best = np.empty(views[0].shape, z.dtype)
    kind = np.min_scalar_type(len(views))
    taps = _first_maxima(views, list(range(len(views))), best, kind)
    return best, taps  # type: ignore[return-value]


@functools.lru_cache(maxsize=32)
def _tap_positions(plan: BlockPlan, n: int) -> tuple[Array, Array]:
    """Read-only tables for the scatter into the (O, H, W, N) gradient of the convolution's output,
    as flat positions: each tap's displacement from its window's corner, and each (O, Ho, Wo, N)
    window corner's position."""
    (kh, kw), (ho, wo) = plan.window, plan.pooled_hw
    o, (h, w) = plan.conv.w_shape[0], plan.conv.out_hw
    displacement = np.array([(a * w + b) * n for a in range(kh) for b in range(kw)], np.intp)
    corners = (np.arange(o, dtype=np.intp)[:, None, None, None] * (h * w * n)
               + np.arange(ho, dtype=np.intp)[None, :, None, None] * (kh * w * n)
               + np.arange(wo, dtype=np.intp)[None, None, :, None] * (kw * n)
               + np.arange(n, dtype=np.intp)[None, None, None, :])
    for table in (displacement, corners):
        table.flags.writeable = False
    return displacement, corners


def relu_into(maxima: Array, out: Array) -> Array:
    """``out[...] = relu(maxima)``, as :func:`symdl.kernels.relu` computes it (``clip(x, 0, inf)``)."""
    return np.clip(maxima, 0, np.inf, out=out)


def padded_input(maxima: Array, plan: BlockPlan) -> Array:
    """The next block's zero-padded (C, Hp, Wp, N) input from this block's maxima: their ReLU,
    written inside a zero border (a scratch buffer)."""
    (top, bottom), (left, right) = plan.conv.pads
    c, h, w, n = maxima.shape
    xp = _scratch("padded", (c, h + top + bottom, w + left + right, n), maxima.dtype)
    if top or bottom or left or right:
        xp.fill(0)
    relu_into(maxima, xp[:, top:top + h, left:left + w])
    return xp


def chain_output(maxima: Array) -> Array:
    """The last block's output as a fresh (N, O, Ho, Wo) array: the ReLU of its maxima, transposed."""
    o, ho, wo, n = maxima.shape
    out = np.empty((n, o, ho, wo), maxima.dtype)
    relu_into(maxima.transpose(3, 0, 1, 2), out)
    return out


def grad_to_batch_last(grad: Any, plan: BlockPlan, dtype: np.dtype) -> Array:
    """A chain's upstream gradient, the last block's (N, O, Ho, Wo) (checked, in ``dtype``), as
    (O, Ho, Wo, N) (a scratch buffer)."""
    grad = upstream("max_pool2d", grad, plan.out_shape, (np.zeros((), dtype),))
    return _to_chwn(grad, ((0, 0), (0, 0)), "grouped")


def block_backward(grad: Array, weight: Array, bias: Array | None, plan: BlockPlan, saved: BlockSaved,
                   input_grad: bool) -> tuple[Array | None, Array, Array | None]:
    """The block's gradients from the upstream gradient of its output, (O, Ho, Wo, N): the input's
    (as the (C, H, W, N) inside of a scratch buffer, or None without ``input_grad``), the weight's
    and the bias's. The ReLU's mask is :func:`symdl.kernels.relu_vjp`'s, ``grad * (x > 0)``, at the
    window maxima; each window's masked gradient goes to its tap, every other position gets 0."""
    conv = plan.conv
    g, o = conv.groups, conv.w_shape[0]
    masked = grad * (saved.maxima > 0)
    n = masked.shape[-1]
    d_z = _scratch("pool_grad", (o, *conv.out_hw, n), grad.dtype)
    d_z.fill(0)
    displacement, corners = _tap_positions(plan, n)
    positions = np.take(displacement, saved.taps)
    positions += corners
    d_z.reshape(-1)[positions.reshape(-1)] = masked.reshape(-1)  # windows do not overlap: one scatter
    g2 = d_z.reshape(g, o // g, -1)
    d_w = times_columns_transposed(g2, saved.columns).reshape(weight.shape)
    d_b = None if bias is None else g2.sum(axis=-1).reshape(o)
    if not input_grad:
        return None, d_w, d_b
    c, (h, w) = conv.x_shape[1], conv.x_shape[2:]
    d_cols = np.matmul(weight.reshape(g, o // g, -1).transpose(0, 2, 1), g2,
                       out=_scratch("product", (g, saved.columns.shape[1], g2.shape[2]), g2.dtype))
    full = col2im(d_cols.reshape(c, *conv.kernel, *conv.out_hw, -1), conv.full_hw, conv.kernel, conv.stride,
                  conv.dilation)
    (top, _), (left, _) = conv.pads
    return full[:, top:top + h, left:left + w], d_w, d_b


def grad_to_batch_first(d_x: Array) -> Array:
    """A chain's input gradient, (C, H, W, N), as a fresh (N, C, H, W) array."""
    return _from_chwn(d_x, None)

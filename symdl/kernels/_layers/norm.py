"""Batch, layer and group normalisation: statistics, the affine part and the three-term input gradient."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels import _parallel
from symdl.kernels._layers.common import Arrays, _rank, _vector, strided_view
from symdl.kernels._runtime import check_bool


def rsqrt(v: np.ndarray) -> np.ndarray:
    r""":math:`1 / \sqrt{v}` (an exact power on object arrays)."""
    return v ** Fraction(-1, 2) if v.dtype == object else 1.0 / np.sqrt(v)


#: The dtypes whose products :func:`sums` hands to BLAS.
_BLAS_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: The longest run of elements one BLAS dot product adds (:func:`sums`).
_DOT_ELEMENTS = 256


def _blocks(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """``x`` as an (A, K, L) view, the summed ``axes`` gathered in A (leading) and L (trailing) and
    the kept ones in K, when BLAS can take its dot products: a C-contiguous float32/float64 array
    whose kept axes are adjacent, with L > 1 (else None)."""
    if x.dtype not in _BLAS_DTYPES or not x.flags.c_contiguous:
        return None
    kept = [i for i in range(x.ndim) if i not in axes]
    first, stop = (kept[0], kept[-1] + 1) if kept else (x.ndim, x.ndim)
    inner = math.prod(x.shape[stop:])
    if kept != list(range(first, stop)) or inner < 2:
        return None
    return x.reshape(math.prod(x.shape[:first]), math.prod(x.shape[first:stop]), inner)


def _chunked(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An (A, K, L) C-contiguous array as an (A, K, L // c, c) view of its whole chunks of
    c = :data:`_DOT_ELEMENTS` elements and an (A, K, L % c) view of the rest."""
    a, k, length = blocks.shape
    whole, item = length - length % _DOT_ELEMENTS, blocks.itemsize
    head = strided_view(blocks, (a, k, whole // _DOT_ELEMENTS, _DOT_ELEMENTS),
                        (*blocks.strides[:2], _DOT_ELEMENTS * item, item))
    return head, blocks[:, :, whole:]


def sums(x: np.ndarray, axes: tuple[int, ...], times: np.ndarray | None = None) -> np.ndarray:
    r""":math:`\sum x` (or :math:`\sum x \cdot \text{times}`, same shape) over ``axes``, kept as size-1 axes.

    The sum of a product of two float arrays is BLAS dot products along their trailing summed
    axes, then NumPy sums over the rest: 2.5-5x faster than NumPy's product and reduction on a
    batch or layer norm's (32, 16, 32, 32) or (64, 128, 256) input, with no temporary for the
    product. Each dot product adds at most :data:`_DOT_ELEMENTS` elements: BLAS accumulates a row
    in a few SIMD lanes, so a whole 2^18-element channel in one dot product came out 5-7x less
    accurate (float32) than NumPy's pairwise sum; in chunks of 256 it is as accurate. A plain sum
    is NumPy's (a dot product with ones was no faster), as is every sum of other arrays (the
    proofs' object arrays, strided views).
    """
    blocks = None if times is None or times.dtype != x.dtype or not times.flags.c_contiguous else _blocks(x, axes)
    if blocks is None:
        return (x if times is None else x * times).sum(axis=axes, keepdims=True)
    (head, tail), (head_times, tail_times) = _chunked(blocks), _chunked(times.reshape(blocks.shape))
    partial = np.vecdot(head, head_times).sum(axis=-1)
    if tail.shape[-1]:
        partial += np.vecdot(tail, tail_times)
    return partial.sum(axis=0).reshape([1 if i in axes else size for i, size in enumerate(x.shape)])


def _count(x: np.ndarray, axes: tuple[int, ...]) -> int:
    """How many elements each sum over ``axes`` adds."""
    return math.prod(x.shape[i] for i in axes)


def _centred(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, x - mean (a fresh array) and the biased variance over ``axes`` (kept): two passes
    over the data for the statistics, stable where :math:`E[x^2] - E[x]^2` cancels."""
    count = _count(x, axes)
    mean = sums(x, axes) / count
    centred = x - mean
    return mean, centred, sums(centred, axes, centred) / count


def _moments(x: np.ndarray, axes: tuple[int, ...], eps: Any) -> tuple[np.ndarray, ...]:
    r""":math:`x - \mu` (a fresh array), the mean, the biased variance and
    :math:`1/\sqrt{\sigma^2 + \epsilon}` over ``axes`` (kept).

    Numerics: where the sums overflow (|x| near the dtype's maximum) the statistics are taken of
    :math:`x / m`, :math:`m = \max |x|`, and scaled back, so the mean and the normalised values
    stay finite whenever the true values are.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, centred, var = _centred(x, axes)
        if _finite_variance(x, var):
            return centred, mean, var, rsqrt(var + eps)
        scale = np.max(np.abs(x), axis=axes, keepdims=True)
        scale[scale == 0] = 1
        mean_s, _, var_s = _centred(x / scale, axes)
        mean, var = mean_s * scale, var_s * scale * scale
        return x - mean, mean, var, 1 / (scale * np.sqrt(var_s + eps / scale / scale))


def _finite_variance(x: np.ndarray, var: np.ndarray) -> bool:
    """Whether the plain two-pass variance can be used: it is finite, or x itself is not (then
    nothing is to be saved), or x holds exact symbols (the proofs)."""
    return x.dtype == object or bool(np.all(np.isfinite(var))) or not np.all(np.isfinite(x))


def standardize(x: np.ndarray, axes: tuple[int, ...], eps: Any) -> tuple[np.ndarray, ...]:
    r""":math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}` (a fresh array), the mean, the biased
    variance and :math:`1/\sqrt{\sigma^2 + \epsilon}` over ``axes`` (kept); see :func:`_moments`."""
    centred, mean, var, rstd = _moments(x, axes, eps)
    centred *= rstd
    return centred, mean, var, rstd


def _three_term(d: np.ndarray, xhat: np.ndarray, sum_d: np.ndarray, sum_dx: np.ndarray, count: int,
                scale: Any, out: np.ndarray | None = None) -> np.ndarray:
    r""":math:`s\,\big(d - \tfrac{1}{M}\sum d - \hat x\, \tfrac{1}{M}\sum d \hat x\big)` from the two sums
    (kept axes), into ``out`` when given; overwrites ``xhat``, a fresh array of the caller's that is
    not needed afterwards."""
    out = np.subtract(d, sum_d / count, out=out)
    xhat *= sum_dx / count
    out -= xhat
    out *= scale
    return out


def normalize_vjp(d_xhat: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    r"""The three-term formula :math:`\bar x = \frac{1}{\sigma}\big(\bar{\hat x} - \overline{\bar{\hat x}}
    - \hat x\, \overline{\bar{\hat x} \hat x}\big)` (bars over a sum: means over ``axes``); overwrites
    ``xhat`` (the caller's fresh :func:`standardize` result)."""
    return _three_term(d_xhat, xhat, sums(d_xhat, axes), sums(d_xhat, axes, xhat), _count(xhat, axes), rstd)


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
    d_weight = None if weight is None else sums(grad, axes, xhat).reshape(weight.shape)
    d_bias = None if bias is None else sums(grad, axes).reshape(bias.shape)
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


def _nanoseconds(x: np.ndarray, passes: int) -> int:
    """A rough single-thread time of ``passes`` passes over ``x``, to decide whether splitting the
    batch pays: a twelfth of a nanosecond per byte and pass ((32, 16, 32, 32) float32, 2 MB, took
    about 1.1 ms forward, 6 passes, and 2.5 ms backward, 12)."""
    return x.nbytes * passes // 12


def _chunk_sums(parts: list[Any]) -> Any:
    """The chunks' partial sums added in chunk order (the same for a given thread count)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _batch_moments(x: np.ndarray, axes: tuple[int, ...], eps: Any, bounds: list[tuple[int, int]],
                   grad: np.ndarray | None = None) -> tuple[Any, ...]:
    r"""Batch norm's training statistics with the batch split into ``bounds`` chunks that run on the
    kernel threads (:mod:`~symdl.kernels._parallel`): :math:`x - \mu` (fresh), :math:`\mu`, the
    biased :math:`\sigma^2`, :math:`1/\sqrt{\sigma^2 + \epsilon}` and, given ``grad``,
    :math:`\sum \bar y`. Two passes, each adding the chunks' partial sums in chunk order: the sums
    of x (and of the gradient), then each chunk's :math:`x - \mu` and its sum of squares. Where the
    sums overflow, :func:`_moments` takes the statistics of the whole batch, scaled (the passes
    ignore overflow in every thread: NumPy's error state is per thread)."""
    count = _count(x, axes)

    def first(start: int, stop: int) -> tuple[Any, Any]:
        with np.errstate(over="ignore", invalid="ignore"):
            return sums(x[start:stop], axes), None if grad is None else sums(grad[start:stop], axes)

    firsts = _parallel.over_chunks(bounds, first)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = _chunk_sums([part for part, _ in firsts]) / count
    sum_g = None if grad is None else _chunk_sums([part for _, part in firsts])
    centred = np.empty(x.shape, dtype=np.result_type(x, mean))

    def second(start: int, stop: int) -> Any:
        with np.errstate(over="ignore", invalid="ignore"):
            part = np.subtract(x[start:stop], mean, out=centred[start:stop])
            return sums(part, axes, part)

    with np.errstate(over="ignore", invalid="ignore"):
        var = _chunk_sums(_parallel.over_chunks(bounds, second)) / count
        if _finite_variance(x, var):
            return centred, mean, var, rsqrt(var + eps), sum_g
    return (*_moments(x, axes, eps), sum_g)


def _running_standardized(x: np.ndarray, mean: np.ndarray, var: np.ndarray, plan: NormPlan) -> tuple[Any, Any]:
    r"""Eval mode's :math:`\hat x = (x - \mu_{\text{running}})\, r` (fresh) and
    :math:`r = 1/\sqrt{\sigma^2_{\text{running}} + \epsilon}`, broadcast over the channels."""
    rstd = rsqrt(var.reshape(plan.param_shape) + plan.eps)
    return (x - mean.reshape(plan.param_shape)) * rstd, rstd


def batch_norm_forward(arrays: Arrays, plan: NormPlan) -> np.ndarray:
    r""":math:`y = \gamma \hat x + \beta`, :math:`\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}`, with the
    batch's :math:`\mu, \sigma^2` per channel (training: then, in place, running :math:`\leftarrow
    (1 - m)\,\text{running} + m\,\text{stat}` with the unbiased variance) or the running ones (eval).
    In training a large batch is split into chunks on the kernel threads (:func:`_batch_moments`)."""
    x, running_mean, running_var, w, b = arrays
    if not plan.training:
        return _affine(_running_standardized(x, running_mean, running_var, plan)[0], w, b, plan.param_shape)
    bounds = _parallel.chunks(x.shape[0], _nanoseconds(x, 6), x.dtype)
    centred, mean, var, rstd, _ = _batch_moments(x, plan.axes, plan.eps, bounds)
    count = _count(x, plan.axes)
    for running, stat in ((running_mean, mean), (running_var, var * count / (count - 1))):
        if running is not None:
            running *= 1 - plan.momentum
            running += (plan.momentum * stat).reshape(running.shape).astype(running.dtype)

    def normalise(start: int, stop: int) -> Any:
        part = centred[start:stop]
        part *= rstd
        return _affine(part, w, b, plan.param_shape)

    parts = _parallel.over_chunks(bounds, normalise)
    # in place in each chunk, unless the parameters widen the dtype: then each chunk is a new array
    widened = any(p is not None and np.result_type(centred, p) != centred.dtype for p in (w, b))
    return np.concatenate(parts) if widened else centred


def batch_norm_backward(grad: np.ndarray, arrays: Arrays, plan: NormPlan) -> tuple[Any, ...]:
    r"""Training: :math:`\bar x = \frac{\gamma}{\sigma}\big(\bar y - \text{mean}(\bar y) - \hat x\,
    \text{mean}(\bar y \hat x)\big)` (the three-term formula with :math:`\gamma` constant over each
    channel's statistics, so the two means are :math:`\bar\beta / M` and :math:`\bar\gamma / M`);
    eval: :math:`\bar x = \gamma \bar y / \sigma`; :math:`\bar\gamma = \sum \bar y \hat x`,
    :math:`\bar\beta = \sum \bar y`. Never touches the running stats. In training a large batch
    is split into chunks on the kernel threads, as in the forward."""
    x, running_mean, running_var, w, b = arrays
    shape, axes = plan.param_shape, plan.axes
    if not plan.training:
        xhat, rstd = _running_standardized(x, running_mean, running_var, plan)
        return (grad * (rstd if w is None else rstd * w.reshape(shape)), None, None,
                None if w is None else sums(grad, axes, xhat).reshape(w.shape),
                None if b is None else sums(grad, axes).reshape(b.shape))
    bounds = _parallel.chunks(x.shape[0], _nanoseconds(x, 12), x.dtype)
    xhat, _, _, rstd, sum_g = _batch_moments(x, axes, plan.eps, bounds, grad)

    def standardise(start: int, stop: int) -> Any:  # xhat, and its products with the gradient
        part = xhat[start:stop]
        part *= rstd
        return sums(grad[start:stop], axes, part)

    sum_gx = _chunk_sums(_parallel.over_chunks(bounds, standardise))
    scale = rstd if w is None else rstd * w.reshape(shape)
    d_x = np.empty(grad.shape, dtype=np.result_type(grad, xhat))
    count = _count(x, axes)
    _parallel.over_chunks(bounds, lambda start, stop: _three_term(grad[start:stop], xhat[start:stop], sum_g, sum_gx,
                                                                  count, scale, out=d_x[start:stop]))
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



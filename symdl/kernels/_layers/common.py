"""What every layer runtime module shares: remembered plans, argument checks, scratch buffers and
the (C, H, W, N) layout changes."""

from __future__ import annotations

import functools
import math
import numbers
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels._runtime import float_array

ArrayLike = Any
Pads = tuple[tuple[int, int], tuple[int, int]]
Arrays = tuple[Any, ...]


# --------------------------------------------------------------------------- plans, remembered
class _NotPlain(Exception):
    """An argument that cannot key the plan memo (a list, a float subclass, ...)."""


_PLAIN = frozenset({int, bool, float, str, type(None)})


def _plain(value: object) -> tuple[type, object]:
    """``value`` with its type, as a memo key: True and 1, or 2 and 2.0, are equal and hash alike,
    but a plan checked for one must not be returned for the other (2.0 is a bad kernel_size)."""
    kind = type(value)
    if kind in _PLAIN or (kind is tuple and all(type(v) is int for v in value)):
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
    @functools.wraps(build)
    def plan(op: str, arrays: Arrays, **options: object) -> Any:
        try:  # (list displays, not generator expressions: this runs for every layer call)
            key = (build, op, tuple([None if a is None else a.shape for a in arrays]),
                   tuple([(name, _plain(value)) for name, value in options.items()]))
        except _NotPlain:
            return build(op, arrays, **options)
        found = _PLANS.get(key)
        if found is None:
            found = build(op, arrays, **options)
            if len(_PLANS) >= _PLANS_KEPT:
                _PLANS.clear()
            _PLANS[key] = found
        return found

    return plan


# --------------------------------------------------------------------------- arrays
def floats(op: str, names: tuple[str, ...], values: tuple[ArrayLike, ...], required: tuple[str, ...]) -> Arrays:
    """Each value as a floating array (None stays None unless the name is required)."""
    if all(type(value) is np.ndarray and value.dtype.kind == "f" for value in values):
        return values  # the usual call: floating arrays already, nothing to convert or check
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
    dtypes = {a.dtype for a in arrays if a is not None}
    dtype = next(iter(dtypes)) if len(dtypes) == 1 else np.result_type(*dtypes)  # one dtype: the usual call
    return g if g.dtype == dtype else g.astype(dtype)


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


def strided_view(base: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of ``base`` with ``shape`` and byte ``strides`` (which must stay inside it):
    ``numpy.lib.stride_tricks.as_strided``, built directly on a C-contiguous base (1 us against
    7 us: a small layer calls it every step)."""
    if not base.flags.c_contiguous or base.dtype == object:
        return np.lib.stride_tricks.as_strided(base, shape, strides, writeable=False)
    view = np.ndarray(shape, base.dtype, base, 0, strides)
    view.flags.writeable = False
    return view


# --------------------------------------------------------------------------- layout changes
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
        gather_last(out[start:start + step, top:top + h, left:left + w, :], source[start:start + step])
    return out


#: Elements of the gathered (last) axis per step of :func:`gather_last`, and the source stride from
#: which it pays: NumPy's transposing copy reads one element per sample from rows ``stride`` bytes
#: apart, and at power-of-two strides of 1 KiB and more (a (16, 8, 8) float32 sample is 4 KiB) those
#: rows share cache sets, so a whole pass over N evicts itself. Eight at a time stays resident:
#: (64, 16, 8, 8) -> (16, 8, 8, 64) 57-63 us against 183-191 us, (64, 32, 4, 4) 21 against 72 us
#: (float32, scripts/bench_layers.py's machine); below 1 KiB strides the blocks only add calls.
GATHER_BLOCK, GATHER_MIN_STRIDE = 8, 1024


def gather_last(out: np.ndarray, source: np.ndarray) -> None:
    """``out[...] = source`` where ``source``'s last axis is strided (a transposed view), a few
    elements of that axis at a time when its stride is large enough to thrash the cache."""
    n = out.shape[-1]
    if source.dtype == object or abs(source.strides[-1]) < GATHER_MIN_STRIDE or n <= 2 * GATHER_BLOCK:
        out[...] = source
        return
    for start in range(0, n, GATHER_BLOCK):
        out[..., start:start + GATHER_BLOCK] = source[..., start:start + GATHER_BLOCK]


def _from_chwn(y: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W, N)-ordered data (a view is fine) as a fresh C-contiguous (N, C, H, W) array, plus a
    per-channel bias; or written into ``out``, an (N, C, H, W) array (a batch chunk's rows of
    one). Contiguous, as PyTorch's: the next layer's elementwise kernels would crawl
    through a (C, H, W, N)-strided array, mixing it with contiguous gradients."""
    c, h, w, n = y.shape
    if out is None:
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


def _spatial_view(spatial: int, values: tuple[int, ...], fill: int) -> tuple[int, int]:
    return (fill, values[0]) if spatial == 1 else (values[0], values[1])

"""Dropout with an explicit mask, and flatten."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from symdl.errors import OpInputError, OpParameterError
from symdl.kernels._layers.common import Arrays, remembered
from symdl.kernels._runtime import check_bool


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

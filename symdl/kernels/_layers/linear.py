"""Linear and bilinear maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from symdl.errors import OpInputError
from symdl.kernels._layers.common import Arrays, _rank, _vector, remembered
from symdl.kernels._runtime import check_bool


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



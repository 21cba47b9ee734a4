"""The layer runtime the generated kernels call (``_lr`` in ``symdl/kernels/layers.py``): the
names of :mod:`symdl.kernels._layers`' modules, gathered in one namespace."""

from __future__ import annotations

from symdl.kernels._layers.common import ArrayLike, Arrays, Pads, floats, upstream
from symdl.kernels._layers.conv import (im2col, col2im, ConvPlan, conv_plan, conv_forward, conv_backward,
                                        conv_transpose_plan, conv_transpose_forward, conv_transpose_backward)
from symdl.kernels._layers.pool import (PoolPlan, pool_plan, avg_pool_forward, avg_pool_backward, max_pool_forward,
                                        max_pool_backward, AdaptivePlan, adaptive_avg_pool_plan,
                                        adaptive_avg_pool_forward, adaptive_avg_pool_backward)
from symdl.kernels._layers.linear import (LinearPlan, linear_plan, linear_forward, linear_backward, bilinear_plan,
                                          bilinear_forward, bilinear_backward)
from symdl.kernels._layers.norm import (rsqrt, standardize, normalize_vjp, NormPlan, batch_norm_plan,
                                        batch_norm_forward, batch_norm_backward, layer_norm_plan, group_norm_plan,
                                        norm_forward, norm_backward)
from symdl.kernels._layers.shape import (ShapePlan, dropout_plan, dropout_forward, dropout_backward, flatten_plan,
                                         flatten_forward, flatten_backward)

__all__ = [
    'ArrayLike', 'Arrays', 'Pads', 'floats', 'upstream', 'im2col', 'col2im', 'ConvPlan', 'conv_plan',
    'conv_forward', 'conv_backward', 'conv_transpose_plan', 'conv_transpose_forward',
    'conv_transpose_backward', 'PoolPlan', 'pool_plan', 'avg_pool_forward', 'avg_pool_backward',
    'max_pool_forward', 'max_pool_backward', 'AdaptivePlan', 'adaptive_avg_pool_plan',
    'adaptive_avg_pool_forward', 'adaptive_avg_pool_backward', 'LinearPlan', 'linear_plan', 'linear_forward',
    'linear_backward', 'bilinear_plan', 'bilinear_forward', 'bilinear_backward', 'rsqrt', 'standardize',
    'normalize_vjp', 'NormPlan', 'batch_norm_plan', 'batch_norm_forward', 'batch_norm_backward',
    'layer_norm_plan', 'group_norm_plan', 'norm_forward', 'norm_backward', 'ShapePlan', 'dropout_plan',
    'dropout_forward', 'dropout_backward', 'flatten_plan', 'flatten_forward', 'flatten_backward',
]

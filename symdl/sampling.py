"""Draw inputs and parameters for a catalog op or layer from its declared domains.

One sampler serves ``symdl verify``, the catalog-driven tests (through
:mod:`symdl.strategies`) and ``symdl gradcheck --op``: values come from each
input's :class:`~symdl.catalog.spec.Domain` and role, shapes from the op's kind
(for a layer, from one of its instances).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from symdl.catalog.layer_spec import Instance, Layer
from symdl.catalog.spec import Input, Op

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- values by role
def _real(item: Input, rng: np.random.Generator, shape: Shape, num_classes: int) -> np.ndarray:
    return rng.uniform(item.domain.low, item.domain.high, shape)


def _sign(item: Input, rng: np.random.Generator, shape: Shape, num_classes: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), shape)


def _binary(item: Input, rng: np.random.Generator, shape: Shape, num_classes: int) -> np.ndarray:
    return rng.integers(0, 2, shape).astype(np.float64)


def _class_index(item: Input, rng: np.random.Generator, shape: Shape, num_classes: int) -> np.ndarray:
    return rng.integers(0, num_classes, shape)


def _probability_rows(item: Input, rng: np.random.Generator, shape: Shape, num_classes: int) -> np.ndarray:
    """Rows on the simplex along axis 1 (or 0 for 1-D), as cross-entropy targets."""
    raw = rng.uniform(0.05, 1.0, shape)
    axis = 1 if len(shape) > 1 else 0
    return raw / raw.sum(axis=axis, keepdims=True)


VALUE_SAMPLERS: dict[str, Callable[[Input, np.random.Generator, Shape, int], np.ndarray]] = {
    "real": _real,
    "positive": _real,
    "probability": _real,
    "sign": _sign,
    "binary": _binary,
    "class_index": _class_index,
    "distribution": _probability_rows,
}


# --------------------------------------------------------------------------- parameters
def variant_value(op: Op, variant: str) -> object:
    """The parameter value that selects ``variant`` (bool variants are keyed 'True'/'False')."""
    default = op.param(op.variant_param).default if op.variant_param else None
    return variant == "True" if isinstance(default, bool) else variant


def draw_params(op: Op, rng: np.random.Generator, variant: object = None) -> dict[str, object]:
    """Parameters drawn from their sample domains (defaults where none is given)."""
    params: dict[str, object] = {}
    for p in op.params:
        if p.name == op.variant_param:
            params[p.name] = op.param(p.name).default if variant in (None, "") else variant_value(op, str(variant))
        elif p.sample is not None:
            params[p.name] = float(rng.uniform(p.sample.low, p.sample.high))
    return params


def input_shapes(op: Op, batch_shape: Shape) -> dict[str, Shape]:
    """The shape of every input, given the op's leading shape.

    Elementwise ops, row ops and pointwise losses take every input at
    ``batch_shape``. Class losses read ``batch_shape`` as (N, C, ...): class
    indices drop the class axis, per-row targets keep only N.
    """
    shapes = {}
    for item in op.inputs:
        if op.traits.class_targets and item.role == "class_index":
            shapes[item.name] = batch_shape[:1] + batch_shape[2:] if len(batch_shape) > 1 else ()
        elif op.traits.class_targets and item.role == "sign":
            shapes[item.name] = batch_shape[:1]
        else:
            shapes[item.name] = batch_shape
    return shapes


def draw_inputs(op: Op, rng: np.random.Generator, batch_shape: Shape, dtype: np.dtype | type = np.float64
                ) -> list[np.ndarray]:
    """One array per input, in input order; real inputs in ``dtype``."""
    shapes = input_shapes(op, batch_shape)
    num_classes = batch_shape[1] if len(batch_shape) > 1 else (batch_shape[0] if batch_shape else 1)
    arrays = []
    for item in op.inputs:
        values = VALUE_SAMPLERS[item.role](item, rng, shapes[item.name], num_classes)
        arrays.append(values if item.role == "class_index" else np.asarray(values, dtype=dtype))
    return arrays


def draw_layer_arrays(layer: Layer, instance: Instance, rng: np.random.Generator, dtype: Any = np.float64,
                magnitude: float = 1.0) -> list[np.ndarray | None]:
    """Random arrays for an instance: the first input scaled by ``magnitude``, masks 0/1,
    positive inputs in [0.5, 1.5], the rest standard normal."""
    out: list[np.ndarray | None] = []
    for index, item in enumerate(layer.inputs):
        shape = instance.shapes.get(item.name)
        if shape is None:
            out.append(None)
        elif item.role == "mask":
            out.append(rng.integers(0, 2, size=shape).astype(dtype))
        elif item.role == "positive":
            out.append((rng.random(shape) + 0.5).astype(dtype))
        else:
            values = rng.standard_normal(shape) * (magnitude if index == 0 else 1.0)
            out.append(values.astype(dtype))
    return out

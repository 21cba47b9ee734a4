"""Hypothesis strategies for catalog ops and for users' own gradient tests.

``op_cases(op)`` draws a parameter set and a list of input arrays from the
op's declared domains; ``arrays_in(domain)`` draws float arrays from a
:class:`~symdl.catalog.spec.Domain`. symdl's own catalog tests use exactly
these.

For your own gradient tests (with :func:`symdl.testing.assert_grad_close`):

* :func:`shapes` draws array shapes small enough for full Jacobians;
* :func:`well_conditioned_arrays` draws arrays from a domain whose elements
  keep a margin from given kinks (moved off them, not discarded, so
  hypothesis does not give up) and from each other's kinks' neighbourhood,
  i.e. points where finite differences are meaningful.

>>> from hypothesis import given
>>> from symdl.catalog.spec import Domain
>>> from symdl.strategies import well_conditioned_arrays
>>> @given(well_conditioned_arrays(Domain(-3, 3), kinks=(0.0,)))
... def test_relu_gradient(x): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symdl.catalog.spec import Domain, Op
from symdl.sampling import input_shapes, variant_value

#: Largest array a case draws per axis: small enough for full Jacobians.
MAX_SIDE = 5


@dataclass(frozen=True)
class OpCase:
    """One drawn call of an op: its variant, parameters and inputs."""

    op: Op
    variant: str
    params: dict[str, object]
    inputs: tuple[np.ndarray, ...]


def float_range(low: float, high: float, width: int) -> st.SearchStrategy[float]:
    """Floats in [low, high]; for width 32 the bounds are rounded inwards to float32."""
    if width == 32:
        low32, high32 = np.float32(low), np.float32(high)
        low = float(low32 if low32 >= low else np.nextafter(low32, np.float32(np.inf)))
        high = float(high32 if high32 <= high else np.nextafter(high32, np.float32(-np.inf)))
    return st.floats(low, high, allow_nan=False, allow_infinity=False, width=width)


def arrays_in(domain: Domain, shape: tuple[int, ...], dtype: type = np.float64) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` with finite elements in ``[domain.low, domain.high]``."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elements = float_range(domain.low, domain.high, width)
    return hnp.arrays(dtype, shape, elements=elements)


def param_values(op: Op, variant: str, dtype: type = np.float64) -> st.SearchStrategy[dict[str, object]]:
    """Parameters: sampled where the catalog gives a range, else the default.

    With a float32 ``dtype`` they are float32-representable, as PyTorch rounds a
    scalar parameter to the tensor's dtype.
    """
    width = 32 if np.dtype(dtype) == np.float32 else 64
    fixed: dict[str, object] = {}
    drawn: dict[str, st.SearchStrategy[object]] = {}
    for p in op.params:
        if p.name == op.variant_param:
            fixed[p.name] = variant_value(op, variant)
        elif p.sample is not None:
            drawn[p.name] = float_range(p.sample.low, p.sample.high, width)
    return st.fixed_dictionaries(drawn).map(lambda d: {**fixed, **d})


def _batch_shapes(op: Op) -> st.SearchStrategy[tuple[int, ...]]:
    if op.traits.class_targets:
        return st.tuples(st.integers(1, MAX_SIDE), st.integers(2, MAX_SIDE))
    return hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=MAX_SIDE)


_ROLE_ELEMENTS = {
    "sign": st.sampled_from([-1.0, 1.0]),
    "binary": st.sampled_from([0.0, 1.0]),
}


@st.composite
def op_cases(draw: st.DrawFn, op: Op, variant: str = "", dtype: type = np.float64) -> OpCase:
    """A call of ``op``: parameters and one array per input, from its domains."""
    params = draw(param_values(op, variant, dtype))
    batch = draw(_batch_shapes(op))
    shapes = input_shapes(op, batch)
    num_classes = batch[1] if len(batch) > 1 else batch[0]
    inputs = []
    for item in op.inputs:
        shape = shapes[item.name]
        if item.role == "class_index":
            inputs.append(draw(hnp.arrays(np.int64, shape, elements=st.integers(0, num_classes - 1))))
        elif item.role in _ROLE_ELEMENTS:
            inputs.append(draw(hnp.arrays(dtype, shape, elements=_ROLE_ELEMENTS[item.role])))
        elif item.role == "distribution":
            raw = draw(arrays_in(Domain(0.05, 1.0), shape, dtype))
            inputs.append((raw / raw.sum(axis=1 if raw.ndim > 1 else 0, keepdims=True)).astype(dtype))
        else:
            inputs.append(draw(arrays_in(item.domain, shape, dtype)))
    return OpCase(op, variant, params, tuple(inputs))


# --------------------------------------------------------------------------- for users' own tests
def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = MAX_SIDE
           ) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes with ``min_dims..max_dims`` axes of ``min_side..max_side`` elements."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def off_kinks(values: np.ndarray, kinks: Sequence[float | np.ndarray], margin: float) -> np.ndarray:
    """``values`` with every element within ``margin`` of a kink moved to ``2 margin`` from it (same side,
    or above it when exactly on it), staying in the dtype. A kink may be an array (per element, broadcast to
    ``values``). Kinks closer to each other than ``4 margin`` count as one span, which an element within
    ``margin`` of it leaves by ``2 margin`` on its nearer side: hardshrink's kinks +-lambd at lambd = 0.001
    are one for a margin of 0.001 (moved off one, an element would land on the other)."""
    moved = np.array(values, dtype=values.dtype, copy=True)
    if not len(kinks):
        return moved
    x = moved.astype(np.float64)
    points = np.sort(np.stack([np.broadcast_to(np.asarray(k, dtype=np.float64), x.shape) for k in kinks]), axis=0)
    result, low = x.copy(), points[0]
    for j, high in enumerate(points):  # each element's spans, left to right
        last = j + 1 == len(points)
        ends = np.ones(x.shape, bool) if last else points[j + 1] - high >= 4 * margin
        near = ends & (x > low - margin) & (x < high + margin)
        result = np.where(near, np.where(x >= (low + high) / 2, high + 2 * margin, low - 2 * margin), result)
        if not last:
            low = np.where(ends, points[j + 1], low)
    moved[...] = result.astype(values.dtype)
    return moved


@st.composite
def well_conditioned_arrays(draw: st.DrawFn, domain: Domain = Domain(-3.0, 3.0),
                            shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
                            dtype: type = np.float64, kinks: tuple[float, ...] = (), margin: float = 1e-3
                            ) -> np.ndarray:
    """Arrays with elements in ``[domain.low, domain.high]``, at least ``margin`` away from every kink.

    Args:
        domain: where elements come from (bounds rounded inwards for float32).
        shape: a fixed shape, a strategy for one, or None for :func:`shapes`.
        dtype: float64 or float32.
        kinks: points where the function under test is not differentiable
            (``(0.0,)`` for relu or abs); elements near them are moved off.
        margin: the distance kept from kinks, far above the checker's steps.
    """
    if shape is None:
        shape = shapes()
    drawn_shape = draw(shape) if isinstance(shape, st.SearchStrategy) else tuple(shape)
    values = draw(arrays_in(domain, drawn_shape, dtype))
    return off_kinks(values, kinks, margin)

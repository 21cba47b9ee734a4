"""The typed pieces a layer's catalog entry is made of.

A layer differs from an activation or a loss (:class:`~symdl.catalog.spec.Op`):
several array inputs of different shapes, shape hyper-parameters (stride,
padding, groups, ...) and an *index-level* definition instead of a scalar
formula. A :class:`Layer` holds

* its PyTorch signature (:class:`LayerInput`, :class:`LayerParam`);
* ``definition``: the layer written index by index over explicit arrays of
  SymPy symbols, e.g. ``y[n, o, i, j] = b[o] + sum x[n, c, s i + d u - p, ...] w[o, c, u, v]``;
  SymPy differentiates it to get the vector-Jacobian product;
* the names of the closed-form programs in
  :mod:`symdl.kernels._layers_runtime` (``plan``, ``forward``, ``backward``)
  that the generated kernels run, and that :mod:`symdl.proofs.layers` runs on
  symbol arrays to prove them equal to the definition and its derivative;
* ``instances``: the grid of small shapes and hyper-parameters the proof runs
  on (general sizes are out of SymPy's reach);
* the math in LaTeX for the kernel docstrings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: ``exact``: the closed form is compared with SymPy's derivative as expressions
#: (polynomials expanded, square roots of the variance canonicalised);
#: ``points``: piecewise layers (max-pool) compared exactly at integer-valued
#: points without ties, where SymPy's derivative of ``Max`` is defined.
ProofKind = Literal["exact", "points"]

#: How an array argument may be omitted: ``required`` (an array), ``nullable``
#: (positional, no default, may be None: batch_norm's running stats) or
#: ``optional`` (default None: bias, weight).
Presence = Literal["required", "nullable", "optional"]


@dataclass(frozen=True)
class LayerInput:
    """An array argument, in PyTorch's positional order."""

    name: str
    presence: Presence = "required"
    differentiable: bool = True
    #: ``mask``: holds 0/1 (dropout's mask; proofs give it 0/1 values, not symbols);
    #: ``positive``: numeric checks draw positive values (running variances).
    role: Literal["real", "mask", "positive"] = "real"


@dataclass(frozen=True)
class LayerParam:
    """A keyword-only hyper-parameter with PyTorch's default.

    ``where`` says which kernel takes it: max-pool's ``return_indices`` is a
    forward-only flag, its ``indices`` a backward-only input. ``required``
    parameters have no default (layer_norm's ``normalized_shape``).
    """

    name: str
    default: object = None
    annotation: str = "int"
    where: Literal["both", "forward", "backward"] = "both"
    required: bool = False


@dataclass(frozen=True)
class Instance:
    """One proof instance: the shape of each array input (None: omitted) and the parameters."""

    shapes: Mapping[str, tuple[int, ...] | None]
    params: Mapping[str, object] = field(default_factory=dict)

    def label(self) -> str:
        """Short text naming the instance in failures."""
        shapes = ", ".join(f"{k}={v}" for k, v in self.shapes.items() if v is not None)
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{shapes}; {params}" if params else shapes


#: ``definition(arrays, params) -> output``: arrays by input name (object
#: arrays of symbols, or None), the output an object array.
Definition = Callable[[Mapping[str, Any], Mapping[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Layer:
    """One layer: signature, index-level definition, closed-form programs and proof grid."""

    name: str
    summary: str
    inputs: tuple[LayerInput, ...]
    params: tuple[LayerParam, ...]
    definition: Definition
    plan: str
    forward: str
    backward: str
    instances: tuple[Instance, ...]
    math: tuple[str, ...]
    plan_args: Mapping[str, object] = field(default_factory=dict)
    proof: ProofKind = "exact"
    notes: tuple[str, ...] = ()
    returns: str = "np.ndarray"
    #: ``(magnitude, dtype name)`` pairs where forward and VJP must stay finite.
    extremes: tuple[tuple[float, str], ...] = ((1e15, "float32"), (1e150, "float64"))

    @property
    def grid_axes(self) -> tuple[str, ...]:
        """The hyper-parameters the proof grid varies, in first-seen order."""
        return tuple(dict.fromkeys(k for i in self.instances for k in i.params))

    @property
    def input_names(self) -> tuple[str, ...]:
        """The array inputs' names in order."""
        return tuple(i.name for i in self.inputs)

    def params_for(self, where: str) -> tuple[LayerParam, ...]:
        """The parameters the forward (``'forward'``) or the VJP (``'backward'``) takes."""
        return tuple(p for p in self.params if p.where in ("both", where))

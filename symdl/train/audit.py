"""``symdl train --check-grads``: check the whole model's backward pass before training.

The model is copied to float64 and its loss on one batch, in training mode,
is handed to :func:`symdl.check.gradcheck` as a function of every parameter
array, with the backward pass (the chained ``_vjp`` kernels) as its gradient.
``fast`` mode compares random projections of each parameter's gradient with
directional central differences, and falls back to the full Jacobian for a
parameter whose projection disagrees, which names the worst element.

Randomness inside the model (dropout masks) is replayed identically for every
evaluation; the real model and the training generator are not touched. The
input is not perturbed: max pooling meets exact ties on constant regions (the
zero borders of the digits), where the loss has a kink; tied units that see
the same input stay tied under any parameter perturbation.
"""

from __future__ import annotations

import copy

import numpy as np

from symdl import nn
from symdl.check import GradcheckReport, gradcheck


def audit(model: nn.Module, criterion: nn.Module, x: np.ndarray, y: np.ndarray, *, directions: int = 3,
          seed: int = 0) -> GradcheckReport:
    """Check the backward pass of ``criterion(model(x), y)`` against finite differences in float64."""
    model = copy.deepcopy(model).to(np.float64).train()
    x = np.array(x, np.float64)
    names, params = zip(*model.named_arrays("params"), strict=True)
    generators = [m.generator for m in model.modules() if isinstance(getattr(m, "generator", None),
                                                                       np.random.Generator)]
    states = [g.bit_generator.state for g in generators]

    def loss(*values: np.ndarray) -> float:
        for own, value in zip(params, values, strict=True):
            np.copyto(own, value)
        for generator, state in zip(generators, states, strict=True):  # the same dropout masks every time
            generator.bit_generator.state = state
        return float(criterion.forward(model.forward(x), y))

    def grad(*values: np.ndarray) -> list[np.ndarray]:
        loss(*values)
        model.backward(criterion.backward())
        return [g.copy() for g in model.gradients()]

    return gradcheck(loss, [p.copy() for p in params], grad, mode="fast", kind="grad", directions=directions,
                     seed=seed, names=list(names))

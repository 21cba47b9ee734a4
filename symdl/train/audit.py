"""``symdl train --check-grads``: check the whole model's backward pass before training.

The model is copied to float64 and run on one batch in training mode. Along
random directions :math:`v` (over every parameter at once) the
backward pass's directional derivative is compared with a central difference
of the loss:

.. math::

    \\langle \\nabla \\ell(\\theta), v \\rangle \\approx
    \\frac{\\ell(\\theta + h v) - \\ell(\\theta - h v)}{2 h}, \\qquad
    \\text{error } O(h^2 \\|v\\|^3) + O(\\epsilon / h)

(the inner-product form of JAX's and autograd's ``check_grads``). Randomness
inside the model (dropout masks) is replayed identically for every
evaluation, and nothing in the real model, nor the training generator, is
touched.

REPLACE with ``symdl.check.gradcheck`` once issue 3 lands: this is the
trainer's stopgap, kept small on purpose.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from symdl import nn

#: Step of the central difference and the relative error that fails the audit (float64).
STEP = 1e-6
TOLERANCE = 1e-6


@dataclass(frozen=True)
class AuditResult:
    """Directional derivatives from the backward pass and from central differences."""

    analytic: tuple[float, ...]
    numeric: tuple[float, ...]
    tolerance: float = TOLERANCE

    @property
    def errors(self) -> tuple[float, ...]:
        return tuple(abs(a - n) / max(abs(a), abs(n), 1e-12) for a, n in zip(self.analytic, self.numeric, strict=True))

    @property
    def passed(self) -> bool:
        return max(self.errors) <= self.tolerance

    def report(self) -> str:
        lines = [f"gradient check ({len(self.errors)} random directions, float64, one batch): "
                 f"max relative error {max(self.errors):.1e} (tolerance {self.tolerance:.0e}) "
                 f"{'PASS' if self.passed else 'FAIL'}"]
        lines += [f"  direction {i}: backward {a:+.12e}  central difference {n:+.12e}  rel err {e:.1e}"
                  for i, (a, n, e) in enumerate(zip(self.analytic, self.numeric, self.errors, strict=True))]
        return "\n".join(lines)


def audit(model: nn.Module, criterion: nn.Module, x: np.ndarray, y: np.ndarray, *, directions: int = 4,
          seed: int = 0) -> AuditResult:
    """Compare the backward pass of ``criterion(model(x), y)`` with central differences in float64."""
    model = copy.deepcopy(model).to(np.float64).train()
    x = np.array(x, np.float64)
    generators = [m.generator for m in model.modules() if isinstance(getattr(m, "generator", None),
                                                                       np.random.Generator)]
    states = [g.bit_generator.state for g in generators]

    def loss() -> float:
        for generator, state in zip(generators, states, strict=True):  # the same dropout masks every time
            generator.bit_generator.state = state
        return float(criterion.forward(model.forward(x), y))

    loss()
    model.backward(criterion.backward())
    # Parameters only: perturbing the input would break the exact ties that max pooling meets on
    # constant regions (zero borders of digits), where the loss has a kink; tied units that see the
    # same input stay tied under any parameter perturbation.
    arrays, grads = model.parameters(), [g.copy() for g in model.gradients()]
    originals = [a.copy() for a in arrays]
    rng = np.random.default_rng(seed)
    analytic, numeric = [], []
    for _ in range(directions):
        v = [rng.standard_normal(a.shape) for a in arrays]
        analytic.append(sum(float(np.vdot(g, d)) for g, d in zip(grads, v, strict=True)))
        values = []
        for sign in (1.0, -1.0):
            for a, d in zip(arrays, v, strict=True):
                a += sign * STEP * d
            values.append(loss())
            for a, original in zip(arrays, originals, strict=True):
                np.copyto(a, original)
        numeric.append((values[0] - values[1]) / (2 * STEP))
    return AuditResult(tuple(analytic), tuple(numeric))

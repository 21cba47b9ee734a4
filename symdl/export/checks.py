"""The ``symdl verify`` row of a user-defined op, from the same checks as the catalog's rows.

:func:`symdl.verify.ops.verify_op` looks kernels up in ``symdl.kernels`` by name; a
user op's kernels are compiled at run time, so this module runs the same checks
on them: the op's proofs, the VJP against central finite differences
(:func:`symdl.verify.row.directional_error`), forward and gradient against the
mpmath reference of the definition in ulp (:class:`symdl.verify.reference.Reference`)
and the finite check at the extremes (:func:`symdl.verify.row.finite_and_typed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from symdl.sampling import draw_inputs, draw_params
from symdl.verify.ops import tolerance_scale, unreduced  # evaluated as the catalog rows are
from symdl.verify.reference import Reference, ulp_error
from symdl.verify.row import VerifyRow, directional_error, finite_and_typed

if TYPE_CHECKING:
    from symdl.export.define import UserOp


def _bound(user: UserOp, params: dict[str, object]) -> tuple[Callable[..., np.ndarray], Callable[..., tuple]]:
    return (lambda *a: user.forward(*a, **params)), (lambda g, *a: user.vjp(g, *a, **params))


def _unreduced(user: UserOp, rng: np.random.Generator) -> dict[str, object]:
    return unreduced(user.op, draw_params(user.op, rng))


def _shape(user: UserOp) -> tuple[int, ...]:
    return (6, 5) if user.op.traits.over_rows else (60,)


def fd_error(user: UserOp, seed: int = 0, directions: int = 4) -> float:
    """Max relative error of the VJP kernel against central differences of the forward (float64)."""
    rng = np.random.default_rng(seed)
    forward, vjp = _bound(user, draw_params(user.op, rng))
    inputs = draw_inputs(user.op, rng, (4, 5))
    out = forward(*inputs)
    worst = 0.0
    for _ in range(directions):
        v = rng.standard_normal(np.shape(out))
        grads = vjp(v if np.ndim(out) else float(v), *inputs)
        for index, item in enumerate(user.op.inputs):
            h = 1e-6 * max(1.0, float(np.max(np.abs(inputs[index]))))
            worst = float(np.maximum(worst, directional_error(forward, inputs, index, v, grads[index], rng, h)))
    return worst


def ulp_errors(user: UserOp, seed: int = 1) -> tuple[float, float]:
    """Max forward and gradient errors (float64, ulp) against the mpmath reference of the definition."""
    rng = np.random.default_rng(seed)
    params = _unreduced(user, rng)
    reference = Reference(user.op, "", params)
    forward, vjp = _bound(user, params)
    inputs = draw_inputs(user.op, rng, _shape(user))
    out = forward(*inputs)
    grad = rng.standard_normal(np.shape(out))
    tolerance = user.op.tolerance
    worst_forward = float(ulp_error(out, reference.forward(inputs), tolerance_scale(user.op, tolerance.forward_scale, inputs,
                                                                           params, grad)))
    worst_grad = 0.0
    grad_scale = tolerance_scale(user.op, tolerance.grad_scale, inputs, params, grad)
    for value, exact in zip(vjp(grad, *inputs), reference.gradients(inputs, grad)):
        worst_grad = float(np.maximum(worst_grad, ulp_error(value, exact, grad_scale)))
    return worst_forward, worst_grad


def finite_at_extremes(user: UserOp, seed: int = 2) -> tuple[bool, str]:
    """Forward and VJP at the first input's extremes, float32 and float64: finite, dtype kept, no FP error."""
    extremes = user.op.inputs[0].domain.extremes
    for dtype in (np.float32, np.float64):
        values = [e for e in extremes if np.isfinite(dtype(e))]
        if not values:
            continue
        rng = np.random.default_rng(seed)
        forward, vjp = _bound(user, _unreduced(user, rng))
        if user.op.traits.over_rows:
            inputs = [np.array([[e, 0.0, -e] for e in values], dtype=dtype)]
        else:
            inputs = draw_inputs(user.op, rng, (len(values),), dtype)
            inputs[0] = np.array(values, dtype=dtype)

        def run() -> list[np.ndarray]:
            out = forward(*inputs)
            return [out, *vjp(np.ones_like(out), *inputs)]

        holds, detail = finite_and_typed(run, dtype, f"{np.dtype(dtype).name} at the extremes")
        if not holds:
            return False, detail
    return True, ""


def verify_row(user: UserOp) -> VerifyRow:
    """The op's verify row (the catalog's tolerance defaults apply)."""
    op = user.op
    proofs = user.proofs
    fwd_ulp, grad_ulp = ulp_errors(user)
    finite, detail = finite_at_extremes(user)
    failed = [p.claim for p in proofs if not p.holds]
    return VerifyRow(
        op=op.name, variant="", proof="; ".join(sorted({p.method for p in proofs})) or "none needed",
        proofs_hold=not failed, fd_error=fd_error(user), forward_ulp=fwd_ulp, grad_ulp=grad_ulp,
        forward_ulp_bound=op.tolerance.forward_ulp, grad_ulp_bound=op.tolerance.grad_ulp, finite=finite,
        detail="; ".join([*(f"proof failed: {c}" for c in failed), *([detail] if detail else [])]),
    )

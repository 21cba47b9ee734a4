"""``<loss>_value_and_vjp``: the class losses' value and gradients in one call, equal (to a few
units in the last place) to what ``<loss>`` and ``<loss>_vjp`` return separately, for every kind
of target and option."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import symdl.kernels as K
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.codegen.ops import kernel_names
from symdl.errors import OpInputError
from symdl.sampling import draw_inputs, draw_params

FUSED = [op for op in ACTIVATIONS_AND_LOSSES.values() if f"{op.name}_value_and_vjp" in kernel_names(op)]
IGNORE = -100
ULPS = 4.0  # measured at most 1.9


def _same(a: object, b: object) -> bool:
    """Equal to rounding (NaN where NaN), or both None: at most ULPS units in the last place of
    max(largest magnitude, 1) apart. Sharing a subexpression may regroup a sum, and these losses
    are differences of terms of magnitude about 1 or more (1 - cos, a margin of 1, log-sum-exp
    minus a logit), so a rounding of those terms is the scale of a change in the result."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    finite = np.isfinite(b)
    if not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return False
    if not finite.any():
        return True
    scale = max(float(np.max(np.abs(b[finite]))), 1.0)
    return bool(np.all(np.abs(a[finite] - b[finite]) <= ULPS * np.finfo(b.dtype).eps * scale))


def test_every_class_loss_has_one() -> None:
    assert FUSED == [op for op in ACTIVATIONS_AND_LOSSES.values() if op.kind == "class_loss"]
    assert all(callable(getattr(K, f"{op.name}_value_and_vjp")) for op in FUSED)
    assert not hasattr(K, "mse_loss_value_and_vjp")  # pointwise losses share nothing worth fusing


@pytest.mark.parametrize("op", FUSED, ids=[op.name for op in FUSED])
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([(1, 2), (6, 4), (5, 3, 2), (3, 10, 2, 2)]),
       dtype=st.sampled_from([np.float32, np.float64]), reduction=st.sampled_from(["none", "mean", "sum"]),
       ignored=st.booleans(), probabilities=st.booleans(), weighted=st.booleans(), scale=st.sampled_from([1.0, 1e30]))
@example(seed=0, batch=(6, 4), dtype=np.float32, reduction="mean", ignored=False, probabilities=False, weighted=False,
         scale=1.0)  # the trainer's call
@example(seed=1, batch=(6, 4), dtype=np.float64, reduction="mean", ignored=True, probabilities=False, weighted=True,
         scale=1e30)  # ignored rows, weights and logits near overflow of exp
def test_value_and_vjp_equal_the_separate_kernels(op, seed: int, batch: tuple[int, ...], dtype: type, reduction: str,
                                                  ignored: bool, probabilities: bool, weighted: bool,
                                                  scale: float) -> None:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    if any(item.role == "sign" for item in op.inputs):
        batch = batch[:2]  # one +-1 label per row: (N, C) inputs
    inputs = draw_inputs(op, rng, batch, dtype)
    inputs[0] = inputs[0] * dtype(scale)
    params = {**draw_params(op, rng), "reduction": reduction}
    names = {p.name for p in op.params}
    target_role = op.inputs[1].role
    if target_role == "class_index" and probabilities and "label_smoothing" in names:
        inputs[1] = rng.dirichlet(np.ones(batch[1]), batch[:1] + batch[2:]).astype(dtype)
        inputs[1] = np.moveaxis(inputs[1], -1, 1)  # probabilities along the class axis
    elif target_role == "class_index" and ignored and "ignore_index" in names:
        inputs[1] = np.where(rng.random(inputs[1].shape) < 0.3, IGNORE, inputs[1])
    if weighted and "weight" in names:
        params["weight"] = rng.uniform(0.5, 2.0, batch[1]).astype(dtype)
    forward = getattr(K, op.name)(*inputs, **params)
    grad = np.asarray(rng.uniform(0.5, 2.0, np.shape(forward)), dtype=dtype)
    gradients = getattr(K, f"{op.name}_vjp")(grad, *inputs, **params)
    value, fused = getattr(K, f"{op.name}_value_and_vjp")(grad, *inputs, **params)
    assert _same(value, forward), (value, forward)
    assert len(fused) == len(gradients)
    for ours, theirs in zip(fused, gradients):
        assert _same(ours, theirs)


def test_bad_input_is_refused_as_by_the_vjp() -> None:
    x = np.zeros((3, 4))
    with pytest.raises(OpInputError, match="cross_entropy: grad must be a scalar"):
        K.cross_entropy_value_and_vjp(np.ones(3), x, np.array([0, 1, 2]))
    with pytest.raises(OpInputError, match="cross_entropy: .*target"):
        K.cross_entropy_value_and_vjp(1.0, x, np.array([0, 1, 4]))

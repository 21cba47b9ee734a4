"""Loss semantics: reductions, weights, ignore_index, label smoothing, target kinds.

Checked against direct NumPy formulas (always) and PyTorch (when installed).
"""

from __future__ import annotations

import numpy as np
import pytest

import symdl.kernels as K
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.errors import OpInputError, OpParameterError, OpTypeError
from symdl.sampling import draw_inputs

LOSSES = [op for op in ACTIVATIONS_AND_LOSSES.values() if op.family == "loss"]
PLAIN_MEAN = [op for op in LOSSES if not op.weighted_mean]


def _call(name: str, *args: object, **kwargs: object) -> object:
    return getattr(K, name)(*args, **kwargs)


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("op", PLAIN_MEAN, ids=[op.name for op in PLAIN_MEAN])
def test_sum_and_mean_reduce_the_unreduced_loss(op) -> None:  # noqa: ANN001
    inputs = draw_inputs(op, np.random.default_rng(3), (4, 5))
    none = _call(op.name, *inputs, reduction="none")
    np.testing.assert_allclose(_call(op.name, *inputs, reduction="sum"), none.sum(), rtol=1e-12)
    np.testing.assert_allclose(_call(op.name, *inputs, reduction="mean"), none.mean(), rtol=1e-12)
    grads_mean = _call(f"{op.name}_vjp", 1.0, *inputs, reduction="mean")
    grads_none = _call(f"{op.name}_vjp", np.full(none.shape, 1.0 / none.size), *inputs, reduction="none")
    for a, b in zip(grads_mean, grads_none):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_div_zero_target_contributes_nothing(dtype: type) -> None:
    # 0 log 0 = 0 (torch.xlogy): a zero target adds 0 whatever the input, with no log(0) warning.
    x = np.array([-1.0, -1e30, 0.0, -3.0], dtype=dtype)
    y = np.array([0.0, 0.0, 0.0, 0.25], dtype=dtype)
    with np.errstate(all="raise"):
        loss = K.kl_div(x, y, reduction="none")
    assert loss.dtype == dtype
    np.testing.assert_array_equal(loss[:3], 0.0)
    assert loss[3] == pytest.approx(0.25 * (np.log(0.25) + 3.0), rel=1e-6)


def test_kl_div_batchmean_divides_by_the_batch_size() -> None:
    rng = np.random.default_rng(0)
    x, y = np.log(rng.dirichlet(np.ones(5), 4)), rng.dirichlet(np.ones(5), 4)
    total = K.kl_div(x, y, reduction="sum")
    assert K.kl_div(x, y, reduction="batchmean") == pytest.approx(total / 4, rel=1e-14)
    assert K.kl_div(x, y, reduction="mean") == pytest.approx(total / 20, rel=1e-14)
    (grad, _) = K.kl_div_vjp(1.0, x, y, reduction="batchmean")
    np.testing.assert_allclose(grad, -y / 4)


# --------------------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_indices_weight_ignore_index_and_smoothing(smoothing: float, weighted: bool) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(7, 4))
    target = np.array([0, 3, -100, 1, 2, -100, 3])
    weight = rng.uniform(0.5, 2.0, 4) if weighted else None
    w = np.ones(4) if weight is None else weight
    kept = target != -100
    logp = log_softmax(z)
    picked = np.where(kept, target, 0)
    nll = -w[picked] * logp[np.arange(7), picked]
    smooth = -(w * logp).sum(axis=1) / 4
    expected_rows = np.where(kept, (1 - smoothing) * nll + smoothing * smooth, 0.0)
    loss = K.cross_entropy(z, target, weight=weight, label_smoothing=smoothing, reduction="none")
    np.testing.assert_allclose(loss, expected_rows, rtol=1e-13)
    mean = K.cross_entropy(z, target, weight=weight, label_smoothing=smoothing)
    assert mean == pytest.approx(expected_rows.sum() / w[picked][kept].sum(), rel=1e-13)
    grad_input, grad_target = K.cross_entropy_vjp(1.0, z, target, weight=weight, label_smoothing=smoothing)
    assert grad_target is None
    assert np.all(grad_input[~kept] == 0)


def test_cross_entropy_with_probabilities_is_softmax_minus_target() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 3))
    p = rng.dirichlet(np.ones(3), 5)
    expected = -(p * log_softmax(z)).sum(axis=1)
    np.testing.assert_allclose(K.cross_entropy(z, p, reduction="none"), expected, rtol=1e-13)
    grad_input, grad_target = K.cross_entropy_vjp(np.ones(5), z, p, reduction="none")
    softmax = np.exp(log_softmax(z))
    np.testing.assert_allclose(grad_input, softmax - p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad_target, -log_softmax(z), rtol=1e-13)


def test_cross_entropy_spatial_targets_use_axis_1() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 3, 4, 5))
    target = rng.integers(0, 3, (2, 4, 5))
    flat = K.cross_entropy(np.moveaxis(z, 1, -1).reshape(-1, 3), target.reshape(-1), reduction="none")
    np.testing.assert_allclose(K.cross_entropy(z, target, reduction="none"), flat.reshape(2, 4, 5), rtol=1e-13)


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_class_index_gradients_land_on_the_target_in_any_layout(name: str, layout: str) -> None:
    # Index targets are gathered and scattered by flat position: spatial (N, C, H, W) inputs and
    # Fortran-ordered ones must give the gradient of the same rows flattened to (N*H*W, C).
    rng = np.random.default_rng(5)
    z = np.asarray(rng.normal(size=(2, 3, 4, 5)), order=layout)
    target = rng.integers(0, 3, (2, 4, 5))
    weight = rng.uniform(0.5, 2.0, 3)
    rows = np.moveaxis(z, 1, -1).reshape(-1, 3)
    upstream = rng.normal(size=(2, 4, 5))
    forward, vjp = getattr(K, name), getattr(K, f"{name}_vjp")
    (grad, _) = vjp(upstream, z, target, weight=weight, reduction="none")
    (flat, _) = vjp(upstream.reshape(-1), np.ascontiguousarray(rows), target.reshape(-1), weight=weight,
                    reduction="none")
    np.testing.assert_allclose(np.moveaxis(grad, 1, -1).reshape(-1, 3), flat, rtol=1e-13)
    np.testing.assert_allclose(forward(z, target, weight=weight, reduction="none").reshape(-1),
                               forward(rows, target.reshape(-1), weight=weight, reduction="none"), rtol=1e-13)


def test_every_target_ignored_gives_a_nan_mean_and_zero_gradient() -> None:
    # PyTorch: the mean over no counted target is 0/0 = NaN, and no logit reaches the loss.
    z = np.random.default_rng(6).normal(size=(3, 4))
    target = np.full(3, -100)
    with np.errstate(all="raise"):
        loss = K.cross_entropy(z, target)
        (grad, _) = K.cross_entropy_vjp(1.0, z, target)
    assert np.isnan(loss)
    assert np.all(grad == 0)


def test_cross_entropy_at_a_logit_of_1e4_is_finite() -> None:
    z = np.array([[1e4, 0.0, -1e4]])
    with np.errstate(all="raise", under="ignore"):
        loss = K.cross_entropy(z, np.array([1]), reduction="none")
        (grad, _) = K.cross_entropy_vjp(np.ones(1), z, np.array([1]), reduction="none")
    assert loss[0] == pytest.approx(1e4)
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0]])


def test_nll_loss_picks_the_target_log_probability() -> None:
    logp = log_softmax(np.random.default_rng(4).normal(size=(4, 3)))
    target = np.array([2, 0, 1, 2])
    weight = np.array([1.0, 2.0, 3.0])
    expected = -(weight[target] * logp[np.arange(4), target]).sum() / weight[target].sum()
    assert K.nll_loss(logp, target, weight=weight) == pytest.approx(expected, rel=1e-14)


# --------------------------------------------------------------------------- binary and Gaussian
def test_binary_cross_entropy_clamps_logs_at_minus_100_like_pytorch() -> None:
    x, y = np.array([0.0, 1.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0])
    with np.errstate(all="raise"):
        loss = K.binary_cross_entropy(x, y, reduction="none")
        grad_input, grad_target = K.binary_cross_entropy_vjp(np.ones(4), x, y, reduction="none")
    np.testing.assert_array_equal(loss, [100.0, 100.0, 0.0, 0.0])
    # PyTorch's backward: (x - y) / max(x (1 - x), 1e-12)
    np.testing.assert_allclose(grad_input, (x - y) / 1e-12)
    np.testing.assert_allclose(grad_target, [100.0, -100.0, 100.0, -100.0])


def test_binary_cross_entropy_weight_scales_each_element() -> None:
    rng = np.random.default_rng(5)
    x, y, w = rng.uniform(0.1, 0.9, (3, 4)), rng.uniform(0, 1, (3, 4)), rng.uniform(0.5, 2, 4)
    np.testing.assert_allclose(K.binary_cross_entropy(x, y, weight=w, reduction="none"),
                               w * K.binary_cross_entropy(x, y, reduction="none"), rtol=1e-14)


def test_pos_weight_only_scales_the_positive_term() -> None:
    x = np.array([0.3, -1.2])
    ones, zeros = np.ones(2), np.zeros(2)
    np.testing.assert_allclose(K.binary_cross_entropy_with_logits(x, ones, pos_weight=np.array(3.0), reduction="none"),
                               3 * K.binary_cross_entropy_with_logits(x, ones, reduction="none"), rtol=1e-14)
    np.testing.assert_allclose(K.binary_cross_entropy_with_logits(x, zeros, pos_weight=np.array(3.0), reduction="none"),
                               K.binary_cross_entropy_with_logits(x, zeros, reduction="none"), rtol=1e-14)


def test_gaussian_nll_broadcast_variance_gets_a_summed_gradient() -> None:
    rng = np.random.default_rng(6)
    x, y, var = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(0.5, 2, 4)
    full_var = np.repeat(var[:, None], 3, axis=1)
    np.testing.assert_allclose(K.gaussian_nll_loss(x, y, var, reduction="none"),
                               K.gaussian_nll_loss(x, y, full_var, reduction="none"), rtol=1e-14)
    _, _, grad_var = K.gaussian_nll_loss_vjp(1.0, x, y, var)
    _, _, grad_full = K.gaussian_nll_loss_vjp(1.0, x, y, full_var)
    assert grad_var.shape == (4,)
    np.testing.assert_allclose(grad_var, grad_full.sum(axis=1), rtol=1e-13)


# --------------------------------------------------------------------------- bad input
def test_class_index_out_of_range() -> None:
    with pytest.raises(OpInputError, match=r"cross_entropy: target holds class index 3, outside \[0, 2\]"):
        K.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_class_index_target_of_wrong_shape() -> None:
    with pytest.raises(OpInputError, match=r"nll_loss: class-index target must have shape \(2,\)"):
        K.nll_loss(np.zeros((2, 3)), np.array([[0], [1]]))


def test_class_weight_of_wrong_shape() -> None:
    with pytest.raises(OpInputError, match=r"cross_entropy: weight must have shape \(3,\)"):
        K.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(2))


def test_mismatched_shapes() -> None:
    with pytest.raises(OpInputError, match=r"mse_loss: shapes must match, got input \(2, 3\), target \(3, 2\)"):
        K.mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))


def test_label_smoothing_outside_unit_interval() -> None:
    with pytest.raises(OpParameterError, match=r"cross_entropy: label_smoothing must be in \[0.0, 1.0\]"):
        K.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5)


def test_float_targets_where_only_indices_are_allowed() -> None:
    with pytest.raises(OpTypeError, match="nll_loss: target must hold integer class indices"):
        K.nll_loss(np.zeros((2, 3)), np.zeros((2, 3)))


def test_scalar_upstream_gradient_required_for_reduced_losses() -> None:
    with pytest.raises(OpInputError, match=r"mse_loss: grad must be a scalar for reduction='mean'"):
        K.mse_loss_vjp(np.ones(3), np.zeros(3), np.zeros(3))


# --------------------------------------------------------------------------- PyTorch, when installed
def test_weighted_smoothed_cross_entropy_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    z, target, weight = rng.normal(size=(6, 4)), np.array([0, 3, -100, 1, 2, 2]), rng.uniform(0.5, 2, 4)
    tz = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(tz, torch.tensor(target), weight=torch.tensor(weight),
                                                 label_smoothing=0.2)
    expected.backward()
    assert K.cross_entropy(z, target, weight=weight, label_smoothing=0.2) == pytest.approx(expected.item(), rel=1e-12)
    (grad, _) = K.cross_entropy_vjp(1.0, z, target, weight=weight, label_smoothing=0.2)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-11, atol=1e-15)


def test_probability_cross_entropy_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    z, p = rng.normal(size=(5, 3)), rng.dirichlet(np.ones(3), 5)
    tz, tp = torch.tensor(z, requires_grad=True), torch.tensor(p, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(tz, tp, label_smoothing=0.1)
    expected.backward()
    assert K.cross_entropy(z, p, label_smoothing=0.1) == pytest.approx(expected.item(), rel=1e-12)
    grad_input, grad_target = K.cross_entropy_vjp(1.0, z, p, label_smoothing=0.1)
    np.testing.assert_allclose(grad_input, tz.grad.numpy(), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(grad_target, tp.grad.numpy(), rtol=1e-11, atol=1e-15)


def test_weighted_bce_with_pos_weight_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(4, 3)), rng.uniform(0, 1, (4, 3))
    weight, pos_weight = rng.uniform(0.5, 2, 3), rng.uniform(0.5, 3, 3)
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        tx, ty, weight=torch.tensor(weight), pos_weight=torch.tensor(pos_weight))
    expected.backward()
    assert K.binary_cross_entropy_with_logits(x, y, weight=weight, pos_weight=pos_weight) == pytest.approx(
        expected.item(), rel=1e-12)
    gx, gy = K.binary_cross_entropy_with_logits_vjp(1.0, x, y, weight=weight, pos_weight=pos_weight)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-11)
    np.testing.assert_allclose(gy, ty.grad.numpy(), rtol=1e-11)

"""symdl.nn: layers over the generated kernels, catalog layers, initialisation, state, gradient audit."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from symdl import nn
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.train.audit import audit


def test_every_catalog_activation_and_loss_is_a_layer() -> None:
    families = {"activation": nn.ACTIVATIONS, "loss": nn.LOSSES}
    for op in ACTIVATIONS_AND_LOSSES.values():
        if op.family in families:
            layer = families[op.family][op.name]
            assert layer.op == op.name
            assert layer.param_names == tuple(p.name for p in op.params)
            assert getattr(nn, layer.__name__) is layer
    assert set(nn.ACTIVATIONS) | set(nn.LOSSES) == {op.name for op in ACTIVATIONS_AND_LOSSES.values()
                                                    if op.family in families}


def test_layer_names_are_pytorchs() -> None:
    torch = pytest.importorskip("torch")
    for op, layer in {**nn.ACTIVATIONS, **nn.LOSSES}.items():
        if ACTIVATIONS_AND_LOSSES[op].torch is not None:  # sigmoid_focal_loss and log_cosh have no torch.nn class
            assert hasattr(torch.nn, layer.__name__), (op, layer.__name__)


def test_activation_layer_takes_parameters_positionally_or_by_name() -> None:
    x = np.array([-2.0, 0.5, 3.0], np.float32)
    layer = nn.Hardtanh(-1.5, max_val=2.0)
    assert layer.options == {"min_val": -1.5, "max_val": 2.0}
    np.testing.assert_array_equal(layer(x), np.array([-1.5, 0.5, 2.0], np.float32))
    np.testing.assert_array_equal(layer.backward(np.ones(3, np.float32)), [0.0, 1.0, 0.0])
    with pytest.raises(TypeError, match="Hardtanh"):
        nn.Hardtanh(1.0, 2.0, 3.0)
    with pytest.raises(TypeError, match="CrossEntropyLoss: unexpected argument"):
        nn.CrossEntropyLoss(smoothing=0.1)


def test_loss_layer_returns_first_input_gradient_and_keeps_all() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    loss = nn.MSELoss(reduction="sum")
    assert loss(a, b) == pytest.approx(np.sum((a - b) ** 2))
    np.testing.assert_allclose(loss.backward(), 2 * (a - b))
    np.testing.assert_allclose(loss.input_grads[1], -2 * (a - b))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_a_class_loss_in_training_gives_the_vjps_gradients_whether_fused_or_not(reduction: str) -> None:
    """Training mode computes cross-entropy's value and gradient in one call; evaluation mode, an
    explicit upstream gradient and reduction='none' take the separate kernels. All agree."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 4, 6)
    loss = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)
    value = loss(x, y)
    ones = np.ones_like(value)
    fused = loss.backward()
    assert (loss.input_grads is not None) and fused.dtype == np.float32
    np.testing.assert_allclose(value, nn.kernels.cross_entropy(x, y, reduction=reduction, label_smoothing=0.1),
                               rtol=4e-7)
    expected = nn.kernels.cross_entropy_vjp(ones, x, y, reduction=reduction, label_smoothing=0.1)[0]
    np.testing.assert_allclose(fused, expected, rtol=4e-7, atol=1e-7)
    np.testing.assert_array_equal(loss.backward(2 * ones), 2 * expected)  # an explicit grad: the VJP itself
    np.testing.assert_array_equal(loss.backward(), fused)  # and grad = 1 again afterwards
    np.testing.assert_array_equal(loss.input_grads[0], fused)
    loss.eval()
    np.testing.assert_allclose(loss(x, y), value, rtol=4e-7)
    np.testing.assert_array_equal(loss.backward(), expected)


def test_initialisation_is_pytorchs_kaiming_uniform_and_dtype() -> None:
    generator = np.random.default_rng(0)
    linear = nn.Linear(50, 20, generator=generator)
    conv = nn.Conv2d(3, 8, 5, dtype=np.float64, generator=generator)
    for layer, fan_in in ((linear, 50), (conv, 75)):
        for array in layer.parameters():
            assert np.abs(array).max() <= 1 / np.sqrt(fan_in)
            assert np.abs(array).max() > 0.9 / np.sqrt(fan_in)  # uniform, fills the interval
    assert linear.params["weight"].dtype == np.float32 and conv.params["weight"].dtype == np.float64
    assert conv.params["weight"].shape == (8, 3, 5, 5)
    same = nn.Linear(50, 20, generator=np.random.default_rng(0))
    np.testing.assert_array_equal(same.params["weight"], linear.params["weight"])


def _zoo(generator: np.random.Generator) -> nn.Sequential:
    """Every parametrised layer kind, float64."""
    f64 = {"dtype": np.float64}
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, generator=generator, **f64), nn.BatchNorm2d(4, **f64),
                         nn.GELU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, (1, 3), stride=1, generator=generator, **f64),
                         nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.LayerNorm(9, **f64), nn.Tanh(),
                         nn.Linear(9, 5, generator=generator, **f64))


def test_backward_matches_torch_autograd_on_every_layer_kind() -> None:
    torch = pytest.importorskip("torch")
    model = _zoo(np.random.default_rng(1))
    x = np.random.default_rng(2).standard_normal((3, 2, 8, 8))
    y = np.array([0, 4, 2])
    initial = {k: v.copy() for k, v in model.state_dict().items()}
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    loss(model(x), y)
    d_x = model.backward(loss.backward())
    tn = torch.nn
    reference = tn.Sequential(tn.Conv2d(2, 4, 3, padding=1), tn.BatchNorm2d(4), tn.GELU(), tn.MaxPool2d(2),
                              tn.Conv2d(4, 3, (1, 3)), tn.AvgPool2d(2, stride=1), tn.Flatten(), tn.LayerNorm(9),
                              tn.Tanh(), tn.Linear(9, 5)).double()
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in initial.items()}, strict=False)
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.cross_entropy(reference(xt), torch.from_numpy(y), label_smoothing=0.1).backward()
    ours = dict(zip((name for name, _ in model.named_arrays("params")), model.gradients(), strict=True))
    for name, parameter in reference.named_parameters():
        np.testing.assert_allclose(ours[name], parameter.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(d_x, xt.grad.numpy(), rtol=1e-10, atol=1e-13)
    for name in ("1.running_mean", "1.running_var"):  # batch norm updated its running statistics as torch does
        np.testing.assert_allclose(model.state_dict()[name], reference.state_dict()[name].numpy(), rtol=1e-12)


def test_dropout_masks_scales_and_is_identity_in_eval() -> None:
    layer = nn.Dropout(0.25, generator=np.random.default_rng(0))
    x = np.ones((200, 50), np.float32)
    y = layer(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_array_equal(y[kept], np.float32(1 / 0.75))
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)


def test_state_dict_round_trip_is_in_place_and_checked() -> None:
    model = _zoo(np.random.default_rng(1))
    other = _zoo(np.random.default_rng(9))
    weight = other.parameters()[0]
    other.load_state_dict(model.state_dict())
    assert other.parameters()[0] is weight  # optimizers keep their references
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[name], array)
    with pytest.raises(nn.ModelStateError, match="missing"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "0.bias"})
    bad = dict(model.state_dict(), **{"0.bias": np.zeros(7)})
    with pytest.raises(nn.ModelStateError, match=r"0.bias has shape \(7,\)"):
        other.load_state_dict(bad)


def test_audit_passes_for_the_kernels_and_fails_for_a_wrong_gradient() -> None:
    generator = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8, generator=generator), nn.SiLU(),
                          nn.Dropout(0.3, generator=generator), nn.Linear(8, 3, generator=generator))
    x = generator.standard_normal((6, 3, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 1, 0])
    before = copy.deepcopy(model.state_dict())
    state = generator.bit_generator.state
    result = audit(model, nn.CrossEntropyLoss(), x, y)
    assert result.passed, result.to_text()
    assert generator.bit_generator.state == state  # the training generator was not advanced
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())

    class WrongSiLU(nn.SiLU):  # a backward pass 1% off
        def backward(self, grad: np.ndarray) -> np.ndarray:
            return 1.01 * super().backward(grad)

    broken = nn.Sequential(*(WrongSiLU() if isinstance(layer, nn.SiLU) else layer for layer in model.layers))
    result = audit(broken, nn.CrossEntropyLoss(), x, y)
    assert not result.passed and "FAIL" in result.to_text()


def test_batch_norm_with_momentum_none_keeps_the_cumulative_average() -> None:
    layer = nn.BatchNorm2d(3, momentum=None, dtype=np.float64)
    layer.eval()
    layer(np.ones((2, 3, 2, 2)))  # eval before any training batch: running statistics untouched
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0.0)
    layer.train()
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 3, 5, 5)) * (k + 1) + k for k in range(5)]
    for x in batches:
        layer(x)
    means = [x.mean(axis=(0, 2, 3)) for x in batches]
    variances = [x.var(axis=(0, 2, 3), ddof=1) for x in batches]  # unbiased, as PyTorch's running_var
    np.testing.assert_allclose(layer.buffers["running_mean"], np.mean(means, axis=0), rtol=1e-12)
    # the initial running_var of 1 has weight 0 after the first batch (factor 1/1)
    np.testing.assert_allclose(layer.buffers["running_var"], np.mean(variances, axis=0), rtol=1e-12)
    assert int(layer.buffers["num_batches_tracked"]) == 5
    assert layer.to(np.float32).buffers["num_batches_tracked"].dtype == np.int64


def test_batch_norm_momentum_none_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    ours = nn.BatchNorm2d(3, momentum=None, dtype=np.float64)
    reference = torch.nn.BatchNorm2d(3, momentum=None).double()
    rng = np.random.default_rng(1)
    for k in range(4):
        x = rng.standard_normal((4, 3, 3, 3)) + k
        ours(x)
        reference(torch.from_numpy(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(ours.buffers[name], reference.state_dict()[name].numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_backward_without_the_input_gradient_gives_the_same_parameter_gradients(name: str) -> None:
    """``input_grad=False`` (the trainer's call: the data needs no gradient) skips the layers before
    the first one with parameters and that layer's input gradient, and changes no parameter gradient."""
    from symdl.train.models import MODELS

    generator = np.random.default_rng(0)
    shape = (64,) if name == "mlp" else (1, 8, 8)
    model = MODELS[name](shape, 10, np.float64, generator)
    x, y = generator.standard_normal((5, *shape)), np.array([0, 3, 9, 1, 3])
    criterion = nn.CrossEntropyLoss()
    criterion.forward(model.forward(x), y)
    d_input = model.backward(criterion.backward())
    full = [g.copy() for g in model.gradients()]
    assert d_input.shape == x.shape
    assert model.backward(criterion.backward(), input_grad=False) is None
    for a, b in zip(full, model.gradients(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_users_layer_with_the_old_backward_signature_still_chains() -> None:
    """A layer written as ``backward(self, grad)`` (no ``input_grad``) is called the plain way."""
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.params["s"] = np.array([2.0])

        def forward(self, x: np.ndarray) -> np.ndarray:
            self.input = x
            return x * self.params["s"]

        def backward(self, grad: np.ndarray) -> np.ndarray:
            self.grads["s"] = np.array([np.sum(grad * self.input)])
            return grad * self.params["s"]

    model = nn.Sequential(Scale(), nn.ReLU())
    model.forward(np.array([[1.0, -1.0]]))
    assert model.backward(np.ones((1, 2)), input_grad=False) is None
    np.testing.assert_array_equal(model.gradients()[0], [1.0])


def test_conv2d_keeps_its_columns_for_the_backward_in_training_only() -> None:
    """In training the layer hands the forward's im2col columns to the VJP (the same gradients as
    the kernel without them); in eval it keeps none (no backward follows, and they are kh * kw times
    the input)."""
    from symdl import kernels

    rng = np.random.default_rng(0)
    layer = nn.Conv2d(3, 4, 3, stride=2, padding=1, generator=rng)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    out = layer.forward(x)
    assert set(layer.saved) == {"columns"}
    grad = rng.standard_normal(out.shape).astype(np.float32)
    d_x = layer.backward(grad)
    expected = kernels.conv2d_vjp(grad, x, layer.params["weight"], layer.params["bias"], stride=2, padding=1)
    for got, want in zip((d_x, layer.grads["weight"], layer.grads["bias"]), expected):
        np.testing.assert_array_equal(got, want)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), out)
    assert layer.saved == {}

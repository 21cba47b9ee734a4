"""Fused Conv2d - ReLU - MaxPool2d chains (symdl.nn.Sequential in training, symdl/kernels/_layers/batch_last.py):
the same losses and gradients as the layers run one by one, PyTorch's gradients in float64, and the
layer-by-layer path wherever the fused one does not apply."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from symdl import kernels, nn, optim
from symdl.data import load_digits
from symdl.errors import OpInputError
from symdl.train.models import MODELS

DIGITS = load_digits()


def layer_by_layer(model: nn.Sequential) -> nn.Sequential:
    """A copy of ``model`` whose layers each sit in their own Sequential: nothing to fuse, the same
    arrays' values (the reference the fused path must reproduce)."""
    return nn.Sequential(*(nn.Sequential(layer) for layer in copy.deepcopy(model).layers))


def chains(model: nn.Sequential) -> list[Any]:
    return [step for step in model._steps if type(step).__name__ == "_BatchLastChain"]


def step(model: nn.Sequential, x: np.ndarray, y: np.ndarray, input_grad: bool = False) -> tuple[float, Any, list]:
    """One training step's loss, input gradient and parameter gradients (copies)."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    loss = float(criterion.forward(model.forward(x), y))
    d_x = model.backward(criterion.backward(), input_grad=input_grad)
    return loss, d_x, [g.copy() for g in model.gradients()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_trainers_cnn_is_fused_and_trains_exactly_as_its_layers_on_digits(dtype: type) -> None:
    """Five Adam steps on real digits batches (zero borders: tied windows), in lockstep: every loss,
    input gradient and parameter gradient equal bit for bit, and so the parameters after."""
    fused = MODELS["cnn"](DIGITS.input_shape, 10, dtype, np.random.default_rng(3))
    plain = layer_by_layer(fused)
    assert len(chains(fused)) == 1 and not chains(plain)
    assert [type(layer).__name__ for layer in chains(fused)[0].layers] == ["Conv2d", "ReLU", "MaxPool2d"] * 2
    optimizers = [optim.Adam(model.parameters(), lr=1e-2) for model in (fused, plain)]
    order = np.random.default_rng(0).permutation(len(DIGITS.y_train))
    for batch in range(5):
        index = order[64 * batch:64 * (batch + 1)]
        x, y = DIGITS.x_train[index].astype(dtype), DIGITS.y_train[index]
        results = [step(model, x, y, input_grad=batch % 2 == 1) for model in (fused, plain)]
        assert chains(fused)[0]._saved is not None  # the fused path ran
        (loss_f, dx_f, grads_f), (loss_p, dx_p, grads_p) = results
        assert loss_f == loss_p
        assert (dx_f is None) == (dx_p is None) == (batch % 2 == 0)
        if dx_f is not None:
            np.testing.assert_array_equal(dx_f, dx_p)
            assert dx_f.dtype == dtype
        for g_f, g_p in zip(grads_f, grads_p, strict=True):
            assert g_f.dtype == g_p.dtype == dtype
            np.testing.assert_array_equal(g_f, g_p)
        for optimizer, grads in zip(optimizers, (grads_f, grads_p), strict=True):
            optimizer.step(grads)
    for p_f, p_p in zip(fused.parameters(), plain.parameters(), strict=True):
        np.testing.assert_array_equal(p_f, p_p)


def test_the_one_dimensional_cnn_is_fused_too() -> None:
    """MNIST-1D's shape, (1, 1, 40): 1x3 kernels and 1x2 pools."""
    fused = MODELS["cnn"]((1, 1, 40), 10, np.float64, np.random.default_rng(0))
    plain = layer_by_layer(fused)
    x = np.random.default_rng(1).standard_normal((16, 1, 1, 40))
    y = np.arange(16) % 10
    (loss_f, dx_f, grads_f), (loss_p, dx_p, grads_p) = (step(m, x, y, input_grad=True) for m in (fused, plain))
    assert chains(fused)[0]._saved is not None
    assert loss_f == loss_p
    np.testing.assert_array_equal(dx_f, dx_p)
    for a, b in zip(grads_f, grads_p, strict=True):
        np.testing.assert_array_equal(a, b)


#: (input shape (C, H, W), each block's convolution, each block's pool window): padding, stride,
#: dilation, groups, no bias, non-square windows, pools that drop a last row (9 -> 4) or a last row
#: and column (7 -> 3), 'same' padding.
GEOMETRIES = [
    ((1, 8, 8), [{"out": 4, "kernel": 3, "padding": 1}, {"out": 6, "kernel": 3, "padding": 1}], [2, 2]),
    ((3, 9, 11), [{"out": 4, "kernel": (3, 2), "stride": (1, 2), "padding": (1, 0), "bias": False}], [(2, 1)]),
    ((4, 10, 10), [{"out": 6, "kernel": 3, "dilation": 2, "padding": 2, "groups": 2},
                   {"out": 4, "kernel": 1, "groups": 2}], [3, (1, 2)]),
    ((2, 7, 7), [{"out": 3, "kernel": 3, "padding": "same"}], [2]),
]


def build(shape: tuple[int, ...], convs: list[dict], pools: list[Any], dtype: type) -> nn.Sequential:
    generator, layers, channels = np.random.default_rng(7), [], shape[0]
    for conv, pool in zip(convs, pools, strict=True):
        options = {k: v for k, v in conv.items() if k not in ("out", "kernel")}
        layers += [nn.Conv2d(channels, conv["out"], conv["kernel"], dtype=dtype, generator=generator, **options),
                   nn.ReLU(), nn.MaxPool2d(pool)]
        channels = conv["out"]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("shape", "convs", "pools"), GEOMETRIES)
def test_a_fused_chain_gives_pytorchs_gradients_in_float64(shape: tuple[int, ...], convs: list[dict],
                                                            pools: list[Any]) -> None:
    torch = pytest.importorskip("torch")
    model = build(shape, convs, pools, np.float64)
    assert len(chains(model)) == 1
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, *shape))
    x[0, :, :3] = 0.0  # a constant region: ties in the windows, some maxima exactly at the bias
    model.train()
    out = model.forward(x)
    assert chains(model)[0]._saved is not None
    grad = rng.standard_normal(out.shape)
    d_x = model.backward(grad)

    layers = []
    for conv, pool in zip(model.layers[0::3], pools, strict=True):
        options = {k: v for k, v in conv.options.items()}
        reference = torch.nn.Conv2d(conv.params["weight"].shape[1] * options["groups"], conv.params["weight"].shape[0],
                                    conv.params["weight"].shape[2:], bias="bias" in conv.params, dtype=torch.float64,
                                    **options)
        with torch.no_grad():
            reference.weight.copy_(torch.from_numpy(conv.params["weight"]))
            if "bias" in conv.params:
                reference.bias.copy_(torch.from_numpy(conv.params["bias"]))
        layers += [reference, torch.nn.ReLU(), torch.nn.MaxPool2d(pool)]
    torch_model = torch.nn.Sequential(*layers)
    xt = torch.from_numpy(x).requires_grad_()
    out_t = torch_model(xt)
    out_t.backward(torch.from_numpy(grad))

    def relative(ours: np.ndarray, theirs: Any) -> float:
        theirs = theirs.detach().numpy()
        return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-300))

    assert relative(out, out_t) <= 1e-12
    assert relative(d_x, xt.grad) <= 1e-12
    ours = dict(model.named_arrays("grads"))
    for name, parameter in torch_model.named_parameters():
        assert relative(ours[name], parameter.grad) <= 1e-12, name
    # and the layers one by one give the same values bit for bit
    plain = layer_by_layer(model)
    plain.train()
    np.testing.assert_array_equal(plain.forward(x), out)
    np.testing.assert_array_equal(plain.backward(grad), d_x)
    for a, b in zip(plain.gradients(), model.gradients(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_windows_with_a_nan_give_what_the_layers_give() -> None:
    model = build((2, 8, 8), [{"out": 3, "kernel": 3, "padding": 1}], [2], np.float32)
    x = np.random.default_rng(4).standard_normal((3, 2, 8, 8)).astype(np.float32)
    x[1, 0, 2, 5] = np.nan
    grad = np.random.default_rng(5).standard_normal((3, 3, 4, 4)).astype(np.float32)
    plain = layer_by_layer(model)
    results = []
    for m in (model, plain):
        m.train()
        results.append((m.forward(x), m.backward(grad), [g.copy() for g in m.gradients()]))
    assert np.isnan(results[0][0]).any()
    for ours, theirs in zip(results[0][:2] + tuple(results[0][2]), results[1][:2] + tuple(results[1][2]), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def run_both(model: nn.Sequential, x: Any, grad_shape: tuple[int, ...] | None = None) -> bool:
    """Forward and backward through ``model`` and its layers one by one: equal results; returns
    whether the fused path ran."""
    plain = layer_by_layer(model)
    plain.training, ran = model.training, []
    for m in (model, plain):
        m.train(model.training)
        out = m.forward(x)
        grad = np.ones(out.shape if grad_shape is None else grad_shape, out.dtype)
        ran.append((out, m.backward(grad)))
    np.testing.assert_array_equal(ran[0][0], ran[1][0])
    np.testing.assert_array_equal(ran[0][1], ran[1][1])
    return chains(model)[0]._saved is not None


def test_the_layers_run_one_by_one_where_the_fused_path_does_not_apply() -> None:
    x = np.random.default_rng(6).standard_normal((4, 1, 8, 8)).astype(np.float32)
    model = build((1, 8, 8), [{"out": 2, "kernel": 3, "padding": 1}], [2], np.float32)
    assert run_both(model, x)
    assert not run_both(model.eval(), x)  # evaluation: nothing saved, the layers' own path
    model.train()
    assert not run_both(model, x[0])  # unbatched (C, H, W)
    assert not run_both(model, x.astype(np.float64))  # a float64 input to float32 weights
    kernels.set_num_threads(2)
    try:
        assert not run_both(model, np.repeat(x, 16, axis=0))  # the layers split the batch over threads
    finally:
        kernels.set_num_threads(1)
    overlapping = nn.Sequential(nn.Conv2d(1, 2, 3, generator=np.random.default_rng(0)), nn.ReLU(),
                                nn.MaxPool2d(3, stride=1))
    assert not run_both(overlapping, x)  # windows that overlap: not fused
    with pytest.raises(OpInputError, match="channels"):  # a bad call raises the layer's error
        model.forward(np.ones((2, 3, 8, 8), np.float32))


def test_only_these_exact_layer_classes_in_this_order_are_fused() -> None:
    class MyReLU(nn.ReLU):
        pass

    conv = nn.Conv2d(1, 2, 3, padding=1)
    assert not chains(nn.Sequential(conv, MyReLU(), nn.MaxPool2d(2)))
    assert not chains(nn.Sequential(conv, nn.MaxPool2d(2), nn.ReLU()))
    mixed = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Flatten())
    assert [type(s).__name__ for s in mixed._steps] == ["_BatchLastChain", "Conv2d", "ReLU", "Flatten"]
    assert list(mixed.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]  # names unchanged
    assert len(mixed) == 6 and mixed[1] is mixed._steps[0].layers[1]


def test_a_fused_backward_refuses_an_upstream_gradient_of_the_wrong_shape() -> None:
    model = build((1, 8, 8), [{"out": 2, "kernel": 3, "padding": 1}], [2], np.float32).train()
    model.forward(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(OpInputError, match=r"grad has shape \(2, 2, 4, 5\), but the output has shape \(2, 2, 4, 4\)"):
        model.backward(np.zeros((2, 2, 4, 5), np.float32))


def test_a_deep_copy_of_a_fused_model_is_fused_over_its_own_layers() -> None:
    model = build((1, 8, 8), [{"out": 2, "kernel": 3, "padding": 1}], [2], np.float32)
    twin = copy.deepcopy(model)
    assert chains(twin)[0].layers[0] is twin.layers[0] is not model.layers[0]
    twin.to(np.float64)  # new arrays in the twin's layers: the chain reads them at each call
    x = np.random.default_rng(8).standard_normal((3, 1, 8, 8))
    assert run_both(twin.train(), x)
